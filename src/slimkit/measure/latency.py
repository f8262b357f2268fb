"""Latency and throughput, measured the honest way.

Every call is timed on its own (`time.perf_counter_ns`), after a warm-up that is thrown away,
with torch's thread count fixed and recorded (default 1: the figure that transfers to a phone
core). Percentiles come from the individual calls, not from an average over a loop.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.measure.common import eval_mode, num_threads


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds at a given batch size and thread count."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    calls: int
    threads: int
    batch_size: int

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch_size * 1000.0 / self.p50_ms


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def time_calls(fn: Callable[[], Any], *, warmup: int, calls: int) -> list[float]:
    """Run `fn` warmup + calls times; return the kept calls' durations in ms."""
    if calls < 1 or warmup < 0:
        raise ConfigError(f"need calls >= 1 and warmup >= 0, got calls={calls} warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def summarize(times_ms: list[float], *, threads: int, batch_size: int) -> LatencyStats:
    ordered = sorted(times_ms)
    return LatencyStats(
        p50_ms=percentile(ordered, 50),
        p90_ms=percentile(ordered, 90),
        p99_ms=percentile(ordered, 99),
        mean_ms=statistics.fmean(ordered),
        min_ms=ordered[0],
        calls=len(ordered),
        threads=threads,
        batch_size=batch_size,
    )


def measure_latency(
    model: nn.Module,
    example: Any,
    *,
    threads: int = 1,
    warmup: int = 20,
    calls: int = 200,
    preprocess: Callable[[Any], torch.Tensor] | None = None,
    postprocess: Callable[[Any], Any] | None = None,
) -> LatencyStats:
    """Latency of `model(example)` in eval mode without autograd.

    With `preprocess`/`postprocess`, the timed call is end-to-end:
    `postprocess(model(preprocess(example)))`, as a deployed service would run it.
    """
    pre = preprocess or (lambda x: x)
    post = postprocess or (lambda y: y)

    def call() -> Any:
        return post(model(pre(example)))

    with num_threads(threads), eval_mode(model), torch.inference_mode():
        times = time_calls(call, warmup=warmup, calls=calls)
    batch = example.shape[0] if isinstance(example, torch.Tensor) else 1
    return summarize(times, threads=threads, batch_size=batch)


def compare_latency(
    models: dict[str, nn.Module],
    example: torch.Tensor,
    *,
    threads: int = 1,
    rounds: int = 20,
    calls_per_round: int = 25,
    warmup: int = 10,
) -> dict[str, LatencyStats]:
    """Latency of several models measured in interleaved rounds (A, B, A, B, …).

    On a shared, noisy machine a slow spell then hits every model alike, so ratios between the
    returned medians are fair where back-to-back runs are not.
    """
    if not models:
        raise ConfigError("compare_latency needs at least one model")
    times: dict[str, list[float]] = {name: [] for name in models}
    with num_threads(threads), torch.inference_mode(), contextlib.ExitStack() as stack:
        for model in models.values():
            stack.enter_context(eval_mode(model))
        for model in models.values():
            time_calls(lambda m=model: m(example), warmup=warmup, calls=1)
        for _ in range(rounds):
            for name, model in models.items():
                times[name] += time_calls(
                    lambda m=model: m(example), warmup=0, calls=calls_per_round
                )
    batch = example.shape[0]
    return {name: summarize(t, threads=threads, batch_size=batch) for name, t in times.items()}
