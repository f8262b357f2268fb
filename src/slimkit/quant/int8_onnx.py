"""Int8 models for ONNX Runtime: static QDQ quantization with calibration, and dynamic.

Static (`quantize_onnx_static`): the fp32 export goes through ORT's pre-processing (shape
inference, graph optimization) and `quantize_static` in QDQ format — int8 weights (per channel
by default), uint8 activations whose ranges come from calibration images — the combination ORT
recommends for x86 CPUs. ORT fuses each DequantizeLinear → op → QuantizeLinear group into an
integer kernel (QLinearConv, QGemm, …) when the session is built.

Dynamic (`quantize_onnx_dynamic`): int8 weights, activations quantized on the fly per batch;
no calibration. It pays off where MatMul/Gemm weights dominate (MLPs, LSTMs, attention), not for
convolutions, so Conv is left in float by default (ORT's ConvInteger kernel is slow on CPU).

`reduce_range` (7-bit weights) follows ORT's guidance: x86 CPUs without VNNI multiply uint8×int8
with VPMADDUBSW, whose 16-bit intermediate sums can saturate; with VNNI (and on ARM) the full
8 bits are safe. The default (None) checks the CPU.

Measured with `compare_latency` (interleaved rounds; 1 thread; ORT 1.32; AMD EPYC with AVX-512
VNNI, shared; three runs agreed within 5%), median latency of ORT fp32 / ORT int8 static QDQ:
lenet5_caffe 1.6× at batch 1 (0.068 → 0.042 ms) and 1.8× at batch 64 (2.7 → 1.5 ms); resnet20
1.9× at batch 1 (0.39 → 0.20 ms) and 2.15× at batch 64 (23.7 → 11.0 ms). So "≈ 2×" holds for
resnet20; the tiny LeNet gains less, as fixed per-op costs weigh more. Per-tensor weights were as
fast as per-channel. Dynamic int8 of lenet5_caffe's Gemms: 1.26× (batch 1) and 1.08× (batch 64);
with its convolutions as ConvInteger it was 2.4-3.6× *slower* than fp32. For reference, torch
fp32 eager was 2.7-4.4× slower than ORT fp32 at batch 1 and 1.4-2.7× at batch 64.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import Tensor, nn

from slimkit.data import ArrayDataset, calibration_subset
from slimkit.errors import ConfigError, DataError, ShapeError
from slimkit.export.onnx import OnnxModel, export_onnx, quiet, save_onnx
from slimkit.measure.common import example_input
from slimkit.quant.cpu import default_reduce_range

__all__ = [
    "CALIBRATION_METHODS",
    "DYNAMIC_OP_TYPES",
    "float_nodes",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
]

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}

# Linear layers export as Gemm, which ORT's dynamic quantizer rewrites to MatMul(Integer).
DYNAMIC_OP_TYPES = ("MatMul", "Attention", "LSTM", "Gather", "EmbedLayerNormalization")

_QDQ = ("QuantizeLinear", "DequantizeLinear")
_STATIC_OPS = frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)


def float_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes of a QDQ model that ORT runs in float: no int8 kernel, or inputs not quantized."""
    graph = model.graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    constant = {t.name for t in graph.initializer}
    constant |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    left = []
    for node in graph.node:
        if node.op_type in _QDQ or node.op_type == "Constant":
            continue
        acts = [i for i in node.input if i and i not in constant]
        if node.op_type not in _STATIC_OPS or any(
            made_by.get(i) != "DequantizeLinear" for i in acts
        ):
            left.append(node)
    return left


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer ≥ 1, got {value!r}")
    return value


def _reduce_range(value: bool | None) -> bool:
    if value is None:
        return default_reduce_range()
    if not isinstance(value, bool):
        raise ConfigError(f"reduce_range must be True, False or None (auto), got {value!r}")
    return value


class _Batches(CalibrationDataReader):
    """Feeds normalized calibration images to ORT's calibrator, `batch` at a time."""

    def __init__(self, data: ArrayDataset, input_name: str, batch: int = 64) -> None:
        self._chunks = iter(range(0, len(data), batch))
        self._data, self._name, self._batch = data, input_name, batch

    def get_next(self) -> dict | None:
        start = next(self._chunks, None)
        if start is None:
            return None
        x = self._data.normalized(slice(start, start + self._batch))
        return {self._name: x.numpy()}


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _pre_process(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing; the plain export if its shape inference gives up."""
    try:
        with quiet():
            quant_pre_process(str(src), str(dst))
        return dst
    except Exception:  # symbolic shape inference fails on some graphs; quantizing still works
        return src


def _static_example(model: nn.Module, calib: ArrayDataset, example: Tensor | None) -> Tensor:
    """The export example, after checking that the calibration images fit the model."""
    if example is not None:
        want = tuple(example.shape[1:]) if isinstance(example, Tensor) else None
    else:
        shape = getattr(model, "input_shape", None)
        want = tuple(shape) if shape is not None else None
    if want is not None and tuple(calib.sample_shape) != want:
        raise ShapeError(
            f"calibration images are {calib.sample_shape} but {type(model).__name__} takes "
            f"{want}: calibrate with images from the model's own data set"
        )
    if example is not None:
        return example
    if getattr(model, "input_shape", None) is not None:
        return example_input(model, 2)
    return calib.normalized(slice(0, 2))


def quantize_onnx_static(
    model: nn.Module,
    calib: ArrayDataset,
    path: str | os.PathLike,
    *,
    example: Tensor | None = None,
    method: str = "minmax",
    per_channel: bool = True,
    samples: int = 512,
    threads: int = 1,
    reduce_range: bool | None = None,
    seed: int = 0,
) -> OnnxModel:
    """Write an int8 QDQ .onnx of `model` to `path`, calibrated on `calib`; return its runner.

    Calibration uses a class-balanced subset of `samples` images (normalized as in training);
    `method` sets activation ranges from their min/max, a 99.999th percentile or an entropy
    (KL) fit. Nodes ORT cannot quantize stay float and are listed in a warning. Calibration
    holds every intermediate tensor of all `samples` images in memory at once (ORT's calibrator
    collects before it reduces), so lower `samples` for large feature maps.
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"method must be one of {', '.join(map(repr, CALIBRATION_METHODS))}, got {method!r}"
        )
    samples = _positive_int("samples", samples)
    reduce = _reduce_range(reduce_range)
    if not isinstance(calib, ArrayDataset):
        raise DataError(f"calibration data must be an ArrayDataset, got {type(calib).__name__}")
    if len(calib) == 0:
        raise DataError("calibration data is empty: pass at least one image (a few hundred best)")
    example = _static_example(model, calib, example)
    subset = calibration_subset(calib, samples, seed)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="slimkit-int8-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", example)
        source = _pre_process(fp32, Path(tmp) / "pre.onnx")
        input_name = onnx.load(source, load_external_data=False).graph.input[0].name
        out = Path(tmp) / "int8.onnx"
        try:
            with quiet():
                quantize_static(
                    str(source),
                    str(out),
                    _Batches(subset, input_name),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    reduce_range=reduce,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CALIBRATION_METHODS[method],
                )
        except Exception as exc:  # ORT raises bare ValueError/RuntimeError/KeyError here
            raise ConfigError(
                f"ONNX Runtime could not quantize {type(model).__name__} ({_first_line(exc)}); "
                "try per_channel=False or method='minmax'"
            ) from None
        quantized = onnx.load(out)
    left = float_nodes(quantized)
    save_onnx(quantized, path)
    if left:
        kinds = Counter(node.op_type for node in left)
        names = ", ".join(node.name for node in left[:5]) + (", …" if len(left) > 5 else "")
        warnings.warn(
            f"{len(left)} node(s) stayed float in {path.name} (no int8 kernel in ONNX Runtime): "
            f"{', '.join(f'{op} ×{n}' for op, n in kinds.items())} ({names})",
            stacklevel=2,
        )
    return OnnxModel(path, threads)


def quantize_onnx_dynamic(
    model: nn.Module,
    path: str | os.PathLike,
    example: Tensor | None = None,
    *,
    per_channel: bool = False,
    reduce_range: bool | None = None,
    op_types: tuple[str, ...] | list[str] = DYNAMIC_OP_TYPES,
    threads: int = 1,
) -> OnnxModel:
    """Write a dynamically quantized .onnx of `model` (int8 weights) to `path`; return its runner.

    Weights of the ONNX ops in `op_types` become int8; activations are quantized per batch at
    run time, so no calibration data is needed. Pass `op_types=(..., "Conv")` to include
    convolutions (ORT then runs ConvInteger, which is usually slower than float Conv on CPU).
    """
    reduce = _reduce_range(reduce_range)
    if isinstance(op_types, str) or not op_types or not all(isinstance(o, str) for o in op_types):
        raise ConfigError(f"op_types must be a non-empty list of ONNX op names, got {op_types!r}")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="slimkit-int8-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", example)
        source = _pre_process(fp32, Path(tmp) / "pre.onnx")
        out = Path(tmp) / "int8.onnx"
        try:
            with quiet():
                quantize_dynamic(
                    str(source),
                    str(out),
                    op_types_to_quantize=list(op_types),
                    per_channel=per_channel,
                    reduce_range=reduce,
                    weight_type=QuantType.QInt8,
                )
        except Exception as exc:  # ORT raises bare ValueError/RuntimeError/KeyError here
            raise ConfigError(
                f"ONNX Runtime could not quantize {type(model).__name__} ({_first_line(exc)}); "
                "try per_channel=False or fewer op_types"
            ) from None
        quantized = onnx.load(out)
    save_onnx(quantized, path)
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    if not any(t.data_type in int8 for t in quantized.graph.initializer):
        ops = Counter(node.op_type for node in quantized.graph.node)
        warnings.warn(
            f"no weights were quantized in {path.name}: the graph has no {', '.join(op_types)} "
            f"node (it has {', '.join(ops)}); pass op_types naming its ops",
            stacklevel=2,
        )
    return OnnxModel(path, threads)
