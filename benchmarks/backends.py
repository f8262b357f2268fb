"""Which runtime is fastest? Every backend at batch 1 and 64 (1 thread), and how well the
per-layer latency lookup table predicts whole-model latency over the zoo.

    python benchmarks/backends.py

Backends as in `slimkit bench` (eager fp32, compiled fp32, torchao int8 eager and compiled,
ONNX Runtime fp32 and int8), interleaved in one process per model; ratios against eager fp32.
Models: the embedded LeNet-5 (trained), ResNet-20 (the CIFAR baseline) and MobileNetV1 α = 0.5
at 32×32 (untrained: speed only). The lookup table is calibrated (one scale) on LeNet-5 and
ResNet-20, then predicts every zoo model. Results:
benchmarks/results/backends.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from pathlib import Path

import torch

from baselines import DATA, RESULTS, ROOT, load_baseline, machine
from slimkit.bench import fastest, format_table, run_bench
from slimkit.data import load
from slimkit.default import default_model
from slimkit.files import atomic_write_text
from slimkit.measure import measure_latency
from slimkit.measure.lookup import LatencyTable
from slimkit.nn import create, list_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    trained = default_model()
    cifar = load(args.shared / "data" / DATA["cifar10"])
    models = {
        "lenet5": (trained.model, trained.data),
        "resnet20": (load_baseline("resnet20"), cifar),
        "mobilenet_v1 (0.5)": (create("mobilenet_v1", alpha=0.5, input_size=32).eval(), cifar),
    }
    result: dict = {"machine": machine(), "threads": 1, "models": {}}
    for name, (model, data) in models.items():
        rows = run_bench(
            model, data.test.normalized(torch.arange(1)), calib=data.train, rounds=12, calls=20
        )
        print(name)
        print(format_table(rows), flush=True)
        result["models"][name] = {"rows": [asdict(r) for r in rows], "fastest": fastest(rows)}

    table = LatencyTable()
    lenet, resnet = models["lenet5"][0], models["resnet20"][0]
    table.calibrate([(lenet, torch.randn(1, 1, 28, 28)), (resnet, torch.randn(1, 3, 32, 32))])
    errors = {}
    for name in list_models():
        model = create(name).eval()
        x = torch.randn(1, *model.input_shape)
        predicted = table.predict(model, x)
        measured = measure_latency(model, x, calls=100).p50_ms
        errors[name] = {
            "predicted_ms": round(predicted, 4),
            "measured_ms": round(measured, 4),
            "error_percent": round(100 * (predicted - measured) / measured, 1),
        }
        print(name, errors[name], flush=True)
    table.save()
    abs_errors = [abs(e["error_percent"]) for e in errors.values()]
    result["lookup_table"] = {
        "scale": table.scale,
        "entries": len(table.entries),
        "median_abs_error_percent": statistics.median(abs_errors),
        "max_abs_error_percent": max(abs_errors),
        "models": errors,
    }
    atomic_write_text(RESULTS / "backends.json", json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result["lookup_table"].items() if k != "models"}))


if __name__ == "__main__":
    main()
