"""int8 post-training quantization on real int8 runtimes: accuracy, artifact size and speed.

    python benchmarks/quantize_int8.py [--models lenet5_caffe resnet20]

Starts from the baselines of benchmarks/baselines.py. For each model: torch int8 (torchao PT2E
→ inductor, `slimkit.quant.quantize_int8`) with histogram and min-max calibration, and ONNX
Runtime int8 QDQ (`quantize_onnx_static`) with min-max and percentile calibration; the more
accurate calibration of each runtime is kept. Sizes are the real files (fp32 safetensors vs the
int8 artifact; fp32 .onnx vs int8 .onnx). Speed: batch 64 and batch 1, 1 thread, all runtimes
timed in interleaved rounds in one process (eager fp32, compiled fp32 with BN folded, torch
int8, ORT fp32, ORT int8). Results: benchmarks/results/quant-int8-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from baselines import DATA, RECIPES, RESULTS, ROOT, baseline_path, load_baseline, machine
from slimkit.compiled import CompiledModel
from slimkit.data import cache_dir, load
from slimkit.export import OnnxModel, export_onnx, onnx_bytes
from slimkit.files import atomic_write_text
from slimkit.fold import fold_bn
from slimkit.measure import compare_latency, evaluate, file_bytes
from slimkit.quant.int8 import Int8Config, quantize_int8, save_int8
from slimkit.quant.int8_onnx import quantize_onnx_static

SAMPLES = 512  # calibration images


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 2)


def run(name: str, shared: Path) -> dict:
    data = load(shared / "data" / DATA[RECIPES[name][0]])
    dense = load_baseline(name)
    out = cache_dir() / "quantized"
    fp32_top1 = evaluate(dense, data.test).top1

    torch_runs = {}
    for observer in ("histogram", "minmax"):
        q, secs = timed(lambda o=observer: quantize_int8(dense, data.train, Int8Config(o, SAMPLES)))
        torch_runs[observer] = (q, evaluate(q, data.test).top1, secs)
    observer = max(torch_runs, key=lambda k: torch_runs[k][1])
    q_torch = torch_runs[observer][0]
    torch_file = save_int8(q_torch, out / f"{name}.int8.safetensors", arch={"zoo": name})

    tmp = Path(tempfile.mkdtemp())
    example = data.test.normalized(torch.arange(2))
    onnx_fp32 = export_onnx(dense, out / f"{name}.fp32.onnx", example)
    ort_runs = {}
    for method in ("minmax", "percentile"):
        q, secs = timed(
            lambda m=method: quantize_onnx_static(
                dense, data.train, tmp / f"{m}.onnx", method=m, samples=SAMPLES
            )
        )
        ort_runs[method] = (q, evaluate(q, data.test).top1, secs)
    method = max(ort_runs, key=lambda k: ort_runs[k][1])
    onnx_int8 = out / f"{name}.int8.onnx"
    (tmp / f"{method}.onnx").replace(onnx_int8)

    runtimes = {
        "eager fp32": dense,
        "compiled fp32": CompiledModel(fold_bn(dense)),
        "torch int8": q_torch,
        "ORT fp32": OnnxModel(onnx_fp32, threads=1),
        "ORT int8": OnnxModel(onnx_int8, threads=1),
    }
    speed = {}
    for batch, rounds, calls in ((64, 12, 5), (1, 20, 50)):
        x = data.test.normalized(torch.arange(batch))
        lat = compare_latency(runtimes, x, rounds=rounds, calls_per_round=calls, warmup=5)
        speed[f"batch{batch}"] = {
            k: {"p50_ms": round(v.p50_ms, 4), "p90_ms": round(v.p90_ms, 4)} for k, v in lat.items()
        }

    def ratio(batch: int, a: str, b: str) -> float:
        s = speed[f"batch{batch}"]
        return round(s[a]["p50_ms"] / s[b]["p50_ms"], 2)

    fp32_file = file_bytes(baseline_path(name))
    result = {
        "model": name,
        "fp32_top1": round(fp32_top1, 2),
        "torch_int8": {
            "calibration": {k: round(v[1], 2) for k, v in torch_runs.items()},
            "chosen": observer,
            "top1": round(torch_runs[observer][1], 2),
            "drop_points": round(fp32_top1 - torch_runs[observer][1], 2),
            "quantize_time_s": torch_runs[observer][2],
            "file_bytes": file_bytes(torch_file),
            "fp32_file_bytes": fp32_file,
            "size_ratio": round(fp32_file / file_bytes(torch_file), 2),
        },
        "ort_int8": {
            "calibration": {k: round(v[1], 2) for k, v in ort_runs.items()},
            "chosen": method,
            "top1": round(ort_runs[method][1], 2),
            "drop_points": round(fp32_top1 - ort_runs[method][1], 2),
            "quantize_time_s": ort_runs[method][2],
            "file_bytes": onnx_bytes(onnx_int8),
            "fp32_file_bytes": onnx_bytes(onnx_fp32),
            "size_ratio": round(onnx_bytes(onnx_fp32) / onnx_bytes(onnx_int8), 2),
        },
        "speed": speed,
        "speedup": {
            f"batch{b}": {
                "torch int8 vs eager fp32": ratio(b, "eager fp32", "torch int8"),
                "torch int8 vs compiled fp32": ratio(b, "compiled fp32", "torch int8"),
                "ORT int8 vs ORT fp32": ratio(b, "ORT fp32", "ORT int8"),
                "ORT int8 vs eager fp32": ratio(b, "eager fp32", "ORT int8"),
            }
            for b in (64, 1)
        },
        "threads": 1,
        "samples": SAMPLES,
        "machine": machine(),
    }
    atomic_write_text(RESULTS / f"quant-int8-{name}.json", json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5_caffe", "resnet20"])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    for name in args.models:
        r = run(name, args.shared)
        print(json.dumps({k: r[k] for k in ("model", "fp32_top1", "torch_int8", "ort_int8")}))
        print(json.dumps(r["speedup"]))


if __name__ == "__main__":
    main()
