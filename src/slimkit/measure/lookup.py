"""A per-layer latency lookup table for this machine, as NetAdapt (Yang et al. 2018) and AMC
(He et al. 2018) use: a search queries it instead of timing every candidate model.

Each leaf layer is keyed by its type, its configuration (`extra_repr`: channels, kernel,
stride, groups, ...) and its input shape, timed alone at batch 1 with 1 thread once, and stored.
So is every tensor operation the forward runs outside the leaf layers — residual adds, the
matrix products and softmax of attention, reshapes, pooling by `F.*` — keyed by the function and
the shapes and values of its arguments, recorded once with a `TorchFunctionMode` and timed alone
on random tensors of those shapes. The entries a model brings are timed together, one call
each per round, so that every layer runs with the others' weights in the caches as it does in
the model (timed one by one, big layers find theirs hot and come out ~20% fast). A model's
predicted latency is scale · (sum over its leaf calls and operations); `calibrate` fits the
scale on models measured whole, covering what isolated timings do not see (the Python forward
of containers). The table is a JSON file per machine; build and use it on a quiet one, or with
`clock="cpu"` (this thread's CPU time, which other processes do not inflate) on a shared one.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from slimkit.data import cache_dir
from slimkit.errors import ConfigError
from slimkit.files import atomic_write_text
from slimkit.measure.common import check_input, eval_mode, num_threads
from slimkit.measure.latency import percentile
from slimkit.measure.macs import leaf_modules

FORMAT = "slimkit.latency-table/2"  # 2: operations between the leaf layers are entries too
CLOCKS = ("wall", "cpu")


@dataclass
class LatencyTable:
    """Layer or operation key → batch-1 latency (ms) of it alone, the `percentile` of its timed
    calls (50: the median; a low one such as 10 resists a shared machine's noise); `scale` from
    calibration."""

    entries: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    threads: int = 1
    calls: int = 50
    percentile: float = 50.0
    clock: str = "wall"  # "cpu": this thread's CPU time, blind to other processes (1 thread)

    def predict(self, model: nn.Module, example: torch.Tensor) -> float:
        """Predicted batch-1 latency (ms); layers and operations not yet in the table are timed
        (together, in interleaved rounds) and added."""
        layers, ops = trace_calls(model, example)
        missing = {}
        for key, (module, shape, _) in layers.items():
            if key not in self.entries:
                layer, x = copy.deepcopy(module).eval(), torch.randn(shape)
                missing[key] = lambda m=layer, x=x: m(x)
        missing.update({key: replay for key, (replay, _) in ops.items() if key not in self.entries})
        self.entries.update(self._time_rounds(missing))
        total = sum(self.entries[key] * n for key, (_, _, n) in layers.items())
        return self.scale * (total + sum(self.entries[key] * n for key, (_, n) in ops.items()))

    def measure(self, model: nn.Module, example: torch.Tensor) -> float:
        """The model's batch-1 latency (ms) timed whole, as the entries are timed."""
        x = example[:1]
        with eval_mode(model):
            return self._time(lambda: model(x), warmup=10, calls=max(self.calls, 100))

    def calibrate(self, models: list[tuple[nn.Module, torch.Tensor]]) -> float:
        """Fit `scale` = median(measured / Σ entries) over `models`, measured whole now: what
        isolated timings miss (the Python forward of containers, cache effects)."""
        self.scale = 1.0
        ratios = [self.measure(m, x) / self.predict(m, x) for m, x in models]
        self.scale = statistics.median(ratios)
        return self.scale

    def _time_rounds(self, calls: dict[str, Callable[[], Any]]) -> dict[str, float]:
        """Time every call once per round, `self.calls` rounds: a slow spell of the machine hits
        all alike, and each layer runs with the others' weights in the caches, as in a model.
        An operation that random inputs break (an out-of-range index) is left untimed (0)."""
        self._check_clock()
        now = time.perf_counter_ns if self.clock == "wall" else time.thread_time_ns
        times: dict[str, list[float]] = {}
        with num_threads(self.threads), torch.inference_mode():
            for key, call in calls.items():
                try:
                    for _ in range(3):
                        call()
                    times[key] = []
                except Exception:
                    continue
            for _ in range(self.calls):
                for key in times:
                    start = now()
                    calls[key]()
                    times[key].append((now() - start) / 1e6)
        return {
            k: percentile(sorted(times[k]), self.percentile) if k in times else 0.0 for k in calls
        }

    def _check_clock(self) -> None:
        if self.clock not in CLOCKS or (self.clock == "cpu" and self.threads != 1):
            raise ConfigError(
                f"clock must be one of {', '.join(CLOCKS)} ('cpu' with 1 thread), got "
                f"{self.clock!r} with {self.threads} threads"
            )

    def _time(self, call: Callable[[], Any], warmup: int = 5, calls: int | None = None) -> float:
        self._check_clock()
        now = time.perf_counter_ns if self.clock == "wall" else time.thread_time_ns
        times = []
        with num_threads(self.threads), torch.inference_mode():
            for i in range(warmup + (calls or self.calls)):
                start = now()
                call()
                if i >= warmup:
                    times.append((now() - start) / 1e6)
        return percentile(sorted(times), self.percentile)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else default_path(self.threads)
        payload = {"format": FORMAT, "threads": self.threads, "scale": self.scale,
                   "percentile": self.percentile, "clock": self.clock,
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
            return cls(
                entries,
                float(data["scale"]),
                int(data["threads"]),
                percentile=float(data.get("percentile", 50.0)),
                clock=str(data.get("clock", "wall")),
            )
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
    return trace_calls(model, example)[0]


def trace_calls(
    model: nn.Module, example: torch.Tensor
) -> tuple[dict[str, tuple[nn.Module, tuple, int]], dict[str, tuple[Callable[[], Any], int]]]:
    """One batch-1 forward → (leaf layers as `leaf_calls`, operations outside them: key →
    (a call that replays it on random tensors of the same shapes, calls per forward))."""
    check_input(model, example)
    layers: dict[str, tuple[nn.Module, tuple[int, ...], int]] = {}
    ops: dict[str, tuple[Callable[[], Any], int]] = {}
    depth = [0]  # > 0 while inside a leaf layer, whose own operations its timing covers

    def enter(module: nn.Module, args: tuple) -> None:
        if depth[0] == 0 and args and isinstance(args[0], torch.Tensor):
            shape = (1, *args[0].shape[1:])
            key = layer_key(module, shape)
            _, _, n = layers.get(key, (module, shape, 0))
            layers[key] = (module, shape, n + 1)
        depth[0] += 1

    def leave(*_: Any) -> None:
        depth[0] -= 1

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            tensor_out = isinstance(out, torch.Tensor) or (
                isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor)
            )
            if depth[0] == 0 and tensor_out:
                key = f"op:{_name(func)}({', '.join(_describe(a) for a in args)}"
                key += "".join(f", {k}={_describe(v)}" for k, v in kwargs.items()) + ")"
                replay, n = ops[key] if key in ops else (_replayer(func, args, kwargs), 0)
                ops[key] = (replay, n + 1)
            return out

    handles = []
    for _, module in leaf_modules(model):
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    x = example[:1]
    try:
        with torch.no_grad(), eval_mode(model), Record():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return layers, ops


def _name(func: Callable) -> str:
    """`torch.nn.functional.relu`, `TensorBase.add`: the function or method, for keys."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return name if "." in name else f"{getattr(func, '__module__', None) or 'torch'}.{name}"


def _describe(value: Any) -> str:
    """A key fragment: tensors by dtype and shape, containers by their items, the rest by repr."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}[{'x'.join(map(str, value.shape))}]"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_describe(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return repr(value)


def _replayer(func: Callable, args: tuple, kwargs: dict) -> Callable[[], Any]:
    """A call of `func` on new tensors shaped like the recorded ones (floats random, the rest
    zeros), so that timing it neither keeps the model's tensors alive nor depends on them."""

    def like(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                return torch.randn(value.shape, dtype=value.dtype)
            return torch.zeros(value.shape, dtype=value.dtype)
        if isinstance(value, (tuple, list)):
            return type(value)(like(v) for v in value)
        return value

    new_args, new_kwargs = like(args), {k: like(v) for k, v in kwargs.items()}
    return lambda: func(*new_args, **new_kwargs)
