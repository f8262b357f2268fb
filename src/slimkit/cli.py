"""The `slimkit` command: a thin layer that parses, calls the library and prints.

Library errors (`SlimkitError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from slimkit import bench, prune, quant, share
from slimkit.data import load, load_embedded
from slimkit.default import DEFAULT_MODEL, default_model
from slimkit.distill import distill
from slimkit.errors import ConfigError, SlimkitError
from slimkit.export import OnnxModel
from slimkit.graph import LAYERS
from slimkit.layer_names import check_names
from slimkit.measure import Metrics, evaluate, measure
from slimkit.nn import create, list_models, model_info
from slimkit.pipeline.cli import add_parser as add_compress_parser
from slimkit.search.cli import add_parser as add_search_parser
from slimkit.sweep import SweepConfig, format_table, sweep, write_outputs
from slimkit.train import TrainConfig, fit
from slimkit.weights import load_weights, save_weights

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


def _load_model(name: str | None, weights: str | None, data_path: str | None):
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


def cmd_profile(args: argparse.Namespace) -> int:
    name, model, data, train_time = _load_model(args.model, args.weights, args.data)
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


def _heads(model: torch.nn.Module) -> dict[str, int]:
    """Heads of every HeadAttention, by module name."""
    return {n: m.num_heads for n, m in model.named_modules() if isinstance(m, prune.HeadAttention)}


def cmd_prune(args: argparse.Namespace) -> int:
    name, model, data, _ = _load_model(args.model, args.weights, args.data)
    if data is None:
        raise ConfigError(f"{name} needs --data to fine-tune and measure accuracy")
    train, test = data.train, data.test
    options = dict(threads=args.threads, memory=False, layers=False, latency_calls=100)
    arch = {"zoo": name, "kwargs": {}}
    original = model
    if args.split_attention:
        if args.method != "channel":  # its keys would no longer load into the zoo's model
            raise ConfigError(
                "--split-attention makes heads prunable channel units: use it with "
                "--method channel (magnitude pruning zeroes single weights and needs no split)"
            )
        model = prune.split_attention(model)  # same outputs; raises when there is no MHA
        if "attention" not in inspect.signature(model_info(name).factory).parameters:
            raise ConfigError(
                f"{name} cannot be rebuilt with HeadAttention (its factory has no attention= "
                "option), so a head-pruned artifact would not load"
            )
        arch["kwargs"]["attention"] = "heads"
    if args.method == "channel":  # ChannelPruning would list every module, not the closest
        layers = [n for n, m in model.named_modules() if isinstance(m, LAYERS)]
        check_names("prune", model, layers, args.keep, "--keep", "conv/linear/norm")
    before = measure(original, name=name, data=test, artifact=args.weights, **options)
    out = Path(args.out)
    finetune = None  # 0 epochs: prune only; a negative count is rejected by TrainConfig
    if args.finetune_epochs != 0:
        finetune = TrainConfig(
            epochs=args.finetune_epochs, optimizer="sgd", lr=args.lr, weight_decay=1e-4
        )
    if args.method == "magnitude":
        pruned = copy.deepcopy(model)
        config = prune.MagnitudePruning(
            sparsity=args.amount, scope=args.scope, exclude=tuple(args.keep)
        )
        prune.prune_magnitude(pruned, config)
        if finetune:
            fit(pruned, train, finetune, after_step=prune.reapply_masks)
        prune.make_permanent(pruned)
        artifact = prune.save_sparse(pruned, out / f"{name}-sparse.safetensors")
    else:
        config = prune.ChannelPruning(
            ratio=args.amount,
            importance=args.importance,
            scope=args.scope,
            round_to=args.round_to,
            layer_ratios=dict.fromkeys(args.keep, 0.0),
        )
        pruned = prune.prune_channels(
            model, config, test.normalized(torch.arange(2)), data_batch=train.first(256)
        )
        if finetune:
            fit(pruned, train, finetune)
        artifact = prune.save_pruned(pruned, out / f"{name}-channels.safetensors", arch=arch)
    after = measure(pruned, name=f"{name} pruned", data=test, artifact=artifact, **options)
    print(f"slimkit prune: {name}, {args.method} {args.amount}, wrote {artifact}")
    if args.split_attention:
        heads = _heads(model)
        kept = ", ".join(f"{n} {k}/{heads[n]}" for n, k in _heads(pruned).items())
        print(f"  heads kept: {kept}")
    print(format_comparison(before, after))
    return 0


SCHEMES = ("int8", "int8-qat", "dynamic", "kbit", "binary", "ternary", "fp16", "bf16")
CALIBRATIONS = {
    "torch": ("histogram", "minmax"),
    "onnxruntime": ("minmax", "percentile", "entropy"),
}


def cmd_quantize(args: argparse.Namespace) -> int:
    name, model, data, _ = _load_model(args.model, args.weights, args.data)
    if data is None:
        raise ConfigError(f"{name} needs --data to calibrate and measure accuracy")
    train, test = data.train, data.test
    options = dict(threads=args.threads, memory=False, layers=False, latency_calls=100)
    before = measure(model, name=name, data=test, artifact=args.weights, **options)
    out = Path(args.out)
    arch = {"zoo": name, "kwargs": {}}
    tune = TrainConfig(epochs=max(args.epochs, 1), lr=args.lr, weight_decay=0.0)
    example = test.normalized(torch.arange(2))
    scheme = args.scheme
    allowed = CALIBRATIONS[args.runtime]
    if scheme == "int8" and args.calibration not in allowed:
        raise ConfigError(
            f"--calibration {args.calibration} is not available on --runtime {args.runtime}: "
            f"use one of {', '.join(allowed)}"
        )
    if scheme == "int8" and args.runtime == "onnxruntime":
        artifact = out / f"{name}-int8.onnx"
        deployed = quant.quantize_onnx_static(
            model, train, artifact, method=args.calibration, threads=args.threads
        )
    elif scheme == "int8":
        config = quant.Int8Config(observer=args.calibration)
        deployed = quant.quantize_int8(model, train, config)
        artifact = quant.save_int8(deployed, out / f"{name}-int8.safetensors", arch=arch)
    elif scheme == "int8-qat":
        qat = quant.prepare_qat(model, example)
        if args.epochs:
            distill(qat, model, train, tune, alpha=0.5)
        deployed = quant.convert_qat(qat)
        artifact = quant.save_int8(deployed, out / f"{name}-int8-qat.safetensors", arch=arch)
    elif scheme == "dynamic":
        artifact = out / f"{name}-dynamic-int8.onnx"
        deployed = quant.quantize_onnx_dynamic(model, artifact, example, threads=args.threads)
    elif scheme in ("kbit", "binary", "ternary"):
        config = quant.KBitConfig(
            bits=args.bits if scheme == "kbit" else None,
            scheme=args.kbit_scheme if scheme == "kbit" else scheme,
            granularity="group" if args.group_size else "channel",
            group_size=args.group_size,
        )
        fake = quant.quantize_kbit(model, config)
        if args.epochs:
            distill(fake, model, train, tune, alpha=0.5)
        artifact = quant.save_kbit(
            fake, out / f"{name}-{scheme}{config.bits}.safetensors", arch=arch
        )
        deployed = quant.load_kbit(artifact)
    else:
        deployed = quant.to_half(model, torch.float16 if scheme == "fp16" else torch.bfloat16)
        artifact = save_weights(deployed, out / f"{name}-{scheme}.safetensors")
    after = measure(
        deployed,
        name=f"{name} {scheme}",
        data=test,
        artifact=artifact,
        reference=model if isinstance(deployed, (quant.Int8Model, OnnxModel)) else None,
        **options,
    )
    print(f"slimkit quantize: {name}, {scheme}, wrote {artifact}")
    print(format_comparison(before, after))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    name, model, data, _ = _load_model(args.model, args.weights, args.data)
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
    name, teacher, data, _ = _load_model(args.teacher, args.teacher_weights, args.data)
    if data is None:
        raise ConfigError(f"distillation trains the student: give --data for {name}")
    student = create(args.student)
    if args.student_weights:
        load_weights(student, args.student_weights)
    options = dict(threads=args.threads, memory=False, layers=False, latency_calls=100)
    before = measure(teacher, name=f"teacher {name}", data=data.test, **options)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, weight_decay=1e-4)
    distill(student, teacher, data.train, cfg, temperature=args.temperature, alpha=args.alpha)
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


def cmd_encode(args: argparse.Namespace) -> int:
    name, model, data, _ = _load_model(args.model, args.weights, args.data)
    if args.epochs and data is None:
        raise ConfigError(f"{name} needs --data to fine-tune the centroids (or --epochs 0)")
    work = copy.deepcopy(model)
    if args.sparsity:
        prune.prune_magnitude(work, prune.MagnitudePruning(sparsity=args.sparsity, scope="global"))
    config = share.WeightSharing(
        bits=args.bits,
        type_bits={torch.nn.Conv2d: args.conv_bits} if args.conv_bits else None,
        init=args.init,
        bias_bits=args.bias_bits,
        codebook=args.codebook,
    )
    shared = share.share_weights(work, config)
    if args.epochs:
        tune = TrainConfig(epochs=args.epochs, optimizer="adam", lr=args.lr, weight_decay=0.0)
        distill(shared, model, data.train, tune, alpha=0.5)
    coders = tuple(dict.fromkeys(["fixed", *args.coders]))
    artifact = share.save_compressed(
        shared, Path(args.out) / f"{name}.slim", arch={"zoo": name, "kwargs": {}}, coders=coders
    )
    print(share.compression_report(artifact).format("slimkit encode"))
    if data is not None:
        before = 100 - evaluate(model, data.test).top1
        after = 100 - evaluate(share.load_compressed(artifact), data.test).top1
        print(f"  error on {len(data.test)} test samples: {before:.2f}% -> {after:.2f}% (reloaded)")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    report = share.compression_report(args.file)
    if args.out:
        model = share.load_compressed(args.file)
        path = save_weights(model, args.out)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        print(report.format("slimkit decode"))
    if args.out:
        print(f"slimkit decode: wrote the decoded weights to {path}", file=sys.stderr)
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

    pr = sub.add_parser("prune", help="prune a model and write the smaller artifact")
    pr.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    pr.add_argument("--method", choices=["magnitude", "channel"], default="magnitude")
    pr.add_argument(
        "--amount",
        type=float,
        default=0.9,
        help="magnitude: fraction of weights zeroed; channel: fraction of channels removed",
    )
    pr.add_argument("--scope", choices=["layer", "global"], default="global")
    pr.add_argument("--importance", default="l1", help="channel importance: l1 l2 taylor ...")
    pr.add_argument("--round-to", type=int, default=1, help="keep channel counts multiples of N")
    pr.add_argument(
        "--split-attention",
        action="store_true",
        help="channel: convert nn.MultiheadAttention to HeadAttention first, so that whole "
        "attention heads are pruned as units",
    )
    pr.add_argument(
        "--keep",
        nargs="+",
        default=[],
        metavar="NAME",
        help="layers left alone: channel: the channel groups they produce stay whole "
        "(e.g. blocks.0.attn.q_proj keeps that layer's heads); magnitude: not pruned",
    )
    pr.add_argument("--finetune-epochs", type=int, default=2)
    pr.add_argument("--lr", type=float, default=0.01)
    pr.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    pr.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument("--out", default="out", help="folder for the pruned artifact")
    pr.set_defaults(func=cmd_prune)

    q = sub.add_parser("quantize", help="quantize a model and write the smaller artifact")
    q.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    q.add_argument("--scheme", choices=SCHEMES, default="int8")
    q.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="onnxruntime",
        help="int8 runtime: torch (torchao + inductor) or onnxruntime (QDQ .onnx)",
    )
    q.add_argument(
        "--calibration",
        choices=["minmax", "histogram", "percentile", "entropy"],
        default="minmax",
        help="activation ranges for int8 (histogram: torch; percentile, entropy: onnxruntime)",
    )
    q.add_argument("--bits", type=int, default=4, help="weight bits for --scheme kbit (2-8)")
    q.add_argument("--kbit-scheme", choices=["uniform", "lsq"], default="uniform")
    q.add_argument("--group-size", type=int, help="one scale per N weights instead of per channel")
    q.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="quantization-aware training epochs for int8-qat/kbit/binary/ternary (0: none)",
    )
    q.add_argument("--lr", type=float, default=0.01)
    q.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    q.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--out", default="out", help="folder for the quantized artifact")
    q.set_defaults(func=cmd_quantize)

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

    e = sub.add_parser("encode", help="prune, share weights and entropy-code into a .slim file")
    e.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    e.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    e.add_argument("--sparsity", type=float, help="prune this fraction of weights first (global)")
    e.add_argument("--bits", type=int, default=5, help="2^bits shared weights per layer")
    e.add_argument("--conv-bits", type=int, help="bits for conv layers (default --bits)")
    e.add_argument("--bias-bits", type=int, help="share biases too, with 2^N values per layer")
    e.add_argument("--init", choices=share.kmeans.INITS, default="linear")
    e.add_argument("--codebook", choices=share.kmeans.CODEBOOKS, default="float32")
    e.add_argument(
        "--coders",
        nargs="+",
        choices=share.CODERS,
        default=list(share.CODERS),
        help="coders tried per stream, the smallest kept (fixed is always tried)",
    )
    e.add_argument("--epochs", type=int, default=0, help="centroid fine-tuning epochs (needs data)")
    e.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate for the centroids")
    e.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    e.add_argument("--out", default="out", help="folder for the .slim file")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="check a .slim file and report it layer by layer")
    d.add_argument("file", help="a .slim file written by `slimkit encode`")
    d.add_argument("--out", help="also write the decoded weights here (.safetensors)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=cmd_decode)

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
