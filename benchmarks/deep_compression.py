"""Deep Compression on the MNIST LeNets: prune, share weights, entropy-code, reload, measure.

    python benchmarks/deep_compression.py [--models lenet300_100 lenet5_caffe]
        [--sparsity S] [--distill 0.5] [--bits 4] [--conv-bits 4] [--bias-bits 5]
        [--codebook float16] [--share-epochs 4]
        [--start pruned.safetensors --ramp-epochs 8 --epochs 12 (or --epochs 0: use it as is)]

Han, Mao, Dally, ICLR 2016, Table 1: LeNet-300-100 1070 KB → 27 KB (40×) at 1.58% error,
LeNet-5 1720 KB → 44 KB (39×) at 0.74%. The pipeline:

1. prune globally by magnitude along Zhu & Gupta's cubic schedule with `gradual_prune`, learning
   the dense model's soft targets too (as benchmarks/prune_mnist.py; cached under
   <cache>/deep_compression/). --start continues from a pruned artifact instead (its zeros
   become masks) with a shorter schedule;
2. share the surviving weights by per-layer k-means (linear init) and fine-tune the centroids
   (summed gradients, Adam) with the same distillation. Beyond the paper, by default: 4-bit
   weights everywhere, biases shared too (5 bits) and fp16 codebooks — at these sizes the 580
   fp32 biases of LeNet-5 alone would be 2.3 KB, an eighth of the file;
3. write the .slim file, reload the model from it and measure the error of the reloaded model.

Every byte of the file counts; the ratio is the dense fp32 parameters over the file. Results,
with the per-layer table of the paper and the Shannon bound of every coded stream, go to
benchmarks/results/deep-compression-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from baselines import RESULTS, ROOT, baseline_path, load_baseline, machine
from slimkit.data import cache_dir, load
from slimkit.distill import Distillation
from slimkit.files import atomic_write_text
from slimkit.measure import evaluate
from slimkit.nn import create
from slimkit.prune.sparse import load_sparse, save_sparse
from slimkit.prune.unstructured import (
    MagnitudePruning,
    apply_masks,
    gradual_prune,
    make_permanent,
    prunable_layers,
)
from slimkit.share import (
    WeightSharing,
    compression_report,
    load_compressed,
    save_compressed,
    share_weights,
)
from slimkit.train import TrainConfig, fit

PAPER = {"lenet300_100": (40.0, 1.58, 27), "lenet5_caffe": (39.0, 0.74, 44)}  # ×, error %, KB
TARGET = {"lenet300_100": 60.0, "lenet5_caffe": 100.0}
SPARSITY = {"lenet300_100": 0.96, "lenet5_caffe": 0.97}
RAMP_EPOCHS, EPOCHS = 30, 60  # benchmarks/prune_mnist.py
FINETUNE = TrainConfig(epochs=EPOCHS, batch_size=128, lr=0.02, weight_decay=1e-4, schedule="cosine")
SHARE_TUNE = TrainConfig(
    epochs=4, batch_size=128, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="cosine"
)


def sparsity_of(name: str, args: argparse.Namespace) -> float:
    return args.sparsity or SPARSITY[name]


def error(model: nn.Module, data) -> float:
    return round(100 - evaluate(model, data.test).top1, 2)


def pruned(name: str, args: argparse.Namespace, data) -> tuple[nn.Module, dict]:
    """The pruned model, from the cache when this exact recipe ran before."""
    start = f"-from-{Path(args.start).stem}" if args.start else ""
    tag = f"{name}-pruned-{sparsity_of(name, args)}-{args.distill}-{args.ramp_epochs}-{args.epochs}"
    path = cache_dir() / "deep_compression" / f"{tag}{start}.safetensors"
    info = path.with_suffix(".json")
    if path.exists() and info.exists():
        return load_sparse(create(name), path).eval(), json.loads(info.read_text())
    if args.start and not args.epochs:  # the artifact as it is
        model = load_sparse(create(name), args.start).eval()
        record = {"start": str(args.start), "sparsity": sparsity_of(name, args)}
        record.update(prune_time_s=None, pruned_error_percent=error(model, data))
        return model, record
    if args.start:
        model = load_sparse(create(name), args.start)
        # Its zeros become masks, so the schedule only ever prunes more.
        layers = prunable_layers(model)
        apply_masks(model, {n: m.weight.detach() != 0 for n, m in layers.items()})
    else:
        model = load_baseline(name)
    start_error = error(model, data)
    alpha = args.distill
    teacher = Distillation(load_baseline(name), alpha=alpha) if alpha > 0 else None
    finetune = replace(FINETUNE, epochs=args.epochs, label_loss_weight=1 - alpha)
    t0 = time.perf_counter()
    gradual_prune(
        model,
        data.train,
        MagnitudePruning(sparsity=sparsity_of(name, args), scope="global"),
        epochs=args.ramp_epochs,
        finetune=finetune,
        prune_every_steps=100,
        extra_loss=teacher,
    )
    record = {
        "start": str(args.start) if args.start else "dense baseline",
        "start_error_percent": start_error,
        "sparsity": sparsity_of(name, args),
        "distill_alpha": alpha,
        "ramp_epochs": args.ramp_epochs,
        "finetune": asdict(finetune),
        "prune_time_s": round(time.perf_counter() - t0, 1),
        "pruned_error_percent": error(model, data),
    }
    make_permanent(model)
    save_sparse(model, path)
    atomic_write_text(info, json.dumps(record, indent=1))
    return model.eval(), record


def compress(name: str, args: argparse.Namespace, data) -> dict:
    dense = load_baseline(name)
    dense_error = error(dense, data)
    dense_bytes = sum(p.numel() for p in dense.parameters()) * 4
    model, prune_record = pruned(name, args, data)
    conv_bits = args.conv_bits or args.bits
    config = WeightSharing(
        bits=args.bits,
        type_bits={nn.Conv2d: conv_bits},
        bias_bits=args.bias_bits or None,
        codebook=args.codebook,
    )
    t0 = time.perf_counter()
    shared = share_weights(model, config)
    share_time = time.perf_counter() - t0
    shared_error = error(shared, data)
    alpha = args.distill
    tune = replace(
        SHARE_TUNE, epochs=max(args.share_epochs, 1), lr=args.share_lr, label_loss_weight=1 - alpha
    )
    t0 = time.perf_counter()
    if args.share_epochs:
        teacher = Distillation(dense, alpha=alpha) if alpha > 0 else None
        fit(shared, data.train, tune, extra_loss=teacher)
    tune_time = time.perf_counter() - t0
    tuned_error = error(shared, data)
    out = cache_dir() / "deep_compression" / f"{name}.slim"
    t0 = time.perf_counter()
    save_compressed(shared, out, arch={"zoo": name})
    encode_time = time.perf_counter() - t0
    decode_times = []
    for _ in range(7):
        t0 = time.perf_counter()
        loaded = load_compressed(out).eval()
        decode_times.append(time.perf_counter() - t0)
    reloaded_error = error(loaded, data)
    x = data.test.normalized(torch.arange(256))
    with torch.no_grad():
        identical = bool(torch.equal(loaded(x), shared.eval()(x)))
    report = compression_report(out)
    decode_s = min(decode_times)
    slim_bytes = out.stat().st_size
    ratio, paper_error, paper_kb = PAPER[name]
    kept = sum(t.kept for t in report.tensors) / sum(t.numel for t in report.tensors)
    return {
        "model": name,
        "command": args.command,
        "dense_error_percent": dense_error,
        "pruned_error_percent": prune_record["pruned_error_percent"],
        "shared_error_percent": shared_error,
        "tuned_error_percent": tuned_error,
        "reloaded_error_percent": reloaded_error,
        "reloaded_outputs_identical": identical,
        "dense_bytes": dense_bytes,
        "baseline_file_bytes": baseline_path(name).stat().st_size,
        "slim_bytes": slim_bytes,
        "compression": round(dense_bytes / slim_bytes, 2),
        "weights_kept_percent": round(100 * kept, 3),
        "coded_bytes": round(report.coded_bits / 8),
        "shannon_bound_bytes": round(report.bound_bits / 8),
        "coded_over_bound_percent": round(100 * (report.coded_bits / report.bound_bits - 1), 2),
        "payload_bytes": round(report.payload_bits / 8),
        "payload_over_bound_percent": round(100 * (report.payload_bits / report.bound_bits - 1), 2),
        "bound_covers": "order-0 entropy of every gap and cluster-index stream's own symbols",
        "beyond_bound_bytes": {
            "tables": report.table_bits // 8,
            "stream_headers": (report.coded_bits - report.payload_bits - report.table_bits) // 8,
            "codebooks": report.codebook_bytes,
            "section_framing_and_crcs": report.framing_bytes,
            "metadata": report.metadata_bytes,
            "raw_tensors": report.raw_bytes,
            "magic_and_version": report.header_bytes,
        },
        "file_over_bound_percent": round(100 * (8 * slim_bytes / report.bound_bits - 1), 2),
        "paper": {"compression": ratio, "error_percent": paper_error, "kb": paper_kb},
        "target": {"compression": TARGET[name], "error_percent": dense_error},
        "meets_target": dense_bytes / slim_bytes >= TARGET[name] and reloaded_error <= dense_error,
        "sharing": {
            "bits": args.bits,
            "conv_bits": conv_bits,
            "bias_bits": config.bias_bits,
            "codebook": config.codebook,
            "init": config.init,
        },
        "share_finetune": asdict(tune) if args.share_epochs else None,
        "pruning": prune_record,
        "time_s": {
            "prune": prune_record["prune_time_s"],
            "share_kmeans": round(share_time, 3),
            "share_finetune": round(tune_time, 1),
            "encode": round(encode_time, 3),
            "decode_best": round(decode_s, 4),
            "decode_median": round(statistics.median(decode_times), 4),
        },
        "decode_mb_per_s": round(dense_bytes / 1e6 / decode_s, 1),
        "decode_only_mb_per_s": round(report.decode_mb_per_s, 1),
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "table": report.format(),
        "report": report.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAPER))
    parser.add_argument("--sparsity", type=float, help="global sparsity (default per model)")
    parser.add_argument("--distill", type=float, default=0.5, metavar="ALPHA")
    parser.add_argument("--ramp-epochs", type=int, default=RAMP_EPOCHS)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="0 with --start: no pruning")
    parser.add_argument("--start", type=Path, help="continue from this pruned .safetensors")
    parser.add_argument("--bits", type=int, default=4, help="bits per shared fc weight")
    parser.add_argument("--conv-bits", type=int, help="bits per shared conv weight (= --bits)")
    parser.add_argument("--bias-bits", type=int, default=5, help="share biases too (0: float)")
    parser.add_argument("--codebook", choices=["float32", "float16"], default="float16")
    parser.add_argument("--share-epochs", type=int, default=4, help="centroid fine-tuning")
    parser.add_argument("--share-lr", type=float, default=1e-4)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    args.command = " ".join(["python benchmarks/deep_compression.py", *sys.argv[1:]])
    data = load(args.shared / "data" / "mnist")
    for name in args.models:
        r = compress(name, args, data)
        text = json.dumps(r, indent=1, default=str)
        start = f"-from-{args.start.stem}" if args.start else ""  # two-stage runs kept apart
        atomic_write_text(RESULTS / f"deep-compression-{name}{start}.json", text)
        print(r["table"])
        print(
            f"{name}: {r['dense_bytes'] / 1000:.0f} KB -> {r['slim_bytes'] / 1000:.1f} KB "
            f"({r['compression']}x, target {TARGET[name]}x), error {r['dense_error_percent']}% "
            f"dense, {r['pruned_error_percent']}% pruned, {r['shared_error_percent']}% shared, "
            f"{r['reloaded_error_percent']}% reloaded; coded streams "
            f"{r['coded_over_bound_percent']:+}% over the Shannon bound (whole file "
            f"{r['file_over_bound_percent']:+}%); encode {r['time_s']['encode']} s, decode "
            f"{r['time_s']['decode_best'] * 1e3:.1f} ms ({r['decode_mb_per_s']} MB/s)"
        )


if __name__ == "__main__":
    main()
