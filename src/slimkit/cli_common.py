"""Helpers shared by the `slimkit` verbs: the model a verb acts on, and its measurements as text."""

from __future__ import annotations

import logging

from slimkit import share
from slimkit.data import load, load_embedded
from slimkit.default import DEFAULT_MODEL, default_model
from slimkit.measure import Metrics
from slimkit.nn import create, model_info
from slimkit.weights import load_weights

log = logging.getLogger("slimkit")


def _fmt_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _opt(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def format_metrics(m: Metrics) -> str:
    """A readable summary table followed by the per-layer table."""
    rows = [
        ("parameters", f"{_fmt_count(m.params)} ({m.params:,}; {m.sparsity:.1%} zero)"),
        (
            "size: dense fp32 / file",
            f"{_fmt_bytes(m.size_dense_bytes)} / {_fmt_bytes(m.size_file_bytes)}",
        ),
        (
            "MACs / sample",
            f"{_fmt_count(m.macs)} (effective {_fmt_count(m.macs_effective)}, "
            f"training {_fmt_count(m.macs_training)})",
        ),
        (
            f"latency, batch {m.latency_batch}, {m.threads} thread(s)",
            f"p50 {m.latency_p50_ms:.3f} ms  p90 {m.latency_p90_ms:.3f}  "
            f"p99 {m.latency_p99_ms:.3f}  mean {m.latency_mean_ms:.3f}",
        ),
        (
            f"throughput, batch {m.throughput_batch}",
            "—" if m.throughput_per_s is None else f"{m.throughput_per_s:,.0f} samples/s",
        ),
        (
            "peak memory: inference / train step",
            "—"
            if m.memory_inference_bytes is None
            else _fmt_bytes(m.memory_inference_bytes)
            + " / "
            + _fmt_bytes(m.memory_training_bytes or 0),
        ),
        (
            "accuracy top-1 / top-5",
            "—" if m.top1 is None else f"{m.top1:.2f}% / {m.top5:.2f}% on {m.eval_samples} samples",
        ),
        ("training time", _opt(m.train_time_s, ".1f") + " s"),
        ("information density", _opt(m.information_density, ".2f") + " %/M params"),
        ("NetScore", _opt(m.netscore, ".2f")),
        ("energy (45 nm estimate)", f"{m.energy_uj_estimate:.2f} µJ / sample"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"slimkit profile: {m.model}", ""]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    if m.layers:
        lines += [
            "",
            f"  {'layer':<24} {'type':<14} {'params':>9} {'sparsity':>8} "
            f"{'MACs':>9} {'time ms':>8}",
        ]
        for r in m.layers:
            lines.append(
                f"  {r.name[:24]:<24} {r.type[:14]:<14} {r.params:>9,} {r.sparsity:>8.1%} "
                f"{_fmt_count(r.macs):>9} {r.time_ms:>8.3f}"
            )
    return "\n".join(lines)


def format_comparison(before: Metrics, after: Metrics) -> str:
    """Before/after table of the figures a compression step changes."""

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a and b else "—"

    rows = [
        ("parameters (non-zero)", before.params_nonzero, after.params_nonzero, _fmt_count),
        ("file size", before.size_file_bytes, after.size_file_bytes, _fmt_bytes),
        ("MACs / sample", before.macs, after.macs, _fmt_count),
        ("effective MACs", before.macs_effective, after.macs_effective, _fmt_count),
        ("latency p50 (ms)", before.latency_p50_ms, after.latency_p50_ms, lambda v: f"{v:.3f}"),
    ]
    lines = [f"  {'':<24} {'before':>12} {'after':>12} {'reduction':>10}"]
    for label, a, b, fmt in rows:
        lines.append(f"  {label:<24} {fmt(a):>12} {fmt(b):>12} {ratio(a, b):>10}")
    if before.top1 is not None and after.top1 is not None:
        lines.append(
            f"  {'top-1 accuracy (%)':<24} {before.top1:>12.2f} {after.top1:>12.2f} "
            f"{after.top1 - before.top1:>+9.2f}pt"
        )
    return "\n".join(lines)


def load_model(name: str | None, weights: str | None, data_path: str | None):
    """Resolve (name, model, data splits or None, train time) from the arguments."""
    if name is None and weights is None:
        trained = default_model()
        data = load(data_path) if data_path else trained.data
        return DEFAULT_MODEL, trained.model, data, trained.train_time_s
    if weights and share.is_slim_file(weights):  # a .slim file carries its architecture
        meta, _ = share.read_compressed(weights)
        name = meta["arch"].get("zoo") or name or DEFAULT_MODEL
        model = share.load_compressed(weights)
    else:
        name = name or DEFAULT_MODEL
        model = create(name)
        if weights:
            load_weights(model, weights)
        else:
            log.warning("no --weights given: using an untrained %s (accuracy is chance)", name)
    if data_path:
        data = load(data_path)
    elif model_info(name).dataset == "mnist":
        data = load_embedded()
    else:
        data = None
    return name, model, data, None
