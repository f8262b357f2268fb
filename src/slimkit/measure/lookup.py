"""A per-layer latency lookup table for this machine, as NetAdapt (Yang et al. 2018) and AMC
(He et al. 2018) use: a search queries it instead of timing every candidate model.

Each leaf layer is keyed by its type, its configuration (`extra_repr`: channels, kernel,
stride, groups, ...) and its input shape, timed alone at batch 1 with 1 thread once, and stored.
A model's predicted latency is scale · (sum over its leaf calls); `calibrate` fits the scale on
models measured whole, covering what isolated layers do not see (functional ops such as residual
adds, the Python forward). The table is a JSON file per machine; build and use it on a quiet one.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from slimkit.data import cache_dir
from slimkit.files import atomic_write_text
from slimkit.measure.common import check_input, eval_mode, num_threads
from slimkit.measure.latency import measure_latency
from slimkit.measure.macs import leaf_modules

FORMAT = "slimkit.latency-table/1"


@dataclass
class LatencyTable:
    """Layer key → median batch-1 latency (ms) of that layer alone; `scale` from calibration."""

    entries: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    threads: int = 1
    calls: int = 50

    def predict(self, model: nn.Module, example: torch.Tensor) -> float:
        """Predicted batch-1 latency (ms); layers not yet in the table are timed and added."""
        total = 0.0
        for key, (module, shape, calls) in leaf_calls(model, example).items():
            if key not in self.entries:
                self.entries[key] = self._time(module, shape)
            total += self.entries[key] * calls
        return self.scale * total

    def calibrate(self, models: list[tuple[nn.Module, torch.Tensor]]) -> float:
        """Fit `scale` = median(measured / Σ layers) over `models`, measured whole now: what
        isolated layer timings miss (functional ops, the Python forward, cache effects)."""
        self.scale = 1.0
        ratios = []
        for model, example in models:
            summed = self.predict(model, example)
            measured = measure_latency(model, example[:1], threads=self.threads).p50_ms
            ratios.append(measured / summed)
        self.scale = statistics.median(ratios)
        return self.scale

    def _time(self, module: nn.Module, shape: tuple[int, ...]) -> float:
        layer = copy.deepcopy(module).eval()
        x = torch.randn(shape)
        with num_threads(self.threads):
            return measure_latency(
                layer, x, threads=self.threads, calls=self.calls, warmup=5
            ).p50_ms

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else default_path(self.threads)
        payload = {"format": FORMAT, "threads": self.threads, "scale": self.scale,
                   "entries": self.entries}  # fmt: skip
        return atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, threads: int = 1) -> LatencyTable:
        """The saved table, or an empty one when there is none yet."""
        path = Path(path) if path else default_path(threads)
        if not path.is_file():
            return cls(threads=threads)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(data.get("format"))
            entries = {str(k): float(v) for k, v in data["entries"].items()}
            return cls(entries, float(data["scale"]), int(data["threads"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls(threads=threads)  # a stale or foreign file is rebuilt, not trusted


def layer_key(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    return f"{type(module).__name__}({module.extra_repr()})@{'x'.join(map(str, input_shape))}"


def default_path(threads: int) -> Path:
    cpu = _cpu_name().replace(" ", "_").replace("/", "_")
    return cache_dir() / "latency" / f"{cpu}-{os.cpu_count()}cpu-{threads}t.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def leaf_calls(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[nn.Module, tuple, int]]:
    """Each leaf layer key → (a module with it, its batch-1 input shape, calls per forward)."""
    check_input(model, example)
    found: dict[str, tuple[nn.Module, tuple[int, ...], int]] = {}
    handles = []

    def hook_for(module: nn.Module):
        def hook(_m, args):
            if args and isinstance(args[0], torch.Tensor):
                shape = (1, *args[0].shape[1:])
                key = layer_key(module, shape)
                _, _, n = found.get(key, (module, shape, 0))
                found[key] = (module, shape, n + 1)

        return hook

    for _, module in leaf_modules(model):
        handles.append(module.register_forward_pre_hook(hook_for(module)))
    try:
        with torch.no_grad(), eval_mode(model):
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    return found
