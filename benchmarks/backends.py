"""Which runtime is fastest? Every backend at batch 1 and 64 (1 thread), and how well the
per-layer latency lookup table predicts whole-model latency over the zoo.

    python benchmarks/backends.py [--lookup-only] [--clock cpu] [--percentile 50]

Backends as in `slimkit bench` (eager fp32, compiled fp32, torchao int8 eager and compiled,
ONNX Runtime fp32 and int8), interleaved in one process per model; ratios against eager fp32.
Models: the embedded LeNet-5 (trained), ResNet-20 (the CIFAR baseline) and MobileNetV1 α = 0.5
at 32×32 (untrained: speed only). The lookup table is calibrated (one scale) on LeNet-5 and
ResNet-20, then predicts every zoo model, which is also timed whole by the same clock (`--clock
cpu`: this thread's CPU time, which other processes on a shared machine do not inflate).
Results: benchmarks/results/backends.json.
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
from slimkit.measure.lookup import CLOCKS, LatencyTable
from slimkit.nn import create, list_models

CALIB = ("lenet5", "resnet20")  # the scale is fitted on these, measured whole


def lookup_errors(clock: str, pct: float) -> dict:
    """Calibrate a fresh table (one scale) on LeNet-5 and ResNet-20, then predict and time every
    zoo model (random weights: latency does not depend on them)."""
    table = LatencyTable(clock=clock, percentile=pct)
    table.calibrate([(create(n).eval(), torch.randn(1, *create(n).input_shape)) for n in CALIB])
    errors = {}
    for name in list_models():
        model = create(name).eval()
        x = torch.randn(1, *model.input_shape)
        predicted = table.predict(model, x)
        measured = table.measure(model, x)
        errors[name] = {
            "predicted_ms": round(predicted, 4),
            "measured_ms": round(measured, 4),
            "error_percent": round(100 * (predicted - measured) / measured, 1),
        }
        print(name, errors[name], flush=True)
    table.save()
    abs_errors = [abs(e["error_percent"]) for e in errors.values()]
    return {
        "clock": clock,
        "percentile": pct,
        "calibrated_on": list(CALIB),
        "scale": table.scale,
        "entries": len(table.entries),
        "median_abs_error_percent": statistics.median(abs_errors),
        "max_abs_error_percent": max(abs_errors),
        "models": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--lookup-only", action="store_true", help="only the lookup-table part")
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="cpu: on a busy machine")
    parser.add_argument("--percentile", type=float, default=50.0)
    args = parser.parse_args()
    out = RESULTS / "backends.json"
    result: dict = json.loads(out.read_text()) if args.lookup_only and out.is_file() else {}
    result.update(machine=machine(), threads=1)
    if not args.lookup_only:
        trained = default_model()
        cifar = load(args.shared / "data" / DATA["cifar10"])
        models = {
            "lenet5": (trained.model, trained.data),
            "resnet20": (load_baseline("resnet20"), cifar),
            "mobilenet_v1 (0.5)": (create("mobilenet_v1", alpha=0.5, input_size=32).eval(), cifar),
        }
        result["models"] = {}
        for name, (model, data) in models.items():
            example = data.test.normalized(torch.arange(1))
            rows = run_bench(model, example, calib=data.train, rounds=12, calls=20)
            print(name)
            print(format_table(rows), flush=True)
            result["models"][name] = {"rows": [asdict(r) for r in rows], "fastest": fastest(rows)}
    result["lookup_table"] = lookup_errors(args.clock, args.percentile)
    atomic_write_text(out, json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result["lookup_table"].items() if k != "models"}))


if __name__ == "__main__":
    main()
