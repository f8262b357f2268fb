"""Train the uncompressed baselines every later compression benchmark starts from.

    python benchmarks/baselines.py mnist      # LeNet-300-100, LeNet-5 (Caffe), Transformer
    python benchmarks/baselines.py cifar10    # ResNet-20 on the CIFAR-10 JPEG copy

Weights go to <cache>/baselines/<model>.safetensors (resumable checkpoints beside them: a rerun
of a finished recipe only re-measures); the
training history and the full Metrics record go to benchmarks/results/baseline-<model>.json.
Data comes from ../shared/data (override with --shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from slimkit.data import cache_dir, load
from slimkit.files import atomic_write_text
from slimkit.measure import measure
from slimkit.nn import create
from slimkit.train import TrainConfig, fit
from slimkit.weights import load_weights, save_weights

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# model -> (data set, training recipe, reference error % from REFERENCES.md or None)
RECIPES: dict[str, tuple[str, TrainConfig, float | None]] = {
    "lenet300_100": (
        "mnist",
        TrainConfig(epochs=30, batch_size=128, lr=0.05, weight_decay=1e-4, schedule="cosine"),
        1.64,
    ),
    "lenet5_caffe": (
        "mnist",
        TrainConfig(epochs=30, batch_size=128, lr=0.05, weight_decay=5e-4, schedule="cosine"),
        0.80,
    ),
    "transformer_mnist": (
        "mnist",
        TrainConfig(
            epochs=15,
            batch_size=128,
            optimizer="adamw",
            lr=2e-3,
            weight_decay=0.05,
            schedule="cosine",
            warmup_epochs=1,
        ),
        None,
    ),
    "resnet20": (
        "cifar10",
        TrainConfig(
            epochs=40,
            batch_size=128,
            lr=0.1,
            weight_decay=5e-4,
            schedule="cosine",
            warmup_epochs=1,
            augment="crop_flip",
        ),
        None,
    ),
}
DATA = {
    "mnist": "mnist",
    "cifar10": "cifar10-jpeg/CIFAR-10-images-jpeg.tar.gz",
}


def machine() -> str:
    """CPU model and core count, for the record beside every figure."""
    cpu = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores"


def training_device(name: str) -> torch.device:
    """The device to train on, from a --device option; exits with one line if it is absent."""
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise SystemExit(f"--device {name}: not usable here ({str(e).splitlines()[0]})") from None
    return device


def device_name(device: torch.device) -> str:
    """What trained a model, for its record: the GPU's name, or the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else machine()


def baseline_path(model: str) -> Path:
    return cache_dir() / "baselines" / f"{model}.safetensors"


def load_baseline(name: str) -> nn.Module:
    """The trained baseline of `name`, or exit saying which command trains it."""
    if name not in RECIPES:
        raise SystemExit(f"no baseline recipe for {name!r}; recipes: {', '.join(RECIPES)}")
    weights = baseline_path(name)
    if not weights.exists():
        dataset = RECIPES[name][0]
        raise SystemExit(
            f"no baseline at {weights}: run `python benchmarks/baselines.py {dataset}`"
        )
    return load_weights(create(name), weights).eval()


def train_baseline(name: str, shared: Path, epochs: int | None = None) -> dict:
    dataset, cfg, reference = RECIPES[name]
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    data = load(shared / "data" / DATA[dataset])
    torch.manual_seed(cfg.seed)
    model = create(name)
    weights = baseline_path(name)
    history = fit(
        model,
        data.train,
        cfg,
        val=data.test,
        checkpoint=weights.with_suffix(".ckpt"),
        progress=sys.stderr.isatty(),
    )
    save_weights(model, weights)
    metrics = measure(
        model, name=name, data=data.test, artifact=weights, train_time_s=history.train_time_s
    )
    result = {
        "model": name,
        "data": dataset,
        "config": asdict(cfg),
        "error_percent": round(100.0 - metrics.top1, 2),
        "reference_error_percent": reference,
        "time_per_epoch_s": round(history.time_per_epoch_s, 1),
        "threads_training": torch.get_num_threads(),
        "machine": machine(),
        "torch": torch.__version__,
        "weights": str(weights),
        "history": [asdict(e) for e in history.epochs],
        "metrics": metrics.to_dict(),
    }
    atomic_write_text(RESULTS / f"baseline-{name}.json", json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["mnist", "cifar10"])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--models", nargs="+", help="only these recipes of the data set")
    args = parser.parse_args()
    for name, (dataset, _cfg, _ref) in RECIPES.items():
        if dataset == args.dataset and (not args.models or name in args.models):
            r = train_baseline(name, args.shared, args.epochs)
            m = r["metrics"]
            print(
                f"{name}: error {r['error_percent']:.2f}% (reference {r['reference_error_percent']}"
                f"), {r['time_per_epoch_s']} s/epoch, {m['params']:,} params, "
                f"{m['macs']:,} MACs, p50 {m['latency_p50_ms']:.3f} ms"
            )


if __name__ == "__main__":
    main()
