"""Which runtime is fastest for this model on this machine? Every backend × thread count × batch.

Backends (each built once, then timed in interleaved rounds so a noisy spell hits all alike):

    eager         torch fp32, as the user runs it
    compile       torch.compile (inductor, freezing) of the BN-folded fp32 model
    int8-eager    the torchao PT2E int8 graph run by eager torch (reference semantics)
    int8-compile  the same graph compiled by inductor: oneDNN int8 kernels
    onnxruntime   the fp32 ONNX export run by ONNX Runtime
    ort-int8      ONNX Runtime int8 QDQ (static, per-channel, calibrated)
    aoti          the BN-folded fp32 model compiled ahead of time by AOTInductor into a `.pt2`
                  package and run from it (only where a C++ compiler is present)
    cuda          torch fp32 on the GPU (only where one is present)

Ratios are against eager fp32 measured in the same rounds. `build_s` is each backend's export,
quantization or compile time and `file_bytes` the size of its artifact file (.onnx, .pt2).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.compiled import CompiledModel
from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError
from slimkit.export.aoti import AotiModel, aoti_unavailable
from slimkit.fold import fold_bn
from slimkit.measure import compare_latency
from slimkit.measure.common import check_input

BACKENDS = (
    "eager",
    "compile",
    "int8-eager",
    "int8-compile",
    "onnxruntime",
    "ort-int8",
    "aoti",
    "cuda",
)
PRECISION = {"int8-eager": "int8", "int8-compile": "int8", "ort-int8": "int8"}
log = logging.getLogger(__name__)


@dataclass
class BenchRow:
    backend: str
    precision: str
    threads: int
    batch: int
    p50_ms: float
    p90_ms: float
    throughput_per_s: float
    speedup_vs_eager: float
    build_s: float  # export / quantize / first compile time of this backend
    file_bytes: int = 0  # its artifact file (.onnx, .pt2); 0: none


def default_backends() -> list[str]:
    names = [b for b in BACKENDS if b not in ("aoti", "cuda")]
    return (
        names
        + (["aoti"] if aoti_unavailable() is None else [])
        + (["cuda"] if torch.cuda.is_available() else [])
    )


def run_bench(
    model: nn.Module,
    example: torch.Tensor,
    *,
    calib: ArrayDataset | None = None,
    backends: list[str] | None = None,
    threads: tuple[int, ...] = (1,),
    batches: tuple[int, ...] = (1, 64),
    rounds: int = 10,
    calls: int = 20,
) -> list[BenchRow]:
    """Time every backend for every (threads, batch); int8 backends need `calib` images.

    A backend asked for by name that cannot be built here is a ConfigError saying why; one that
    is only among the defaults (aoti, on a model AOTInductor cannot compile) is left out with
    that reason logged.
    """
    requested = backends is not None
    backends = backends or default_backends()
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    if "cuda" in backends and not torch.cuda.is_available():
        raise ConfigError("backend 'cuda' needs a CUDA GPU, and torch sees none")
    if "aoti" in backends and (reason := aoti_unavailable()):
        raise ConfigError(f"backend 'aoti': {reason}")
    if any(PRECISION.get(b) == "int8" for b in backends) and calib is None:
        raise ConfigError("int8 backends calibrate on data: pass calibration images (--data)")
    if "eager" not in backends:
        backends = ["eager", *backends]
    check_input(model, example)
    model = model.eval()
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="slimkit-bench-") as tmp:
        for n_threads in threads:
            built, build_s, sizes = _build(
                model, example, calib, backends, n_threads, Path(tmp), requested, batches
            )
            for batch in batches:
                x = example[:1].expand(batch, *example.shape[1:]).contiguous()
                lat = compare_latency(
                    built, x, threads=n_threads, rounds=rounds, calls_per_round=calls, warmup=3
                )
                base = lat["eager"].p50_ms
                for name, stats in lat.items():
                    rows.append(
                        BenchRow(
                            backend=name,
                            precision=PRECISION.get(name, "fp32"),
                            threads=n_threads,
                            batch=batch,
                            p50_ms=stats.p50_ms,
                            p90_ms=stats.p90_ms,
                            throughput_per_s=batch * 1000.0 / stats.p50_ms,
                            speedup_vs_eager=base / stats.p50_ms,
                            build_s=build_s.get(name, 0.0),
                            file_bytes=sizes.get((name, batch), sizes.get((name, 0), 0)),
                        )
                    )
    return rows


def _build(
    model: nn.Module,
    example: torch.Tensor,
    calib: ArrayDataset | None,
    backends: list[str],
    threads: int,
    tmp: Path,
    requested: bool,
    batches: tuple[int, ...],
) -> tuple[dict[str, nn.Module], dict[str, float], dict[tuple[str, int], int]]:
    """Each backend's module, build seconds and artifact bytes by (backend, batch; 0: any).
    Artifacts that do not depend on the thread count (the .pt2s) are built once, kept in
    `tmp`."""
    built: dict[str, nn.Module] = {}
    seconds: dict[str, float] = {}
    sizes: dict[tuple[str, int], int] = {}
    int8 = None
    for name in backends:
        t0 = time.perf_counter()
        if name == "eager":
            built[name] = model
        elif name == "compile":
            built[name] = _warm(CompiledModel(fold_bn(model)), example)
        elif name in ("int8-eager", "int8-compile"):
            from slimkit.quant import quantize_int8

            int8 = int8 or quantize_int8(model, calib, compiled=False)
            if name == "int8-eager":
                built[name] = int8
            else:
                built[name] = _warm(CompiledModel(int8.graph_module), example)
        elif name == "onnxruntime":
            from slimkit.export import OnnxModel, export_onnx, onnx_bytes

            path = export_onnx(model, tmp / "fp32.onnx", example)
            built[name], sizes[name, 0] = OnnxModel(path, threads), onnx_bytes(path)
        elif name == "ort-int8":
            from slimkit.export import onnx_bytes
            from slimkit.quant import quantize_onnx_static

            built[name] = quantize_onnx_static(model, calib, tmp / "int8.onnx", threads=threads)
            sizes[name, 0] = onnx_bytes(tmp / "int8.onnx")
        elif name == "aoti":
            runner = _aoti(model, example, batches, tmp, requested)
            if runner is None:
                continue
            built[name] = runner
            seconds[name] = sum(r.compile_s for r in runner.runners.values())
            sizes.update({(name, b): r.package_bytes for b, r in runner.runners.items()})
            continue
        elif name == "cuda":
            built[name] = _OnDevice(model, "cuda")
        seconds[name] = time.perf_counter() - t0
    return built, seconds, sizes


def _aoti(
    model: nn.Module, example: torch.Tensor, batches: tuple[int, ...], tmp: Path, requested: bool
) -> _PerBatch | None:
    """A static AOTInductor package per batch size (compiled once, then reloaded from `tmp`),
    each checked against eager; None, with the reason logged, when one cannot be built and the
    backend was not asked for by name."""
    runners = {}
    folded = None
    try:
        for batch in batches:
            path = tmp / f"model-b{batch}.pt2"
            if path.is_file():
                runners[batch] = AotiModel(path, getattr(model, "input_shape", None), batch)
                continue
            folded = folded or fold_bn(model)
            x = example[:1].expand(batch, *example.shape[1:]).contiguous()
            runners[batch] = AotiModel.from_model(folded, path, x)
            with torch.no_grad():
                want, got = model(x), runners[batch](x)
            if not torch.allclose(got, want, rtol=1e-3, atol=1e-4):
                diff = float((got - want).abs().max())
                raise ConfigError(f"its outputs at batch {batch} differ from eager by {diff:.3g}")
    except ConfigError as e:
        if requested:
            raise ConfigError(f"backend 'aoti': {e}") from None
        log.warning("slimkit bench: left out backend 'aoti': %s", e)
        return None
    return _PerBatch(runners)


class _PerBatch(nn.Module):
    """Routes each batch to the package compiled for its size."""

    def __init__(self, runners: dict[int, AotiModel]) -> None:
        super().__init__()
        self.runners = runners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.runners[x.shape[0]](x)


def _warm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Compile now (batch 1 and the example's batch), so compile time is not timed as latency."""
    with torch.no_grad():
        model(example[:1])
    return model


class _OnDevice(nn.Module):
    """Runs a copy of the model on `device`; input and output cross the bus (as deployed)."""

    def __init__(self, model: nn.Module, device: str) -> None:
        super().__init__()
        import copy

        self.model = copy.deepcopy(model).to(device).eval()
        self.device = device
        self.input_shape = getattr(model, "input_shape", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x.to(self.device))
        torch.cuda.synchronize()
        return out.cpu()


def format_table(rows: list[BenchRow]) -> str:
    head = (
        f"  {'backend':<14}{'prec':<6}{'threads':>8}{'batch':>7}{'p50 ms':>10}{'p90 ms':>10}"
        f"{'samples/s':>12}{'vs eager':>10}{'build s':>9}{'file KB':>9}"
    )
    lines = [head]
    for r in rows:
        size = f"{r.file_bytes / 1024:,.0f}" if r.file_bytes else "—"
        lines.append(
            f"  {r.backend:<14}{r.precision:<6}{r.threads:>8}{r.batch:>7}{r.p50_ms:>10.3f}"
            f"{r.p90_ms:>10.3f}{r.throughput_per_s:>12,.0f}{r.speedup_vs_eager:>9.2f}x"
            f"{r.build_s:>9.1f}{size:>9}"
        )
    return "\n".join(lines)


def fastest(rows: list[BenchRow]) -> dict[str, Any]:
    """The fastest backend per (threads, batch)."""
    best: dict[tuple[int, int], BenchRow] = {}
    for r in rows:
        key = (r.threads, r.batch)
        if key not in best or r.p50_ms < best[key].p50_ms:
            best[key] = r
    return {f"threads={t} batch={b}": asdict(r) for (t, b), r in best.items()}
