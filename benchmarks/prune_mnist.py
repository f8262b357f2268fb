"""How far can magnitude pruning + retraining shrink the MNIST LeNets at no loss of accuracy?

    python benchmarks/prune_mnist.py [--models lenet300_100 lenet5_caffe] [--sparsity 0.955]
        [--distill 0.5]

Starts from the baselines of benchmarks/baselines.py (run `baselines.py mnist` first), prunes
globally by weight magnitude along Zhu & Gupta's cubic schedule while retraining, then makes the
masks permanent, writes the sparse artifact and measures it. With --distill α the retraining also
learns the dense model's soft targets (Hinton et al., T = 4). Reference: Han et al. 2015, 12×
for both nets at 1.59% / 0.77% error. Results: benchmarks/results/prune-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from baselines import RESULTS, ROOT, baseline_path, load_baseline, machine
from slimkit.data import cache_dir, load
from slimkit.distill import Distillation
from slimkit.files import atomic_write_text
from slimkit.measure import evaluate, measure
from slimkit.prune.sparse import save_sparse
from slimkit.prune.unstructured import MagnitudePruning, gradual_prune, make_permanent
from slimkit.train import TrainConfig

REFERENCE = {"lenet300_100": (12.0, 1.59), "lenet5_caffe": (12.0, 0.77)}
RAMP_EPOCHS = 30
FINETUNE = TrainConfig(epochs=60, batch_size=128, lr=0.02, weight_decay=1e-4, schedule="cosine")


def prune_one(name: str, sparsity: float, alpha: float, shared: Path) -> dict:
    data = load(shared / "data" / "mnist")
    model = load_baseline(name)
    dense = evaluate(model, data.test)
    teacher = Distillation(load_baseline(name), alpha=alpha) if alpha > 0 else None
    finetune = replace(FINETUNE, label_loss_weight=1 - alpha)
    t0 = time.perf_counter()
    records = gradual_prune(
        model,
        data.train,
        MagnitudePruning(sparsity=sparsity, scope="global"),
        epochs=RAMP_EPOCHS,
        finetune=finetune,
        prune_every_steps=100,
        extra_loss=teacher,
    )
    prune_time = time.perf_counter() - t0
    make_permanent(model)
    artifact = save_sparse(model, cache_dir() / "pruned" / f"{name}-sparse.safetensors")
    metrics = measure(model, name=f"{name} pruned", data=data.test, artifact=artifact)
    per_layer = {row.name: round(1 - row.sparsity, 4) for row in metrics.layers if row.params > 0}
    result = {
        "model": name,
        "target_sparsity": sparsity,
        "schedule": {"ramp_epochs": RAMP_EPOCHS, "finetune": asdict(finetune)},
        "distill_alpha": alpha,
        "dense_error_percent": round(100 - dense.top1, 2),
        "pruned_error_percent": round(100 - metrics.top1, 2),
        "weights_kept_by_layer": per_layer,
        "compression_weights": round(metrics.params / metrics.params_nonzero, 2),
        "compression_file": round(baseline_path(name).stat().st_size / metrics.size_file_bytes, 2),
        "reference_compression_and_error": REFERENCE[name],
        "prune_time_s": round(prune_time, 1),
        "machine": machine(),
        "records": records[-1:],
        "metrics": metrics.to_dict(),
    }
    atomic_write_text(RESULTS / f"prune-{name}.json", json.dumps(result, indent=1, default=str))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(REFERENCE))
    parser.add_argument("--sparsity", type=float, default=0.952)
    parser.add_argument("--distill", type=float, default=0.0, metavar="ALPHA")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    for name in args.models:
        r = prune_one(name, args.sparsity, args.distill, args.shared)
        print(
            f"{name}: error {r['dense_error_percent']}% -> {r['pruned_error_percent']}%, "
            f"{r['compression_weights']}x fewer weights, file {r['compression_file']}x smaller, "
            f"kept {r['weights_kept_by_layer']}, {r['prune_time_s']} s"
        )


if __name__ == "__main__":
    main()
