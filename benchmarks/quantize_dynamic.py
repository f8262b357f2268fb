"""Dynamic int8 for a Linear/attention-heavy model: the zoo's Transformer encoder on full MNIST.

    python benchmarks/quantize_dynamic.py

Starts from the `transformer_mnist` baseline (benchmarks/baselines.py mnist). Runtimes, timed in
interleaved rounds (1 thread, batch 1 and 64): torch eager fp32, ONNX Runtime fp32, ONNX Runtime
dynamic int8 (`slimkit.quant.quantize_onnx_dynamic`: int8 weights, activations quantized per
batch) and, for reference, torch.ao's deprecated `quantize_dynamic` (fbgemm kernels). A 4× wider
copy (dim 256, MLP 1024, untrained: speed only) shows how the gain grows with the Linear sizes.
Results: benchmarks/results/quant-dynamic.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import torch

from baselines import DATA, RESULTS, ROOT, baseline_path, load_baseline, machine
from slimkit.data import load
from slimkit.export import OnnxModel, export_onnx, onnx_bytes
from slimkit.files import atomic_write_text
from slimkit.measure import compare_latency, evaluate, file_bytes
from slimkit.nn import create
from slimkit.quant import quantize_onnx_dynamic


def runtimes(model: torch.nn.Module, example: torch.Tensor, tmp: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated: a reference only
        ao = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    fp32 = export_onnx(model, tmp / f"{id(model)}.onnx", example)
    return {
        "eager fp32": model,
        "ORT fp32": OnnxModel(fp32),
        "ORT dynamic int8": quantize_onnx_dynamic(model, tmp / f"{id(model)}-dyn.onnx", example),
        "torch.ao dynamic int8": ao,
    }


def speed(models: dict, data, batches=(1, 64)) -> dict:
    out = {}
    for b in batches:
        lat = compare_latency(models, data.test.normalized(torch.arange(b)), rounds=15)
        out[f"batch{b}"] = {k: round(v.p50_ms, 4) for k, v in lat.items()}
        base = out[f"batch{b}"]
        out[f"batch{b}_speedup"] = {
            "ORT dynamic vs ORT fp32": round(base["ORT fp32"] / base["ORT dynamic int8"], 2),
            "ORT dynamic vs eager fp32": round(base["eager fp32"] / base["ORT dynamic int8"], 2),
            "torch.ao dynamic vs eager": round(
                base["eager fp32"] / base["torch.ao dynamic int8"], 2
            ),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    data = load(args.shared / "data" / DATA["mnist"])
    model = load_baseline("transformer_mnist")
    tmp = Path(tempfile.mkdtemp())
    example = data.test.normalized(torch.arange(2))
    trained = runtimes(model, example, tmp)
    accuracy = {k: round(evaluate(m, data.test).top1, 2) for k, m in trained.items()}
    wide = create("transformer_mnist", dim=256, mlp_dim=1024).eval()
    result = {
        "model": "transformer_mnist",
        "top1": accuracy,
        "sizes_bytes": {
            "fp32 safetensors": file_bytes(baseline_path("transformer_mnist")),
            "ORT fp32": onnx_bytes(trained["ORT fp32"].path),
            "ORT dynamic int8": onnx_bytes(trained["ORT dynamic int8"].path),
        },
        "speed_ms": speed(trained, data),
        "wide_dim256_speed_ms": speed(runtimes(wide, example, tmp), data),
        "threads": 1,
        "machine": machine(),
    }
    atomic_write_text(RESULTS / "quant-dynamic.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
