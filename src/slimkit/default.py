"""The embedded default: a LeNet-5 trained on the packaged MNIST digits, cached after first use.

It is what `slimkit profile` (and later `slimkit compress`) run on with no arguments, offline on
a fresh machine. Training takes seconds; the weights are cached under `cache_dir()` keyed by the
training config, so every later run loads the same model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from slimkit.data import DataSplits, cache_dir, load_embedded
from slimkit.files import atomic_write_text
from slimkit.nn import create
from slimkit.train import TrainConfig, fit
from slimkit.weights import load_weights, save_weights

DEFAULT_MODEL = "lenet5"
DEFAULT_TRAINING = TrainConfig(
    epochs=6, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=1e-4, schedule="cosine"
)


@dataclass(frozen=True)
class Trained:
    model: nn.Module
    data: DataSplits
    weights: Path
    train_time_s: float


def default_model(progress: bool | None = None) -> Trained:
    """The default model trained on the embedded data (trained now if not cached yet)."""
    data = load_embedded()
    key = hashlib.sha256(
        json.dumps([DEFAULT_MODEL, asdict(DEFAULT_TRAINING), data.name]).encode()
    ).hexdigest()[:12]
    folder = cache_dir() / "default"
    weights = folder / f"{DEFAULT_MODEL}-{key}.safetensors"
    info = weights.with_suffix(".json")
    model = create(DEFAULT_MODEL)
    if weights.exists() and info.exists():
        load_weights(model, weights)
        train_time = json.loads(info.read_text())["train_time_s"]
        return Trained(model.eval(), data, weights, train_time)
    history = fit(model, data.train, DEFAULT_TRAINING, progress=progress)
    save_weights(model, weights)
    atomic_write_text(info, json.dumps({"train_time_s": history.train_time_s}))
    return Trained(model.eval(), data, weights, history.train_time_s)
