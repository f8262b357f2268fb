"""Attention-head pruning: what do whole heads of transformer_mnist cost and buy on a CPU?

    python benchmarks/prune_heads.py                       # L1 and Taylor, 25/50/75% of heads
    python benchmarks/prune_heads.py --importance l1 --ratios 0.5 --epochs 0   # prune only

Starts from the trained baseline of benchmarks/baselines.py (`baselines.py mnist` first):
2 pre-norm encoder blocks of 4 heads each. `split_attention` turns each nn.MultiheadAttention
into the equivalent HeadAttention (same outputs), whose heads are channel units; then only the
heads are pruned — the same fraction of each block's heads, by --importance (l1: the head's
q/k/v rows; taylor: |w·∂L/∂w| over one batch of --taylor-batch training images), the
feed-forward layers left whole (ChannelPruning(0.0, layer_ratios={<q_proj>: r})). Each pruned
model is fine-tuned with the unpruned model as distillation teacher (α --distill, T 4) for
--epochs on full MNIST (AdamW, cosine from --lr), training on 1 thread. Latency: batch 1,
1 thread, every model (unpruned MHA, unpruned split, each pruned one) interleaved in one
compare_latency run; p50 and min. Each pruned model is saved with save_pruned and must load
back with identical outputs.
Reference (Voita et al. 2019): pruning 38 of 48 encoder heads of a WMT En-Ru Transformer costs
0.15 BLEU. Results: benchmarks/results/heads-transformer_mnist.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from baselines import DATA, RESULTS, ROOT, load_baseline, machine
from slimkit.data import cache_dir, load
from slimkit.distill import distill
from slimkit.files import atomic_write_text
from slimkit.measure import compare_latency, count_macs, count_params, evaluate
from slimkit.prune import (
    ChannelPruning,
    HeadAttention,
    load_pruned,
    prune_channels,
    save_pruned,
    split_attention,
)
from slimkit.train import TrainConfig

ARCH = {"zoo": "transformer_mnist", "kwargs": {"attention": "heads"}}


def heads(model: torch.nn.Module) -> list[int]:
    return [m.num_heads for m in model.modules() if isinstance(m, HeadAttention)]


def prune_heads(
    split: torch.nn.Module, ratio: float, importance: str, batch: tuple[Tensor, Tensor]
) -> torch.nn.Module:
    """`ratio` of every block's heads removed by `importance`; nothing else changes."""
    attn = [n for n, m in split.named_modules() if isinstance(m, HeadAttention)]
    config = ChannelPruning(
        0.0, importance=importance, layer_ratios={f"{n}.q_proj": ratio for n in attn}
    )
    grads = batch if importance == "taylor" else None
    return prune_channels(split, config, batch[0][:2], data_batch=grads).eval()


def prune_point(
    args: argparse.Namespace, dense, split, data, batch, importance: str, ratio: float
) -> tuple[torch.nn.Module, dict]:
    """One pruned, fine-tuned model and its record (latency is added later, for all at once)."""
    key = f"{importance} {ratio:g}"
    t = time.perf_counter()
    pruned = prune_heads(split, ratio, importance, batch)
    prune_s = time.perf_counter() - t
    before = evaluate(pruned, data.test).top1
    finetune_s = 0.0
    if args.epochs > 0:
        cfg = finetune_config(args)
        finetune_s = distill(pruned, dense, data.train, cfg, alpha=args.distill).train_time_s
    pruned.eval()
    path = cache_dir() / "pruned" / f"heads-{importance}-{ratio:g}.safetensors"
    save_pruned(pruned, path, arch=ARCH)
    x = data.test.normalized(torch.arange(256))
    with torch.no_grad():
        reloads = torch.equal(load_pruned(path).eval()(x), pruned(x))
    if not reloads:  # a figure for a model its artifact does not hold would be worthless
        raise SystemExit(f"{path} does not reload into the model it was saved from")
    example = x[:1]
    return pruned, {
        "key": key,
        "importance": importance,
        "ratio": ratio,
        "heads": heads(pruned),
        "top1_before_finetune": round(before, 2),
        "top1": round(evaluate(pruned, data.test).top1, 2),
        "params": count_params(pruned).total,
        "macs": count_macs(pruned, example).dense,
        "file_bytes": path.stat().st_size,
        "reloads_identically": reloads,
        "prune_s": round(prune_s, 3),
        "finetune_s": round(finetune_s, 1),
    }


def finetune_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, optimizer="adamw", lr=args.lr, weight_decay=0.05)


def run(args: argparse.Namespace) -> dict:
    t = time.perf_counter()
    data = load(args.shared / "data" / DATA["mnist"])
    load_s = time.perf_counter() - t
    dense = load_baseline("transformer_mnist")
    split = split_attention(dense).eval()
    example = data.test.normalized(torch.arange(1))  # (1, 1, 28, 28)
    chosen = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    chosen = chosen[: args.taylor_batch]
    batch = (data.train.normalized(chosen), data.train.labels[chosen])
    macs_dense = count_macs(dense, example).dense
    params_dense = count_params(dense).total
    points, models = [], {"dense MHA": dense, "dense split": split}
    for importance in args.importance:
        for ratio in args.ratios:
            pruned, record = prune_point(args, dense, split, data, batch, importance, ratio)
            record["mac_reduction"] = round(macs_dense / record["macs"], 2)
            record["param_reduction"] = round(params_dense / record["params"], 2)
            points.append(record)
            models[record["key"]] = pruned
            print(f"{record['key']}: top-1 {record['top1']}", file=sys.stderr)  # progress
    t = time.perf_counter()
    lat = compare_latency(models, example, rounds=args.rounds, warmup=20)
    latency_s = time.perf_counter() - t
    ms = {k: {"p50_ms": round(v.p50_ms, 4), "min_ms": round(v.min_ms, 4)} for k, v in lat.items()}
    for p in points:
        p["latency"] = ms[p["key"]]
        for stat in ("p50", "min"):  # against the model the user has: nn.MultiheadAttention
            dense_ms, pruned_ms = ms["dense MHA"][f"{stat}_ms"], ms[p["key"]][f"{stat}_ms"]
            p[f"speedup_{stat}"] = round(dense_ms / pruned_ms, 2)
    return {
        "model": "transformer_mnist",
        "arch": ARCH,
        "dense_top1": round(evaluate(dense, data.test).top1, 2),
        "split_top1": round(evaluate(split, data.test).top1, 2),
        "dense_heads": heads(split),
        "dense_params": params_dense,
        "dense_macs": macs_dense,
        "latency_dense_mha": ms["dense MHA"],
        "latency_dense_split": ms["dense split"],
        "finetune": {**asdict(finetune_config(args)), "distill_alpha": args.distill}
        if args.epochs > 0
        else None,
        "taylor_batch": args.taylor_batch,
        "points": points,
        "threads_training": torch.get_num_threads(),
        "threads_latency": 1,
        "latency_rounds": args.rounds,
        "times_s": {"load_data_s": round(load_s, 2), "latency_s": round(latency_s, 2)},
        "machine": machine(),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--importance", nargs="+", default=["l1", "taylor"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs (0: none)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW, cosine: the baseline's peak")
    parser.add_argument("--distill", type=float, default=0.7, metavar="ALPHA")
    parser.add_argument("--taylor-batch", type=int, default=512, help="images for taylor grads")
    parser.add_argument("--rounds", type=int, default=100, help="interleaved latency rounds")
    parser.add_argument("--threads", type=int, default=1, help="training threads")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=RESULTS / "heads-transformer_mnist.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    r = run(args)
    atomic_write_text(args.out, json.dumps(r, indent=1))
    print(
        f"dense: top-1 {r['dense_top1']}, {r['dense_params']:,} params, {r['dense_macs']:,} MACs, "
        f"p50 {r['latency_dense_mha']['p50_ms']} ms (split: {r['latency_dense_split']['p50_ms']})"
    )
    for p in r["points"]:
        print(
            f"{p['key']}: heads {p['heads']}, top-1 {p['top1_before_finetune']} -> {p['top1']}, "
            f"params {p['params']:,} ({p['param_reduction']}x), MACs {p['macs']:,} "
            f"({p['mac_reduction']}x), p50 {p['latency']['p50_ms']} ms ({p['speedup_p50']}x), "
            f"prune {p['prune_s']} s, fine-tune {p['finetune_s']} s"
        )


if __name__ == "__main__":
    main()
