"""Low-bit weights on LeNet-5 (Caffe) / full MNIST: PTQ vs QAT at int8, 4, 2 bits, binary, ternary.

    python benchmarks/quantize_kbit.py [--model lenet5_caffe] [--epochs 4]

Starts from the baseline of benchmarks/baselines.py. Each k-bit scheme is applied post-training
(no retraining) and with quantization-aware training (straight-through estimator, the dense model
as distillation teacher, `--epochs` epochs from the baseline). First and last layers stay at
8 bits, as in the papers. int8 is the real int8 runtime (`slimkit.quant.quantize_int8` /
`prepare_qat`). Each k-bit artifact is saved bit-packed and its file size set beside the
formula Σ ceil(n·k/8) + scales. Targets (issue #4): 4 bits ≤ 0.3 pt drop, 2 bits ≤ 1 pt,
binary ≤ 1.5 pt. Results: benchmarks/results/quant-kbit-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from baselines import DATA, RECIPES, RESULTS, ROOT, baseline_path, load_baseline, machine
from slimkit.data import cache_dir, load
from slimkit.distill import distill
from slimkit.files import atomic_write_text
from slimkit.measure import evaluate, file_bytes
from slimkit.quant import (
    KBitConfig,
    convert_qat,
    kbit_layers,
    prepare_qat,
    quantize_int8,
    quantize_kbit,
    save_kbit,
)
from slimkit.train import TrainConfig

SCHEMES = {
    "uniform 8-bit": KBitConfig(bits=8),
    "uniform 4-bit": KBitConfig(bits=4),
    "lsq 4-bit": KBitConfig(bits=4, scheme="lsq"),
    "uniform 2-bit": KBitConfig(bits=2),
    "lsq 2-bit": KBitConfig(bits=2, scheme="lsq"),
    "ternary": KBitConfig(scheme="ternary"),
    "binary": KBitConfig(scheme="binary"),
}


def formula_bytes(model: nn.Module) -> int:
    """Σ over quantized layers of ceil(n·k/8) + 2 bytes per fp16 scale, plus the other tensors as
    stored (the safetensors header is the rest of the file)."""
    total = 0
    for name, p in kbit_layers(model).items():
        latent = model.get_submodule(name).parametrizations.weight.original
        total += math.ceil(latent.numel() * p.bits / 8) + 2 * p.encode(latent)[1].numel()
    for name, t in model.state_dict().items():
        if ".parametrizations." not in name:
            total += t.numel() * t.element_size()
    return total


def run(name: str, epochs: int, shared: Path) -> dict:
    data = load(shared / "data" / DATA[RECIPES[name][0]])
    dense = load_baseline(name)
    fp32 = evaluate(dense, data.test).top1
    qat_cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.01, weight_decay=0.0)
    rows = {}
    out = cache_dir() / "quantized"
    for label, cfg in SCHEMES.items():
        ptq = quantize_kbit(dense, cfg)
        ptq_top1 = evaluate(ptq, data.test).top1
        qat = quantize_kbit(dense, cfg)
        t0 = time.perf_counter()
        distill(qat, dense, data.train, qat_cfg, alpha=0.5)
        qat_time = time.perf_counter() - t0
        qat_top1 = evaluate(qat, data.test).top1
        expected = formula_bytes(qat)
        path = save_kbit(qat, out / f"{name}-{label.replace(' ', '-')}.safetensors",
                         arch={"zoo": name})  # fmt: skip
        rows[label] = {
            "ptq_top1": round(ptq_top1, 2),
            "qat_top1": round(qat_top1, 2),
            "ptq_drop": round(fp32 - ptq_top1, 2),
            "qat_drop": round(fp32 - qat_top1, 2),
            "qat_time_s": round(qat_time, 1),
            "file_bytes": file_bytes(path),
            "formula_bytes": expected,
            "compression": round(file_bytes(baseline_path(name)) / file_bytes(path), 2),
        }
        print(label, rows[label], flush=True)

    ptq8 = quantize_int8(dense, data.train)
    qat8 = prepare_qat(dense, data.train.normalized(torch.arange(2)))
    t0 = time.perf_counter()
    distill(qat8, dense, data.train, qat_cfg, alpha=0.5)
    qat8_time = time.perf_counter() - t0
    int8 = convert_qat(qat8)
    ptq8_top1, qat8_top1 = evaluate(ptq8, data.test).top1, evaluate(int8, data.test).top1
    rows["int8 (torch runtime)"] = {
        "ptq_top1": round(ptq8_top1, 2),
        "qat_top1": round(qat8_top1, 2),
        "ptq_drop": round(fp32 - ptq8_top1, 2),
        "qat_drop": round(fp32 - qat8_top1, 2),
        "qat_time_s": round(qat8_time, 1),
    }
    result = {
        "model": name,
        "fp32_top1": round(fp32, 2),
        "fp32_file_bytes": file_bytes(baseline_path(name)),
        "qat": {"epochs": epochs, "lr": qat_cfg.lr, "distill_alpha": 0.5, "teacher": "fp32"},
        "keep_first_last_8bit": True,
        "schemes": rows,
        "machine": machine(),
    }
    atomic_write_text(RESULTS / f"quant-kbit-{name}.json", json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5_caffe")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    r = run(args.model, args.epochs, args.shared)
    print(json.dumps(r["schemes"]["int8 (torch runtime)"]))


if __name__ == "__main__":
    main()
