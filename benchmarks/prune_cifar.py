"""Does removing channels buy real CPU speed? ResNet-20 and VGG on CIFAR-10 (JPEG copy).

    python benchmarks/prune_cifar.py --ratio 0.4 --round-to 4 --epochs 30 --distill 0.7
    python benchmarks/prune_cifar.py --model resnet20 --from-cached --epochs 0   # re-measure
    python benchmarks/prune_cifar.py --from-file OUT/01-prune/model.safetensors --epochs 0
    python benchmarks/prune_cifar.py --ratio 0.5 --round-to 8 --keep stem.conv --latency-only
    python benchmarks/prune_cifar.py --model vgg11 --width 0.5 --slimming 1e-3 \\
        --sparse-epochs 10 --importance bn_scale --scope global --raw-scores \\
        --target-macs 2 --epochs 8                                   # Network Slimming

ResNet-20 starts from the baseline of benchmarks/baselines.py (`baselines.py cifar10` first).
With --slimming λ the unpruned model is instead trained here from scratch for --sparse-epochs
with λ·Σ|γ| over every BatchNorm added to the loss (Liu et al. 2017, Network Slimming; cached,
resumable), so that whole channels' BN scales go to zero; λ = 0 trains the same recipe plainly,
the reference. Channels are then removed with slimkit's
graph (residual groups pruned together) by --importance; --target-macs picks the smallest ratio
(in steps of 0.01) whose pruned model has that many times fewer MACs. The pruned model is
fine-tuned (with --distill α: from the unpruned model's soft targets too, Hinton et al., T = 4),
and measured beside the unpruned model in the same run: top-1, MACs, params and batch-1 latency
at 1 thread, in interleaved rounds, in eager torch, ONNX Runtime fp32 and torch.compile
(inductor, BN folded). --from-cached starts from the pruned model this script saved last time
(--epochs more fine-tuning; 0 = measure only), --from-file the pruned model of another run
(e.g. the prune step of `slimkit compress --recipe recipes/structured-distill.yaml`, measured
here against the same unpruned model; the file is only read; with --epochs N it is fine-tuned
N epochs more and saved as <model>-from-file-<N>ep-channels.safetensors in the cache);
A fine-tune keeps a checkpoint in the cache until it ends, so an interrupted run resumes (also
on another device). --device cuda fine-tunes on the GPU, saves the model and stops
(channels-…-cuda-train.json: the per-epoch accuracy); measure it on the CPU with --from-file.
--average N keeps the mean of the weights at the last N epochs' ends, BatchNorm statistics
re-estimated (stochastic weight averaging, Izmailov et al. 2018; with --schedule constant).
--record NAME names the result file and the saved model (<cache>/pruned/NAME.safetensors).
--layer-ratio MODULE=R prunes the group whose channels MODULE produces by R instead of --ratio
(e.g. a ResNet's stage widths: stem.conv, stages.1.0.conv2, stages.2.0.conv2).
--bn-seeds N also records the top-1 after re-estimating BatchNorm (as --average does) from N
other augmented passes, on copies: the spread says how much a figure rests on that estimate.
The record also holds both models' top-1 averaged over each test image and its mirror.
--latency-only prunes and times, nothing else (channels-<model>-latency.json). Every stage's
wall time is recorded. Time latency at normal priority: under `nice` on a busy machine the
longer calls get preempted, inflating ratios.
References: DepGraph ResNet-56 2.13× fewer MACs at +0.24 pt; Li et al. 27.6% fewer FLOPs at
−0.02 pt; Network Slimming VGGNet 51% fewer FLOPs at −0.14 pt error.
Results: benchmarks/results/channels-<model>[-slim<λ>][-cached|-from-file[-<N>ep]].json.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from baselines import (
    DATA,
    RESULTS,
    ROOT,
    device_name,
    load_baseline,
    machine,
    training_device,
)
from slimkit.compiled import CompiledModel
from slimkit.data import ArrayDataset, batches, cache_dir, load, random_crop_flip
from slimkit.distill import distill, soft_targets
from slimkit.export import OnnxModel, export_onnx
from slimkit.files import atomic_write_text
from slimkit.fold import fold_bn
from slimkit.measure import compare_latency, count_macs, evaluate, measure
from slimkit.nn import create
from slimkit.prune import ChannelPruning, bn_sparsity, load_pruned, prune_channels, save_pruned
from slimkit.train import History, TrainConfig, fit


def sparse_baseline(
    arch: dict, tag: str, lam: float, epochs: int, train: ArrayDataset
) -> tuple[nn.Module, History]:
    """The unpruned model trained from scratch with the BN-scale L1 penalty, and its history.
    The checkpoint in the cache resumes an interrupted run and makes a finished one free."""
    cfg = TrainConfig(
        epochs=epochs, lr=0.1, weight_decay=5e-4, warmup_epochs=1, augment="crop_flip"
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    model = create(arch["zoo"], **arch["kwargs"])
    history = fit(
        model,
        train,
        cfg,
        extra_loss=bn_sparsity(lam),
        checkpoint=cache_dir() / "baselines" / f"{tag}-slim{lam:g}-e{epochs}.ckpt",
        progress=sys.stderr.isatty(),
    )
    return model.eval(), history


def small_gammas(model: nn.Module, below: float = 1e-2) -> float:
    """Fraction of BatchNorm scales with |γ| < `below`: how sparse the penalty made them."""
    gammas = torch.cat(
        [m.weight.detach().abs() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    )
    return round(float((gammas < below).float().mean()), 4)


def prune_to_macs(dense: nn.Module, config: ChannelPruning, example: torch.Tensor, target: float):
    """The pruned model of the smallest ratio (step 0.01) with `target`× fewer MACs, and that
    ratio."""
    base = count_macs(dense, example).dense
    for step in range(1, 100):
        ratio = step / 100
        pruned = prune_channels(
            dense, ChannelPruning(**{**asdict(config), "ratio": ratio}), example
        )
        if base / count_macs(pruned, example).dense >= target:
            return pruned, ratio
    raise SystemExit(f"no ratio below 1 gives {target}x fewer MACs (max_ratio {config.max_ratio})")


def bn_reestimated_top1(model: nn.Module, data, seeds: int) -> list[float]:
    """Top-1 after re-estimating BatchNorm statistics (a plain average, as weight averaging
    does) from one augmented pass over the training data per seed, on a copy: how much a
    figure depends on that estimate."""
    tops = []
    for seed in range(1, seeds + 1):
        copied = copy.deepcopy(model)
        passes = batches(data.train, 128, shuffle=True, seed=seed, augment=random_crop_flip())
        torch.optim.swa_utils.update_bn(passes, copied)
        tops.append(round(evaluate(copied.eval(), data.test).top1, 2))
    return tops


def mirrored_top1(model: nn.Module, test: ArrayDataset) -> float:
    """Top-1 of the model's softmax averaged over each image and its mirror: what a mirrored
    teacher (--mirror-teacher) offers its student."""
    correct = 0
    for x, y in batches(test, 500):
        correct += (soft_targets([model], x, 1.0, mirror=True).argmax(1) == y).sum().item()
    return round(100 * correct / len(test), 2)


def runtime_latency(dense: nn.Module, pruned: nn.Module, example: torch.Tensor) -> dict:
    """Batch-1, 1-thread latency (ms) of both models in eager torch, ONNX Runtime fp32 and
    inductor, all six interleaved in one run: p50, and min (the least disturbed call, which a
    busy shared machine distorts least), with the dense / pruned ratio of each."""
    with tempfile.TemporaryDirectory() as tmp:
        models = {"dense eager": dense, "pruned eager": pruned}
        for key, m in (("dense", dense), ("pruned", pruned)):
            models[f"{key} ORT"] = OnnxModel(export_onnx(m, Path(tmp) / f"{key}.onnx", example))
        for key, m in (("dense", dense), ("pruned", pruned)):
            models[f"{key} compiled"] = CompiledModel(fold_bn(m))
        lat = compare_latency(models, example, rounds=40, warmup=20)
    out: dict = {}
    for stat in ("p50_ms", "min_ms"):
        ms = {k: round(getattr(v, stat), 4) for k, v in lat.items()}
        out[stat] = ms
        out[f"speedup_{stat[:-3]}"] = {
            rt: round(ms[f"dense {rt}"] / ms[f"pruned {rt}"], 2)
            for rt in ("eager", "ORT", "compiled")
        }
    return out


def run(args: argparse.Namespace) -> dict:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    data = load(args.shared / "data" / DATA["cifar10"])
    kwargs = {"width_mult": args.width} if args.width != 1.0 else {}
    arch = {"zoo": args.model, "kwargs": kwargs}
    tag = args.model + (f"_w{args.width:g}" if kwargs else "")
    timings["load_data_s"] = time.perf_counter() - t
    sparse = None
    if args.slimming is not None:
        dense, sparse = sparse_baseline(arch, tag, args.slimming, args.sparse_epochs, data.train)
        timings["sparse_train_s"] = sparse.train_time_s
        tag += f"-slim{args.slimming:g}"
    else:
        dense = load_baseline(args.model)
    example = data.test.normalized(torch.arange(1))  # (1, 3, 32, 32)
    # A file fine-tuned further is saved beside the others, not over this script's own artifact.
    suffix = f"-from-file-{args.epochs}ep" if args.from_file else ""
    name = args.record or f"{tag}{suffix}-channels"
    artifact = cache_dir() / "pruned" / f"{name}.safetensors"

    config = ChannelPruning(
        ratio=args.ratio,
        importance=args.importance,
        scope=args.scope,
        round_to=args.round_to,
        normalize=not args.raw_scores,
        layer_ratios={**dict(args.layer_ratio), **dict.fromkeys(args.keep, 0.0)},
    )
    t = time.perf_counter()
    if args.from_file:
        pruned, ratio = load_pruned(args.from_file).eval(), None
    elif args.from_cached:
        pruned, ratio = load_pruned(artifact).eval(), None
    elif args.target_macs:
        pruned, ratio = prune_to_macs(dense, config, example, args.target_macs)
    else:
        pruned, ratio = prune_channels(dense, config, example), args.ratio
    timings["prune_s"] = time.perf_counter() - t
    macs_dense = count_macs(dense, example).dense
    if args.latency_only:  # untrained weights time the same: no fine-tune, no accuracy
        return {
            "model": tag,
            "config": {**asdict(config), "ratio": ratio},
            "mac_reduction": round(macs_dense / count_macs(pruned, example).dense, 2),
            "channels": [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)],
            "latency": runtime_latency(dense, pruned, example),
            "machine": machine(),
        }
    device = training_device(args.device)
    dense, pruned = dense.to(device), pruned.to(device)
    dense_eval = evaluate(dense, data.test)
    before_ft = evaluate(pruned, data.test)
    cfg = history = ckpt = None
    if args.epochs > 0:
        cfg = TrainConfig(
            epochs=args.epochs, lr=args.lr, weight_decay=5e-4, augment="crop_flip",
            schedule=args.schedule, average_epochs=args.average,
        )  # fmt: skip
        # A fine-tune resumes from its checkpoint, named by what it starts from: the file's
        # content or the pruning configuration.
        source = (
            args.from_file.read_bytes() if args.from_file
            else json.dumps([tag, args.from_cached, asdict(config), ratio]).encode()
        )  # fmt: skip
        digest = hashlib.sha256(source).hexdigest()[:12]
        ckpt = artifact.with_name(f"{artifact.stem}-{digest}.ckpt")
        if args.distill > 0:
            history = distill(
                pruned, dense, data.train, cfg, alpha=args.distill, mirror=args.mirror_teacher,
                val=data.test, checkpoint=ckpt,
            )  # fmt: skip
        else:
            history = fit(pruned, data.train, cfg, val=data.test, checkpoint=ckpt)
        timings["finetune_s"] = history.train_time_s
    dense, pruned = dense.cpu().eval(), pruned.cpu().eval()
    if args.from_file and args.epochs == 0:
        artifact = args.from_file  # measured as it is
    elif not args.from_cached or args.epochs > 0:
        save_pruned(pruned, artifact, arch=arch)
    if ckpt is not None:
        ckpt.unlink()  # finished and saved
    if device.type != "cpu":  # trained elsewhere: measured on the CPU later, with --from-file
        return {
            "model": tag,
            "from_file": str(args.from_file) if args.from_file else None,
            "artifact": str(artifact),
            "distill_alpha": args.distill,
            "mirror_teacher": args.mirror_teacher,
            "dense_top1": round(dense_eval.top1, 2),
            "pruned_top1_before_finetune": round(before_ft.top1, 2),
            "finetune": asdict(cfg) if cfg else None,
            "epochs": [asdict(e) for e in history.epochs] if history else [],
            "times_s": {k: round(v, 2) for k, v in timings.items()},
            "device": device_name(device),
        }
    t = time.perf_counter()
    metrics = measure(pruned, name=f"{tag} pruned", data=data.test, artifact=artifact)
    timings["measure_s"] = time.perf_counter() - t
    bn_tops = bn_reestimated_top1(pruned, data, args.bn_seeds) if args.bn_seeds else None
    t = time.perf_counter()
    latency = runtime_latency(dense, pruned, example)
    timings["latency_s"] = time.perf_counter() - t
    params_dense = sum(p.numel() for p in dense.parameters())
    return {
        "model": tag,
        "arch": arch,
        "slimming_lambda": args.slimming,
        "sparse_train": [asdict(e) for e in sparse.epochs] if sparse else None,
        "small_bn_scales": small_gammas(dense),
        "from_cached": args.from_cached,
        "from_file": str(args.from_file) if args.from_file else None,
        "config": None if args.from_file else {**asdict(config), "ratio": ratio},
        "target_macs": args.target_macs,
        "distill_alpha": args.distill,
        "mirror_teacher": args.mirror_teacher,
        "dense_top1": round(dense_eval.top1, 2),
        "pruned_top1_before_finetune": round(before_ft.top1, 2),
        "pruned_top1": round(metrics.top1, 2),
        "pruned_top1_bn_reestimated": bn_tops,
        "top1_mirrored": {
            "dense": mirrored_top1(dense, data.test),
            "pruned": mirrored_top1(pruned, data.test),
        },
        "drop_points": round(dense_eval.top1 - metrics.top1, 2),
        "dense_macs": macs_dense,
        "dense_params": params_dense,
        "mac_reduction": round(macs_dense / metrics.macs, 2),
        "param_reduction": round(params_dense / metrics.params, 2),
        "latency": latency,
        "threads_latency": 1,
        "threads_training": torch.get_num_threads(),
        "finetune": asdict(cfg) if cfg else None,
        "epochs": [asdict(e) for e in history.epochs] if history else [],
        "times_s": {k: round(v, 2) for k, v in timings.items()},
        "machine": machine(),
        "metrics": metrics.to_dict(),
    }


def layer_ratio(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MODULE=RATIO, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", help="resnet20 or a zoo VGG (vgg11)")
    parser.add_argument("--width", type=float, default=1.0, help="VGG width_mult")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--target-macs", type=float, metavar="X", help="ratio for X× fewer MACs")
    parser.add_argument("--importance", default="l1")
    parser.add_argument("--scope", default="layer", choices=["layer", "global"])
    parser.add_argument("--raw-scores", action="store_true", help="global: rank unnormalized")
    parser.add_argument("--keep", nargs="+", default=[], help="modules whose groups stay whole")
    parser.add_argument(
        "--layer-ratio", nargs="+", default=[], type=layer_ratio, metavar="MODULE=R",
        help="ratio for the group whose channels MODULE produces (overrides --ratio)",
    )  # fmt: skip
    parser.add_argument("--slimming", type=float, metavar="LAMBDA", help="train here; 0: plain")
    parser.add_argument("--sparse-epochs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=15, help="fine-tune epochs (0: none)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    parser.add_argument(
        "--average", type=int, default=0, metavar="N",
        help="keep the mean of the last N epochs' weights (SWA; with --schedule constant)",
    )  # fmt: skip
    parser.add_argument("--round-to", type=int, default=1)
    parser.add_argument("--distill", type=float, default=0.0, metavar="ALPHA")
    parser.add_argument(
        "--mirror-teacher", action="store_true",
        help="distill from the unpruned model averaged over each batch and its mirror",
    )  # fmt: skip
    parser.add_argument(
        "--bn-seeds", type=int, default=0, metavar="N",
        help="also record top-1 after re-estimating BatchNorm from N augmented passes (seeds 1..N)",
    )  # fmt: skip
    parser.add_argument("--from-cached", action="store_true")
    parser.add_argument("--from-file", type=Path, metavar="FILE", help="a pruned model to measure")
    parser.add_argument("--latency-only", action="store_true", help="prune and time; no training")
    parser.add_argument("--threads", type=int, default=1, help="training threads")
    parser.add_argument(
        "--device", default="cpu",
        help="train on this device (e.g. cuda); other than cpu: save the model and stop",
    )  # fmt: skip
    parser.add_argument("--record", metavar="NAME", help="result file name (default from options)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    r = run(args)
    if args.latency_only:  # one record per configuration, gathered in one file
        path = RESULTS / f"channels-{r['model']}-latency.json"
        records = json.loads(path.read_text()) if path.exists() else {}
        key = f"ratio {args.ratio} round_to {args.round_to} keep {','.join(args.keep) or '-'}"
        if args.layer_ratio:
            key += " layers " + ",".join(f"{n}={r:g}" for n, r in args.layer_ratio)
        records[key] = r
        atomic_write_text(path, json.dumps(records, indent=1))
        lat = r["latency"]
        print(
            f"{key}: MACs {r['mac_reduction']}x fewer, latency speed-up p50 "
            f"{lat['speedup_p50']}, min {lat['speedup_min']}, channels {r['channels']}"
        )
        return
    source = "-cached" if args.from_cached else ""
    if args.from_file:
        source = "-from-file" + (f"-{args.epochs}ep" if args.epochs else "")
    name = args.record or f"channels-{r['model']}{source}"
    if "latency" not in r:  # trained on another device
        name += f"-{args.device.split(':')[0]}-train"
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(r, indent=1))
    if "latency" not in r:
        top1 = r["epochs"][-1]["val_top1"] if r["epochs"] else None
        print(f"fine-tuned on {r['device']}: top-1 {top1}, saved {r['artifact']}; "
              f"measure it with --from-file {r['artifact']} --epochs 0")  # fmt: skip
        return
    lat = r["latency"]
    print(
        f"{r['model']}: top-1 {r['dense_top1']} -> {r['pruned_top1']} "
        f"({r['drop_points']:+} pt drop), MACs {r['mac_reduction']}x fewer, "
        f"params {r['param_reduction']}x fewer, latency speed-up p50 {lat['speedup_p50']} "
        f"min {lat['speedup_min']} (p50 ms {lat['p50_ms']}), times {r['times_s']}"
    )


if __name__ == "__main__":
    main()
