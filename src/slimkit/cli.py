"""The `slimkit` command: a thin layer that parses, calls the library and prints.

Library errors (`SlimkitError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from slimkit import bench
from slimkit.cli_common import format_comparison, format_metrics, load_model
from slimkit.data import load
from slimkit.distill import distill
from slimkit.errors import ConfigError, SlimkitError
from slimkit.measure import measure
from slimkit.nn import create, list_models, model_info
from slimkit.pipeline.cli import add_parser as add_compress_parser
from slimkit.prune.cli import add_parser as add_prune_parser
from slimkit.quant.cli import add_parser as add_quantize_parser
from slimkit.search.cli import add_parser as add_search_parser
from slimkit.share.cli import add_parser as add_share_parser
from slimkit.sweep import SweepConfig, format_table, sweep, write_outputs
from slimkit.train import TrainConfig
from slimkit.weights import load_weights, save_weights

log = logging.getLogger("slimkit")


def cmd_profile(args: argparse.Namespace) -> int:
    name, model, data, train_time = load_model(args.model, args.weights, args.data)
    metrics = measure(
        model,
        name=name,
        data=data.test if data else None,
        artifact=args.weights,
        threads=args.threads,
        throughput_batch=args.throughput_batch,
        memory=not args.no_memory,
        train_time_s=train_time,
        trace_path=args.trace,
    )
    print(metrics.to_json() if args.json else format_metrics(metrics))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    name, model, data, _ = load_model(args.model, args.weights, args.data)
    backends = args.backends.split(",") if args.backends else None
    int8 = backends is None or any("int8" in b for b in backends)
    if data is None and int8:
        raise ConfigError(f"{name} needs --data to calibrate the int8 backends")
    example = data.test.normalized(torch.arange(1)) if data else torch.randn(1, *model.input_shape)
    rows = bench.run_bench(
        model,
        example,
        calib=data.train if data else None,
        backends=backends,
        threads=_ints(args.threads, "--threads"),
        batches=_ints(args.batch, "--batch"),
    )
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "fastest": bench.fastest(rows)}))
        return 0
    print(f"slimkit bench: {name}, p50 of interleaved rounds, ratios vs eager fp32")
    print(bench.format_table(rows))
    for setting, row in bench.fastest(rows).items():
        print(f"  fastest at {setting}: {row['backend']} ({row['p50_ms']:.3f} ms)")
    return 0


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{flag} takes comma-separated integers such as 1,64, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} values must be >= 1, got {text!r}")
    return values


def cmd_distill(args: argparse.Namespace) -> int:
    name, teacher, data, _ = load_model(args.teacher, args.teacher_weights, args.data)
    if data is None:
        raise ConfigError(f"distillation trains the student: give --data for {name}")
    student = create(args.student)
    if args.student_weights:
        load_weights(student, args.student_weights)
    options = dict(threads=args.threads, memory=False, layers=False, latency_calls=100)
    before = measure(teacher, name=f"teacher {name}", data=data.test, **options)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, weight_decay=1e-4)
    distill(student, teacher, data.train, cfg, temperature=args.temperature, alpha=args.alpha,
            mirror=args.mirror)  # fmt: skip
    artifact = save_weights(student, Path(args.out) / f"{args.student}-distilled.safetensors")
    after = measure(student, name=f"student {args.student}", data=data.test, artifact=artifact,
                    **options)  # fmt: skip
    print(f"slimkit distill: {name} -> {args.student}, wrote {artifact}")
    print(format_comparison(before, after))
    return 0


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{flag} takes comma-separated numbers such as 1,0.5, got {text!r}"
        ) from None


def cmd_sweep(args: argparse.Namespace) -> int:
    train = None
    if args.epochs:
        train = TrainConfig(
            epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, augment=args.augment
        )
    config = SweepConfig(
        args.model,
        _floats(args.widths, "--widths"),
        _floats(args.resolutions, "--resolutions"),
        train,
        threads=args.threads,
    )
    data = load(args.data) if args.data else None
    if data is not None and train is None:
        log.warning("no --epochs: the points are untrained (accuracy is chance)")
    result = sweep(config, data)
    json_path, html_path = write_outputs(result, args.out)
    print(format_table(result))
    print(f"slimkit sweep: {len(result.points)} points; wrote {json_path} and {html_path}")
    return 0


def cmd_zoo(_args: argparse.Namespace) -> int:
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
    parser.add_argument(
        "--verbose", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="measure a model on every metric")
    p.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    p.add_argument(
        "--weights", help="weights file (.safetensors, a torch state dict, or a .slim file)"
    )
    p.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    p.add_argument("--json", action="store_true", help="print the Metrics record as JSON")
    p.add_argument("--threads", type=int, default=1, help="torch threads for timing (default 1)")
    p.add_argument(
        "--throughput-batch", type=int, default=64, help="batch size for throughput (default 64)"
    )
    p.add_argument("--trace", help="write a Chrome/Perfetto trace of the per-layer profile here")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.set_defaults(func=cmd_profile)

    add_prune_parser(sub)
    add_quantize_parser(sub)

    b = sub.add_parser("bench", help="latency of every backend x threads x batch, interleaved")
    b.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    b.add_argument(
        "--backends",
        help=f"comma-separated subset of {','.join(bench.BACKENDS)} (default: all that run here)",
    )
    b.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    b.add_argument("--batch", default="1,64", help="comma-separated batch sizes (default 1,64)")
    b.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    b.add_argument("--data", help="data for int8 calibration (default: embedded for MNIST)")
    b.add_argument("--json", action="store_true", help="print rows as JSON")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("distill", help="train a student against a teacher's soft targets")
    d.add_argument("--teacher", help="zoo model name of the teacher (default: embedded LeNet-5)")
    d.add_argument("--teacher-weights", help="the teacher's weights file")
    d.add_argument("--student", required=True, help="zoo model name of the student")
    d.add_argument("--student-weights", help="start the student from these weights")
    d.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    d.add_argument("--epochs", type=int, default=5)
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    d.add_argument("--temperature", type=float, default=4.0)
    d.add_argument("--alpha", type=float, default=0.9, help="weight of the soft-target term")
    d.add_argument(
        "--mirror", action="store_true",
        help="average the teacher over each image and its left-right mirror",
    )  # fmt: skip
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--out", default="out", help="folder for the student's weights")
    d.set_defaults(func=cmd_distill)

    add_compress_parser(sub)
    add_search_parser(sub)

    sw = sub.add_parser("sweep", help="accuracy, MACs, latency, NetScore over width × resolution")
    sw.add_argument(
        "model", nargs="?", default="mobilenet_v1", help="zoo model with a width option"
    )
    sw.add_argument("--widths", default="1,0.75,0.5,0.25", help="width multipliers α in (0, 1]")
    sw.add_argument("--resolutions", default="1", help="resolution multipliers ρ in (0, 1]")
    sw.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    sw.add_argument("--epochs", type=int, default=0, help="train each point N epochs (needs data)")
    sw.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (cosine schedule)")
    sw.add_argument("--batch-size", type=int, default=128)
    sw.add_argument("--augment", choices=["none", "crop_flip", "shift"], default="none")
    sw.add_argument("--threads", type=int, default=1, help="torch threads for timing (default 1)")
    sw.add_argument("--out", default="sweep-out", help="folder for sweep.json and sweep.html")
    sw.set_defaults(func=cmd_sweep)

    add_share_parser(sub)

    z = sub.add_parser("zoo", help="list the models in the zoo")
    z.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="slimkit: %(message)s", level=logging.INFO)
    try:
        return args.func(args)
    except SlimkitError as e:
        if args.verbose:
            raise
        print(f"slimkit: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug or an unforeseen failure: still one line unless --verbose
        if args.verbose:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:200]
        print(
            f"slimkit: error: {type(e).__name__}: {first} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
