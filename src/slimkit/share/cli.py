"""`slimkit encode` and `slimkit decode`: write a model as a `.slim` file, and read one back."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from slimkit import prune, share
from slimkit.cli_common import load_model
from slimkit.distill import distill
from slimkit.errors import ConfigError
from slimkit.measure import evaluate
from slimkit.train import TrainConfig
from slimkit.weights import save_weights


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="prune, share weights and entropy-code into a .slim file")
    p.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    p.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    p.add_argument("--sparsity", type=float, help="prune this fraction of weights first (global)")
    p.add_argument("--bits", type=int, default=5, help="2^bits shared weights per layer")
    p.add_argument("--conv-bits", type=int, help="bits for conv layers (default --bits)")
    p.add_argument("--bias-bits", type=int, help="share biases too, with 2^N values per layer")
    p.add_argument("--init", choices=share.kmeans.INITS, default="linear")
    p.add_argument("--codebook", choices=share.kmeans.CODEBOOKS, default="float32")
    p.add_argument(
        "--coders",
        nargs="+",
        choices=share.CODERS,
        default=list(share.CODERS),
        help="coders tried per stream, the smallest kept (fixed is always tried)",
    )
    p.add_argument("--epochs", type=int, default=0, help="centroid fine-tuning epochs (needs data)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate for the centroids")
    p.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    p.add_argument("--out", default="out", help="folder for the .slim file")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="check a .slim file and report it layer by layer")
    p.add_argument("file", help="a .slim file written by `slimkit encode`")
    p.add_argument("--out", help="also write the decoded weights here (.safetensors)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_decode)


def cmd_encode(args: argparse.Namespace) -> int:
    name, model, data, _ = load_model(args.model, args.weights, args.data)
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
