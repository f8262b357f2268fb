"""Low-rank factorization and conv conversion on the zoo baselines: size, MACs, speed, accuracy.

    python benchmarks/lowrank.py svd         # (a) LeNet-300-100 fc1 by SVD, ≤ 1/5 of its weights
    python benchmarks/lowrank.py tucker2     # (b) ResNet-20's 3×3 convs by Tucker-2
    python benchmarks/lowrank.py cp          #     … or by CP (Lebedev et al. 2015)
    python benchmarks/lowrank.py separable   # (c) LeNet-5 (Caffe) convs → depthwise-separable
    python benchmarks/lowrank.py all         # svd, tucker2, separable

Each starts from the baseline of benchmarks/baselines.py, factorizes or converts a copy, measures
accuracy before recovery, then distills from the original (Hinton et al., T = 4, α = 0.9) and
measures again. Latency is batch-1, 1-thread, timed in interleaved rounds against the original.
References: Denton et al. 2014 (SVD of fully connected layers, ~5-13× on those layers at < 1 pt);
Kim et al. 2016 (Tucker-2 + VBMF ranks, e.g. VGG-S 2.3× fewer FLOPs at −0.3 pt top-5 after
fine-tuning); Howard et al. 2017 (depthwise-separable MobileNet, 8-9× fewer MACs per 3×3 conv).
Results: benchmarks/results/lowrank-<experiment>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from baselines import DATA, RESULTS, ROOT, load_baseline, machine
from slimkit.convert import Conversion, convert, plan_conversion
from slimkit.data import cache_dir, load
from slimkit.distill import distill
from slimkit.files import atomic_write_text
from slimkit.lowrank import (
    CP_ITERS,
    LowRank,
    factorize,
    load_factorized,
    plan_factorization,
    save_factorized,
)
from slimkit.measure import compare_latency, count_macs, count_params, evaluate, measure
from slimkit.train import TrainConfig

ALPHA = 0.9


def _record(
    experiment: str,
    model_name: str,
    dense: torch.nn.Module,
    small: torch.nn.Module,
    data,
    before_ft: float,
    history,
    cfg: TrainConfig,
    plans: list,
    extra: dict,
    eval_note: str,
) -> dict:
    example = data.test.normalized(torch.arange(1))
    artifact = save_factorized(
        small, cache_dir() / "factorized" / f"{model_name}-{experiment}.safetensors",
        arch={"zoo": model_name},
    )  # fmt: skip
    reloaded = load_factorized(artifact).eval()
    with torch.no_grad():
        exact = bool(torch.equal(reloaded(example), small.eval()(example)))
    latency = compare_latency({"original": dense, experiment: small}, example, rounds=30)
    metrics = measure(
        small, name=f"{model_name} {experiment}", data=data.test, artifact=artifact, memory=False,
        layers=False, train_time_s=history.train_time_s,
    )  # fmt: skip
    dense_top1 = evaluate(dense, data.test).top1
    macs = (count_macs(dense, example).dense, count_macs(small, example).dense)
    params = (count_params(dense).total, count_params(small).total)
    return {
        "experiment": experiment,
        "model": model_name,
        "evaluated_on": eval_note,
        "original_top1": round(dense_top1, 2),
        "top1_before_finetune": round(before_ft, 2),
        "top1": round(metrics.top1, 2),
        "drop_points": round(dense_top1 - metrics.top1, 2),
        "params": {"original": params[0], "factorized": params[1]},
        "param_reduction": round(params[0] / params[1], 2),
        "macs": {"original": macs[0], "factorized": macs[1]},
        "mac_reduction": round(macs[0] / macs[1], 2),
        "latency_p50_ms": {k: round(v.p50_ms, 4) for k, v in latency.items()},
        "latency_speedup": round(latency["original"].p50_ms / latency[experiment].p50_ms, 2),
        "threads": 1,
        "save_load_exact": exact,
        "layers": [asdict(p) for p in plans],
        "distill_alpha": ALPHA,
        "finetune": asdict(cfg),
        "finetune_time_s": round(history.train_time_s, 1),
        "finetune_history": [asdict(e) for e in history.epochs],
        "machine": machine(),
        **extra,
        "metrics": metrics.to_dict(),
    }


def run_svd(shared: Path, epochs: int, ratio: float) -> dict:
    """(a) SVD of LeNet-300-100's fc1 (784→300) to at most `ratio` of its weights."""
    data = load(shared / "data" / DATA["mnist"])
    dense = load_baseline("lenet300_100")
    config = LowRank(ratio=ratio, layers=["fc1"])
    t0 = time.perf_counter()
    small = factorize(dense, config)
    seconds = time.perf_counter() - t0
    before = evaluate(small, data.test).top1
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, weight_decay=1e-4)
    history = distill(small, dense, data.train, cfg, alpha=ALPHA, val=data.test)
    plans = plan_factorization(dense, config)
    fc1 = plans[0]
    extra = {
        "config": {"ratio": ratio, "layers": ["fc1"]},
        "factorize_time_s": round(seconds, 3),
        "fc1_params": {"original": fc1.params, "factorized": fc1.params_after},
        "fc1_param_reduction": round(fc1.params / fc1.params_after, 2),
    }
    r = _record("svd", "lenet300_100", dense, small, data, before, history, cfg, plans, extra,
                "MNIST test set, 10,000 images")  # fmt: skip
    r["error_percent"] = {"original": round(100 - r["original_top1"], 2),
                          "factorized": round(100 - r["top1"], 2)}  # fmt: skip
    return r


def run_resnet(shared: Path, epochs: int, method: str, rank: str, iters: int) -> dict:
    """(b) Tucker-2 (or CP) of ResNet-20's 3×3 convs; the 3-channel stem stays, as Kim et al.
    leave the first conv, and so do the 1×1 shortcuts. Ranks by a weight ratio or VBMF."""
    data = load(shared / "data" / DATA["cifar10"])
    dense = load_baseline("resnet20")
    rule = {"rank": "vbmf"} if rank == "vbmf" else {"ratio": float(rank)}
    config = LowRank(**rule, conv=method, layers=_three_by_three, iters=iters)
    t0 = time.perf_counter()
    small = factorize(dense, config)
    seconds = time.perf_counter() - t0
    before = evaluate(small, data.test).top1
    cfg = TrainConfig(
        epochs=epochs, batch_size=128, lr=0.01, weight_decay=5e-4, augment="crop_flip"
    )
    history = distill(small, dense, data.train, cfg, alpha=ALPHA, val=data.test)
    plans = plan_factorization(dense, config)
    extra = {
        "config": {
            **rule,
            "conv": method,
            "iters": _iters(method, iters),
            "layers": "3×3 convs but stem.conv",
        },
        "factorize_time_s": round(seconds, 3),
    }
    name = method if rank != "vbmf" else f"{method}-vbmf"
    return _record(name, "resnet20", dense, small, data, before, history, cfg, plans, extra,
                   "CIFAR-10 test set, 10,000 images")  # fmt: skip


def _iters(method: str, iters: int | None) -> int:
    return iters if iters is not None else (0 if method == "tucker2" else CP_ITERS)


def _three_by_three(name: str, m: torch.nn.Module) -> bool:
    return getattr(m, "kernel_size", None) == (3, 3) and name != "stem.conv"


def run_separable(shared: Path, epochs: int, layers: list[str]) -> dict:
    """(c) LeNet-5 (Caffe)'s 5×5 convs → depthwise 5×5 + pointwise 1×1, distilled."""
    data = load(shared / "data" / DATA["mnist"])
    dense = load_baseline("lenet5_caffe")
    config = Conversion("separable", layers=layers)
    small = convert(dense, config)
    before = evaluate(small, data.test).top1
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, weight_decay=5e-4)
    history = distill(small, dense, data.train, cfg, alpha=ALPHA, val=data.test)
    plans = plan_conversion(dense, config)
    extra = {"config": {"to": "separable", "layers": layers, "depth_multiplier": 1}}
    name = "separable" if layers == ["conv2"] else "separable-" + "-".join(layers)
    return _record(name, "lenet5_caffe", dense, small, data, before, history, cfg, plans, extra,
                   "MNIST test set, 10,000 images")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["svd", "tucker2", "cp", "separable", "all"])
    parser.add_argument("--epochs", type=int, help="fine-tune epochs (default 10 / 3 / 5)")
    parser.add_argument("--ratio", type=float, default=0.2, help="svd: fc1 weight budget")
    parser.add_argument("--rank", default="0.5", help="tucker2/cp: weight ratio, or 'vbmf'")
    parser.add_argument(
        "--iters",
        type=int,
        help="HOOI sweeps (tucker2, default 0: HOSVD) or ALS sweeps (cp, default 100)",
    )
    parser.add_argument("--layers", nargs="+", default=["conv2"], help="separable: convs")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    runs = []
    if args.experiment in ("svd", "all"):
        runs.append(run_svd(args.shared, args.epochs or 10, args.ratio))
    for method in ("tucker2", "cp"):
        if args.experiment == method or (args.experiment == "all" and method == "tucker2"):
            runs.append(run_resnet(args.shared, args.epochs or 3, method, args.rank, args.iters))
    if args.experiment in ("separable", "all"):
        runs.append(run_separable(args.shared, args.epochs or 5, args.layers))
    for r in runs:
        atomic_write_text(RESULTS / f"lowrank-{r['experiment']}.json", json.dumps(r, indent=1))
        print(
            f"{r['model']} {r['experiment']}: top-1 {r['original_top1']} -> "
            f"{r['top1_before_finetune']} (before fine-tune) -> {r['top1']} "
            f"({r['drop_points']:+} pt drop); params {r['param_reduction']}x, "
            f"MACs {r['mac_reduction']}x fewer; latency {r['latency_speedup']}x "
            f"(p50 {r['latency_p50_ms']}); fine-tune {r['finetune_time_s']} s"
        )


if __name__ == "__main__":
    main()
