"""`slimkit prune`: prune a model, fine-tune it and write the smaller artifact."""

from __future__ import annotations

import argparse
import copy
import inspect
from pathlib import Path

import torch

from slimkit import prune
from slimkit.cli_common import format_comparison, load_model
from slimkit.errors import ConfigError
from slimkit.graph import LAYERS
from slimkit.layer_names import check_names
from slimkit.measure import measure
from slimkit.nn import model_info
from slimkit.train import TrainConfig, fit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model and write the smaller artifact")
    p.add_argument("model", nargs="?", help="zoo model name (default: the embedded LeNet-5)")
    p.add_argument("--method", choices=["magnitude", "channel"], default="magnitude")
    p.add_argument(
        "--amount",
        type=float,
        default=0.9,
        help="magnitude: fraction of weights zeroed; channel: fraction of channels removed",
    )
    p.add_argument("--scope", choices=["layer", "global"], default="global")
    p.add_argument("--importance", default="l1", help="channel importance: l1 l2 taylor ...")
    p.add_argument("--round-to", type=int, default=1, help="keep channel counts multiples of N")
    p.add_argument(
        "--split-attention",
        action="store_true",
        help="channel: convert nn.MultiheadAttention to HeadAttention first, so that whole "
        "attention heads are pruned as units",
    )
    p.add_argument(
        "--keep",
        nargs="+",
        default=[],
        metavar="NAME",
        help="layers left alone: channel: the channel groups they produce stay whole "
        "(e.g. blocks.0.attn.q_proj keeps that layer's heads); magnitude: not pruned",
    )
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    p.add_argument("--data", help="data: IDX folder, .npz, image-folder tree or .tar.gz")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="out", help="folder for the pruned artifact")
    p.set_defaults(func=cmd_prune)


def _heads(model: torch.nn.Module) -> dict[str, int]:
    """Heads of every HeadAttention, by module name."""
    return {n: m.num_heads for n, m in model.named_modules() if isinstance(m, prune.HeadAttention)}


def cmd_prune(args: argparse.Namespace) -> int:
    name, model, data, _ = load_model(args.model, args.weights, args.data)
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
