"""ONNX export with the dynamo exporter, an ONNX Runtime runner, and an fp32 parity check.

`export_onnx` writes one self-contained .onnx file. `torch.onnx.export(..., dynamo=True, f=path)`
would by default (`external_data=True`, torch 2.13) put every weight in a `<name>.onnx.data`
side-file — resnet20: a 102 KB graph plus a 1.08 MB side-file — so the exporter is asked for the
in-memory program instead and the weights are embedded; only a model past protobuf's 2 GB limit
gets the side-file, and `onnx_bytes` counts it.

`OnnxModel` is an `nn.Module` around an `onnxruntime.InferenceSession`, so `evaluate`,
`measure_latency` and `compare_latency` measure an exported file exactly as they measure the
torch model it came from.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from slimkit.data import ArrayDataset, batches
from slimkit.errors import ConfigError, DataError, ShapeError, WeightsError
from slimkit.files import atomic_write
from slimkit.measure.common import check_input, eval_mode, example_input, first_tensor

__all__ = ["OnnxModel", "check_parity", "export_onnx", "onnx_bytes"]

# A protobuf message cannot exceed 2 GiB; leave headroom for the graph itself.
_EMBED_LIMIT = 2**31 - 64 * 2**20


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's and ORT quantizer's progress prints, log lines and warnings."""
    sink = io.StringIO()
    # Both log through Python logging ("torch.*" and the root logger); raising the root's level
    # alone would not reach "torch", whose loggers torch._logging configures itself.
    loggers = [logging.getLogger(), logging.getLogger("torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with (
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def batch_dimension(example: torch.Tensor, dynamic: bool) -> tuple[torch.Tensor, tuple | None]:
    """The example and `dynamic_shapes` for torch.export with a symbolic batch (or a fixed one)."""
    if not dynamic:
        return example, None
    if example.shape[0] == 1:
        # torch.export specializes size-1 dimensions; a batch of 2 keeps the batch symbolic.
        example = example.expand(2, *example.shape[1:]).contiguous()
    return example, ({0: torch.export.Dim("batch", min=1)},)


def _check_example(model: nn.Module, example: Tensor | None) -> Tensor:
    if example is None:
        return example_input(model, 2)
    if not isinstance(example, Tensor) or not example.is_floating_point() or example.dim() < 1:
        got = f"{example.dtype} {tuple(example.shape)}" if isinstance(example, Tensor) else example
        raise ShapeError(f"example must be a float tensor with a batch dimension, got {got}")
    check_input(model, example)
    return example.detach().float()


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _export_error(exc: Exception, model: nn.Module, target: str = "ONNX") -> ConfigError:
    """Turn the exporter's multi-page report into one line naming the operation that failed."""
    text = _strip_ansi(str(exc))
    name = f"cannot export {type(model).__name__} to {target}"
    op = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", text)
    if op:
        return ConfigError(
            f"{name}: operation {op.group(1)} has no ONNX translation; rewrite that part of "
            "forward with common tensor ops (or export with a newer torch/onnxscript)"
        )
    # torch.export names the user's line that failed; other "File" lines are torch internals.
    where = re.search(
        r'raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(\S[^\n]*)', text
    )
    at = ""
    if where:
        at = f" at {Path(where.group(1)).name}:{where.group(2)} `{where.group(3).strip()}`"
    if "data-dependent" in text or "DataDependent" in text:
        return ConfigError(
            f"{name}: data-dependent control flow{at}; replace Python `if`/`while` on tensor "
            "values with torch.where (or torch.cond)"
        )
    summary = text.split("## Exception summary", 1)[-1].strip().splitlines()
    first = next((s.strip() for s in summary if s.strip()), type(exc).__name__)
    first = re.sub(r"^<class '([\w.]+)'>:", lambda m: m.group(1).rsplit(".", 1)[-1] + ":", first)
    return ConfigError(
        f"{name}: {first[:300]}{at}; make forward traceable by torch.export (plain tensor ops, "
        "no Python-side computation on tensor values)"
    )


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example: Tensor | None = None,
    *,
    dynamic_batch: bool = True,
    opset: int | None = None,
    debug_info: bool = False,
) -> Path:
    """Export `model` in eval mode to `path` (one .onnx file, weights embedded) and return it.

    The model is deep-copied, so the caller's module (its training flag included) is untouched.
    `example` is a float batch of the model's input (default: random, from `model.input_shape`).
    With `dynamic_batch` the batch dimension is symbolic, so the file runs at any batch size.
    The exporter's per-node debug metadata (stack traces naming local files, module paths; ~7%
    of resnet20's file) is dropped unless `debug_info`.
    Every export passes `onnx.checker`. An operation the exporter cannot handle is a ConfigError
    naming it.
    """
    path = Path(path)
    example = _check_example(model, example)
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 7):
        raise ConfigError(f"opset must be an integer ≥ 7 or None for the default, got {opset!r}")
    example, dynamic_shapes = batch_dimension(example, dynamic_batch)
    clone = copy.deepcopy(model).eval()
    try:
        with quiet(), torch.no_grad():
            program = torch.onnx.export(
                clone,
                (example,),
                dynamo=True,
                verbose=False,
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
            )
            proto = program.model_proto
    except Exception as exc:  # the exporter raises many types; all mean "cannot export this"
        raise _export_error(exc, model) from None
    del clone, program
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and got != opset:
        # The exporter falls back to its own opset (with a warning) when conversion fails.
        raise ConfigError(
            f"cannot export {type(model).__name__} at opset {opset} (the exporter produced opset "
            f"{got}): pass opset={got}, or None for the default"
        )
    if not debug_info:
        for node in proto.graph.node:
            del node.metadata_props[:]
    save_onnx(proto, path)
    return path


def save_onnx(proto: onnx.ModelProto, path: Path) -> None:
    """Check `proto` and write it atomically: embedded weights, or a side-file past 2 GB."""
    try:
        if proto.ByteSize() < _EMBED_LIMIT:
            onnx.checker.check_model(proto)
            data = proto.SerializeToString()
            atomic_write(path, lambda f: f.write(data))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        side = f"{path.name}.data"
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
            staged = Path(tmp) / path.name
            onnx.save_model(
                proto, staged, save_as_external_data=True, all_tensors_to_one_file=True,
                location=side,
            )  # fmt: skip
            onnx.checker.check_model(str(staged))  # a path: the checker reads the side-file
            # Side-file first: the .onnx that appears at `path` then always finds its weights.
            os.replace(Path(tmp) / side, path.parent / side)
            os.replace(staged, path)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"exported graph fails the ONNX checker ({first}); try another opset"
        ) from None


def onnx_bytes(path: str | os.PathLike) -> int:
    """Size on disk of an .onnx file plus every external-data side-file it references."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX file '{path}' not found: export the model first")
    model = _load_proto(path, load_external_data=False)
    sides = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            sides.update(e.value for e in tensor.external_data if e.key == "location")
    return path.stat().st_size + sum((path.parent / s).stat().st_size for s in sides)


def _load_proto(path: Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    try:
        return onnx.load(path, load_external_data=load_external_data)
    except Exception as exc:  # protobuf's DecodeError and friends: a file that is not ONNX
        reason = type(exc).__name__
        raise WeightsError(f"'{path}' is not a readable ONNX model ({reason})") from None


def _dims(value: ort.NodeArg) -> list[int | None]:
    """Static sizes of an ORT input/output; None for a symbolic dimension."""
    return [d if isinstance(d, int) and d > 0 else None for d in value.shape]


def session_options(threads: int) -> ort.SessionOptions:
    """One session per model, `threads` intra-op threads, all graph optimizations, quiet logs."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"thread count must be an integer ≥ 1, got {threads!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # ops run one after another (ORT_SEQUENTIAL); no second pool
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no "removing initializer" chatter
    return opts


class OnnxModel(nn.Module):
    """An .onnx file run by ONNX Runtime (CPU), callable like the torch model it came from.

    `forward` takes a float tensor (B, C, H, W) and returns a float tensor; a model with several
    outputs returns a tuple. `input_shape` (C, H, W) and `num_classes` are read from the graph
    when its shapes are static, else None. The thread count is fixed when the session is made,
    so measure latency with the same `threads` the runner was built with.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        if not self.path.is_file():
            raise WeightsError(f"ONNX file '{self.path}' not found: export the model first")
        self.session = self._open()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ConfigError(f"'{self.path.name}' takes {len(inputs)} inputs ({names}); need 1")
        self.input_name = inputs[0].name
        self._in_dims = _dims(inputs[0])
        rest = self._in_dims[1:]
        self.input_shape = tuple(rest) if rest and None not in rest else None
        out = _dims(self.session.get_outputs()[0])
        self.num_classes = out[1] if len(out) == 2 and out[1] is not None else None

    def _open(self) -> ort.InferenceSession:
        opts = session_options(self.threads)
        try:
            return ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )  # fmt: skip
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            first = _strip_ansi(str(exc)).strip().splitlines()
            reason = first[0][:200] if first else type(exc).__name__
            raise WeightsError(f"ONNX Runtime cannot load '{self.path}' ({reason})") from None

    # An InferenceSession cannot be pickled or deep-copied: rebuild it from the file instead.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("session", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.session = self._open()

    def extra_repr(self) -> str:
        return f"'{self.path}', threads={self.threads}"

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = f"{x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"{self.path.name} takes a float tensor, got {got}")
        dims = self._in_dims
        if x.dim() != len(dims) or any(
            d is not None and d != s for d, s in zip(dims, x.shape, strict=True)
        ):
            want = ", ".join(
                "N" if i == 0 and d is None else str(d or "?") for i, d in enumerate(dims)
            )
            raise ShapeError(
                f"{self.path.name} expects input of shape ({want}), got {tuple(x.shape)}: "
                "use data of that shape or export the model for this data"
            )

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        self._check(x)
        array = np.ascontiguousarray(x.detach().cpu().to(torch.float32).numpy())
        outs = [torch.from_numpy(o) for o in self.session.run(None, {self.input_name: array})]
        return outs[0] if len(outs) == 1 else tuple(outs)


def check_parity(
    model: nn.Module, onnx_model: nn.Module, data: ArrayDataset | Tensor, *, batch_size: int = 500
) -> dict[str, float]:
    """How closely `onnx_model` reproduces `model` on `data` (a dataset or a float batch).

    Returns `max_abs_diff` and `mean_abs_diff` of the outputs (logits), `top1_agreement` (% of
    samples where both pick the same class) and `samples`.
    """
    if isinstance(data, ArrayDataset):
        if len(data) == 0:
            raise DataError("cannot check parity on an empty data set")
        chunks: Iterator[Tensor] = (x for x, _ in batches(data, batch_size))
        n = len(data)
    elif isinstance(data, Tensor):
        if data.dim() < 1 or data.shape[0] == 0 or not data.is_floating_point():
            raise DataError(f"need a non-empty float batch, got {data.dtype} {tuple(data.shape)}")
        chunks = iter(data.split(batch_size))
        n = int(data.shape[0])
    else:
        kind = type(data).__name__
        raise DataError(f"data must be an ArrayDataset or a float tensor, got {kind}")
    worst = total = 0.0
    same = 0
    with eval_mode(model), eval_mode(onnx_model), torch.inference_mode():
        for x in chunks:
            check_input(model, x)
            a = first_tensor(model(x)).float().reshape(len(x), -1)
            b = first_tensor(onnx_model(x)).float().reshape(len(x), -1)
            if a.shape != b.shape:
                raise ShapeError(
                    f"outputs differ in shape: torch {tuple(a.shape)}, ONNX {tuple(b.shape)}; "
                    "compare a model with its own export"
                )
            diff = (a - b).abs()
            worst = max(worst, float(diff.max()))
            total += float(diff.mean(1).sum())
            same += int((a.argmax(1) == b.argmax(1)).sum())
    return {
        "max_abs_diff": worst,
        "mean_abs_diff": total / n,
        "top1_agreement": 100.0 * same / n,
        "samples": n,
    }
