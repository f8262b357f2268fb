"""Does removing channels buy real CPU speed? ResNet-20 on CIFAR-10 (JPEG copy).

    python benchmarks/prune_cifar.py [--model resnet20] [--ratio 0.3] [--epochs 15]
        [--round-to 8] [--distill 0.9]

Starts from the baseline of benchmarks/baselines.py (`baselines.py cifar10` first), removes
channels by L1 filter norm (Li et al. 2017) with slimkit's graph (residual groups pruned
together), fine-tunes, and measures MACs beside batch-1 latency timed in interleaved rounds
against the unpruned model (1 thread). With --distill α the fine-tune learns from the unpruned
model's soft targets (Hinton et al., T = 4) beside the labels. References: DepGraph ResNet-56
2.13× fewer MACs at +0.24 pt; Li et al. 27.6% fewer FLOPs at −0.02 pt.
Results: benchmarks/results/channels-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from baselines import DATA, RESULTS, ROOT, load_baseline, machine
from slimkit.data import cache_dir, load
from slimkit.distill import distill
from slimkit.files import atomic_write_text
from slimkit.measure import compare_latency, count_macs, evaluate, measure
from slimkit.prune import ChannelPruning, prune_channels, save_pruned
from slimkit.train import TrainConfig, fit


def run(
    name: str,
    ratio: float,
    importance: str,
    epochs: int,
    round_to: int,
    alpha: float,
    shared: Path,
) -> dict:
    data = load(shared / "data" / DATA["cifar10"])
    dense = load_baseline(name)
    dense_eval = evaluate(dense, data.test)
    example = data.test.normalized(torch.arange(1))  # (1, 3, 32, 32)

    t0 = time.perf_counter()
    pruned = prune_channels(
        dense, ChannelPruning(ratio=ratio, importance=importance, round_to=round_to), example
    )
    prune_s = time.perf_counter() - t0
    before_ft = evaluate(pruned, data.test)
    cfg = TrainConfig(
        epochs=epochs, batch_size=128, lr=0.02, weight_decay=5e-4, augment="crop_flip"
    )
    if alpha > 0:
        history = distill(pruned, dense, data.train, cfg, alpha=alpha, val=data.test)
    else:
        history = fit(pruned, data.train, cfg, val=data.test)
    artifact = save_pruned(
        pruned, cache_dir() / "pruned" / f"{name}-channels.safetensors", arch={"zoo": name}
    )
    metrics = measure(pruned, name=f"{name} pruned", data=data.test, artifact=artifact)
    latency = compare_latency({"dense": dense, "pruned": pruned}, example, rounds=30)
    macs_dense = count_macs(dense, example).dense
    result = {
        "model": name,
        "ratio": ratio,
        "importance": importance,
        "round_to": round_to,
        "distill_alpha": alpha,
        "dense_top1": round(dense_eval.top1, 2),
        "pruned_top1_before_finetune": round(before_ft.top1, 2),
        "pruned_top1": round(metrics.top1, 2),
        "drop_points": round(dense_eval.top1 - metrics.top1, 2),
        "mac_reduction": round(macs_dense / metrics.macs, 2),
        "param_reduction": round(sum(p.numel() for p in dense.parameters()) / metrics.params, 2),
        "latency_p50_ms": {k: round(v.p50_ms, 4) for k, v in latency.items()},
        "latency_speedup": round(latency["dense"].p50_ms / latency["pruned"].p50_ms, 2),
        "threads": 1,
        "prune_time_s": round(prune_s, 2),
        "finetune": asdict(cfg),
        "finetune_time_s": round(history.train_time_s, 1),
        "machine": machine(),
        "metrics": metrics.to_dict(),
    }
    atomic_write_text(RESULTS / f"channels-{name}.json", json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--importance", default="l1")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--round-to", type=int, default=1)
    parser.add_argument("--distill", type=float, default=0.0, metavar="ALPHA")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    r = run(
        args.model,
        args.ratio,
        args.importance,
        args.epochs,
        args.round_to,
        args.distill,
        args.shared,
    )
    print(
        f"{r['model']}: top-1 {r['dense_top1']} -> {r['pruned_top1']} "
        f"({r['drop_points']:+} pt drop), MACs {r['mac_reduction']}x fewer, "
        f"latency {r['latency_speedup']}x faster (p50 {r['latency_p50_ms']}), "
        f"prune {r['prune_time_s']} s + fine-tune {r['finetune_time_s']} s"
    )


if __name__ == "__main__":
    main()
