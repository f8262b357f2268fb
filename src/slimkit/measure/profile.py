"""Per-layer profile: parameters, MACs, sparsity, output size and time of every leaf module.

Times come from `torch.profiler`: each leaf's forward is wrapped in a `record_function` range
named after the module, so the same ranges show in the exported Chrome/Perfetto trace.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from slimkit.measure.common import eval_mode, num_threads
from slimkit.measure.macs import MacCount, count_macs, leaf_modules
from slimkit.measure.params import module_tensors

_PREFIX = "slimkit::"


@dataclass(frozen=True)
class LayerProfile:
    name: str
    type: str
    params: int
    nonzero: int
    macs: int  # per sample
    output_elements: int  # per sample
    time_ms: float  # mean per call, batch as given, self + children ops

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.params if self.params else 0.0


@contextlib.contextmanager
def _labelled(model: nn.Module) -> Iterator[None]:
    """Wrap every leaf's forward in a profiler range."""
    handles, ranges = [], {}

    def pre(name: str):
        def hook(_m, _inp):
            ranges[name] = record_function(_PREFIX + name)
            ranges[name].__enter__()

        return hook

    def post(name: str):
        def hook(_m, _inp, _out):
            ranges.pop(name).__exit__(None, None, None)

        return hook

    for name, module in leaf_modules(model):
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def profile_layers(
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int = 1,
    warmup: int = 5,
    calls: int = 20,
    trace_path: str | Path | None = None,
    macs: MacCount | None = None,
) -> list[LayerProfile]:
    """Profile every leaf module; optionally write a Chrome/Perfetto trace (JSON) of the calls.

    `macs` reuses a count already taken on the same example."""
    counts = macs if macs is not None else count_macs(model, example)
    batch = example.shape[0]
    with num_threads(threads), eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(example)
        prof = profile(activities=[ProfilerActivity.CPU])
        with _labelled(model):
            with _quiet_stderr():  # kineto prints start/stop notices on fd 2
                prof.start()
            try:
                for _ in range(calls):
                    model(example)
            finally:
                with _quiet_stderr():
                    prof.stop()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith(_PREFIX):
            totals[event.key.removeprefix(_PREFIX)] += event.cpu_time_total / 1000.0  # us → ms
    if trace_path is not None:
        trace_path = Path(trace_path)
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))

    rows = []
    for name, module in leaf_modules(model):
        tensors = module_tensors(module)
        rows.append(
            LayerProfile(
                name=name,
                type=type(module).__name__,
                params=sum(t.numel() for t in tensors),
                nonzero=sum(int(torch.count_nonzero(t.detach())) for t in tensors),
                macs=counts.per_layer.get(name, 0) // batch,
                output_elements=counts.outputs.get(name, 0),
                time_ms=totals.get(name, 0.0) / calls,
            )
        )
    return rows
