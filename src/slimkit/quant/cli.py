"""`slimkit quantize`: quantize a model for a runtime and write the smaller artifact."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slimkit import quant
from slimkit.cli_common import format_comparison, load_model
from slimkit.distill import distill
from slimkit.errors import ConfigError
from slimkit.export import OnnxModel
from slimkit.measure import measure
from slimkit.train import TrainConfig
from slimkit.weights import save_weights

SCHEMES = ("int8", "int8-qat", "dynamic", "kbit", "binary", "ternary", "fp16", "bf16")
CALIBRATIONS = {
    "torch": ("histogram", "minmax"),
    "onnxruntime": ("minmax", "percentile", "entropy"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="quantize a model and write the smaller artifact")
    p.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    p.add_argument("--scheme", choices=SCHEMES, default="int8")
    p.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="onnxruntime",
        help="int8 runtime: torch (torchao + inductor) or onnxruntime (QDQ .onnx)",
    )
    p.add_argument(
        "--calibration",
        choices=["minmax", "histogram", "percentile", "entropy"],
        default="minmax",
        help="activation ranges for int8 (histogram: torch; percentile, entropy: onnxruntime)",
    )
    p.add_argument("--bits", type=int, default=4, help="weight bits for --scheme kbit (2-8)")
    p.add_argument("--kbit-scheme", choices=["uniform", "lsq"], default="uniform")
    p.add_argument("--group-size", type=int, help="one scale per N weights instead of per channel")
    p.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="quantization-aware training epochs for int8-qat/kbit/binary/ternary (0: none)",
    )
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    p.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="out", help="folder for the quantized artifact")
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args: argparse.Namespace) -> int:
    name, model, data, _ = load_model(args.model, args.weights, args.data)
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
