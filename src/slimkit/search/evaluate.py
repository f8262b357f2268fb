"""Cheap, honest evaluation of a policy: its resources measured on the artifact it makes, and a
proxy accuracy on held-out training images.

Resources are exact where they can be (MACs counted, size = bytes of the file the recipe would
write); latency is the 1-thread batch-1 median, timed, or predicted by the machine's per-layer
lookup table (saved between runs; calibrated on the input model when new). The proxy follows
AMC and NetAdapt: no full fine-tuning, but BatchNorm statistics re-estimated on a few training
batches (a pruned network's old statistics are wrong, and re-estimating them ranks candidates
far better), optionally a few SGD steps.
Validation images come from the training split, so the test set never steers the search.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit import prune, quant
from slimkit.data import DataSplits, batches, calibration_subset, resized, scaled_size
from slimkit.errors import ConfigError
from slimkit.lowrank import save_factorized
from slimkit.measure import count_macs, count_params, evaluate, measure_latency, tensor_bytes
from slimkit.measure.lookup import LatencyTable
from slimkit.measure.metrics import inference_memory
from slimkit.search.space import artifact_kind, build, resolution_of, scaled

LATENCY_MODES = ("lookup", "measured")


@dataclass(frozen=True)
class Evaluation:
    accuracy: float  # proxy top-1 (%) on the validation images
    resources: dict[str, float]  # macs, params, size (B), latency (ms), memory (B)


@dataclass(frozen=True)
class ProxyConfig:
    """How each candidate is scored. val_size: held-out training images; recal_batches: batches
    of 64 that re-estimate BatchNorm statistics (0: off); steps: SGD steps of fine-tuning at
    `lr` before scoring (0: none); latency: "lookup" (predicted) or "measured"."""

    val_size: int = 2000
    recal_batches: int = 20
    steps: int = 0
    lr: float = 0.01
    latency: str = "lookup"
    latency_calls: int = 100

    def __post_init__(self) -> None:
        if self.latency not in LATENCY_MODES:
            raise ConfigError(f"latency must be one of {LATENCY_MODES}, got {self.latency!r}")
        for name in ("val_size", "latency_calls"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("recal_batches", "steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")


class Evaluator:
    """Builds and scores policies of one input model; resources are cached per policy."""

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        arch: dict[str, Any],
        resources: tuple[str, ...],
        proxy: ProxyConfig,
    ) -> None:
        self.model = model.eval()
        self.arch = arch
        self.data = data
        self.proxy = proxy
        self.wanted = resources
        self.example = data.test.normalized(torch.arange(2))
        self.val = calibration_subset(data.train, proxy.val_size)
        self._resources: dict[str, dict[str, float]] = {}
        self.table: LatencyTable | None = None
        if "latency" in resources and proxy.latency == "lookup":
            # The machine's saved table and scale: predictions then agree across runs and
            # resumes (a scale fitted anew each run would follow the machine's load of the day).
            self.table = LatencyTable.load(threads=1)
            if not self.table.entries:
                self.table.calibrate([(self.model, self.example)])

    def save_table(self) -> None:
        """Keep the layers timed during the search for the next one on this machine."""
        if self.table is not None:
            self.table.save()

    def build(self, policy: dict[str, float]) -> nn.Module:
        return build(self.model, policy, self.example)

    def resources(
        self, policy: dict[str, float], model: nn.Module | None = None
    ) -> dict[str, float]:
        key = repr(sorted(policy.items()))
        if key not in self._resources:
            model = model if model is not None else self.build(policy)
            x = scaled(self.example[:1], resolution_of(policy))
            self._resources[key] = self._measure(model, artifact_kind(policy), x)
        return self._resources[key]

    def evaluate(self, policy: dict[str, float]) -> Evaluation:
        model = self.build(policy)
        resources = self.resources(policy, model)
        scale = resolution_of(policy)
        self._recover(model, artifact_kind(policy) == "sparse", scale)
        val = resized(self.val, scaled_size(self.val, scale))
        return Evaluation(evaluate(model, val).top1, resources)

    # --- resources ---

    def _measure(self, model: nn.Module, kind: str, x: torch.Tensor) -> dict[str, float]:
        deployed = _float_copy(model) if kind == "kbit" else model
        counts = count_macs(deployed, x)
        out: dict[str, float] = {
            "macs": float(counts.effective if kind == "sparse" else counts.dense),
            "params": float(
                count_params(deployed).nonzero if kind == "sparse" else count_params(deployed).total
            ),
            "size": float(self.artifact_bytes(model, kind)),
        }
        if "latency" in self.wanted:
            if self.table is not None:
                out["latency"] = self.table.predict(deployed, x)
            else:
                calls = self.proxy.latency_calls
                out["latency"] = measure_latency(deployed, x, threads=1, calls=calls).p50_ms
        if "memory" in self.wanted:
            out["memory"] = float(tensor_bytes(deployed) + inference_memory(deployed, x))
        return out

    def artifact_bytes(self, model: nn.Module, kind: str) -> int:
        """Bytes of the file the recipe's step writes for this model (written, then measured)."""
        with tempfile.TemporaryDirectory(prefix="slimkit-search-") as d:
            path = Path(d) / "model.safetensors"
            if kind == "kbit":
                quant.save_kbit(model, path, arch=self.arch)
            elif kind == "sparse":
                prune.save_sparse(model, path)
            elif kind == "factorized":
                save_factorized(model, path, arch=self.arch)
            else:
                prune.save_pruned(model, path, arch=self.arch)
            return path.stat().st_size

    # --- proxy accuracy ---

    def _recover(self, model: nn.Module, sparse: bool, scale: float) -> None:
        if self.proxy.steps:
            _short_finetune(model, self.data, self.proxy, sparse, scale)
        if self.proxy.recal_batches:
            recalibrate_bn(model, self.data, self.proxy.recal_batches, scale=scale)
        model.eval()


def _float_copy(model: nn.Module) -> nn.Module:
    return quant.freeze_kbit(copy.deepcopy(model))


def recalibrate_bn(
    model: nn.Module, data: DataSplits, n_batches: int, batch_size: int = 64, scale: float = 1.0
) -> None:
    """Re-estimate every BatchNorm's running statistics as a plain average over `n_batches`
    training batches (resized by `scale`); other layers stay in eval mode (no dropout)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    model.eval()
    saved = []
    for bn in norms:
        saved.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    with torch.no_grad():
        for i, (x, _) in enumerate(batches(data.train, batch_size, shuffle=True, seed=1)):
            if i == n_batches:
                break
            model(scaled(x, scale))
    for bn, momentum in zip(norms, saved, strict=True):
        bn.momentum = momentum
    model.eval()


def _short_finetune(
    model: nn.Module, data: DataSplits, proxy: ProxyConfig, sparse: bool, scale: float
) -> None:
    if sparse:
        prune.apply_masks(
            model, {n: m.weight != 0 for n, m in prune.prunable_layers(model).items()}
        )
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=proxy.lr, momentum=0.9
    )
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    while step < proxy.steps:
        for x, y in batches(data.train, 64, shuffle=True, seed=2, epoch=step):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(scaled(x, scale)), y).backward()
            opt.step()
            if sparse:
                prune.reapply_masks(model)
            step += 1
            if step == proxy.steps:
                break
    if sparse:
        prune.make_permanent(model)
    model.eval()
