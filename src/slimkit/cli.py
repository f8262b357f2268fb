"""The `slimkit` command: a thin layer that parses, calls the library and prints.

Library errors (`SlimkitError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from slimkit.errors import SlimkitError
from slimkit.measure import Metrics

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


def _load_model(name: str | None, weights: str | None, data_path: str | None):
    """Resolve (model, eval data, train time) for `profile` from the arguments."""
    from slimkit.data import load, load_embedded
    from slimkit.default import DEFAULT_MODEL, default_model
    from slimkit.nn import create, model_info
    from slimkit.weights import load_weights

    if name is None and weights is None:
        trained = default_model()
        data = load(data_path) if data_path else trained.data
        return DEFAULT_MODEL, trained.model, data.test, trained.train_time_s
    name = name or DEFAULT_MODEL
    model = create(name)
    if weights:
        load_weights(model, weights)
    else:
        log.warning("no --weights given: profiling an untrained %s (accuracy is chance)", name)
    if data_path:
        data = load(data_path)
    elif model_info(name).dataset == "mnist":
        data = load_embedded()
    else:
        data = None
    return name, model, data.test if data else None, None


def cmd_profile(args: argparse.Namespace) -> int:
    from slimkit.measure import measure

    name, model, data, train_time = _load_model(args.model, args.weights, args.data)
    metrics = measure(
        model,
        name=name,
        data=data,
        artifact=args.weights,
        threads=args.threads,
        throughput_batch=args.throughput_batch,
        memory=not args.no_memory,
        train_time_s=train_time,
        trace_path=args.trace,
    )
    print(metrics.to_json() if args.json else format_metrics(metrics))
    return 0


def cmd_zoo(_args: argparse.Namespace) -> int:
    from slimkit.nn import list_models, model_info

    names = list_models()
    width = max(len(n) for n in names)
    for n in names:
        info = model_info(n)
        print(f"{n:<{width}}  {info.dataset:<8}  {info.description} ({info.paper})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimkit", description="Make trained PyTorch models smaller and faster, measured."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="measure a model on every metric")
    p.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    p.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    p.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    p.add_argument("--json", action="store_true", help="print the Metrics record as JSON")
    p.add_argument("--threads", type=int, default=1, help="torch threads for timing (default 1)")
    p.add_argument(
        "--throughput-batch", type=int, default=64, help="batch size for throughput (default 64)"
    )
    p.add_argument("--trace", help="write a Chrome/Perfetto trace of the per-layer profile here")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.set_defaults(func=cmd_profile)

    z = sub.add_parser("zoo", help="list the models in the zoo")
    z.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="slimkit: %(message)s", level=logging.INFO)
    try:
        return args.func(args)
    except SlimkitError as e:
        print(f"slimkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
