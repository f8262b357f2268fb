"""Ahead-of-time compiled packages: AOTInductor's `.pt2`, and a runner that measures like a module.

`export_aoti` traces the model with `torch.export`, compiles it with AOTInductor
(`torch._inductor.aoti_compile_and_package`: inductor's kernels and a C++ wrapper built into one
shared library, weights frozen in as constants) and writes the `.pt2` package. `AotiModel`
loads it with `torch._inductor.aoti_load_package`, which needs no Python model code — what a
deployment without the training stack runs.

Shapes are static by default, one package per batch size: with a symbolic batch (torch 2.13,
CPU) a LeNet-5 package computed wrong outputs at batch 1 for real digits while random inputs and
batch 3 came out exact, so a dynamic package is opt-in, and the bench checks every package
against eager before timing it.

A `.pt2` holds native code that loading runs: load only packages you built. Compiling needs a
C++ compiler (`$CXX`, else c++/g++/clang++ on PATH); `aoti_unavailable` says in one line why it
cannot work here.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError, ShapeError, WeightsError
from slimkit.export.onnx import _check_example, _export_error, batch_dimension, quiet
from slimkit.files import atomic_write
from slimkit.measure.common import example_input

__all__ = ["AotiModel", "aoti_unavailable", "export_aoti"]


def aoti_unavailable() -> str | None:
    """Why AOTInductor cannot compile on this machine, in one line; None when it can."""
    if os.name == "nt":
        return "AOTInductor packages are not built on Windows by this slimkit"
    compiler = os.environ.get("CXX") or next(
        (c for c in ("c++", "g++", "clang++") if shutil.which(c)), None
    )
    if compiler is None or shutil.which(compiler) is None:
        return "AOTInductor needs a C++ compiler: install g++ or clang++ (or set $CXX)"
    return None


def export_aoti(
    model: nn.Module,
    path: str | os.PathLike,
    example: Tensor | None = None,
    *,
    dynamic_batch: bool = False,
) -> Path:
    """Compile `model` in eval mode ahead of time into the `.pt2` package `path`; returns it.

    The model is deep-copied, so the caller's module is untouched. `example` is a float batch of
    the model's input (default: one random sample, from `model.input_shape`); the package runs
    at its batch size, or at any with `dynamic_batch` (see the note above before relying on
    it). A model torch.export cannot trace is a ConfigError naming the failing line; a failed
    C++ build is one naming the compiler's first error.
    """
    path = Path(path)
    reason = aoti_unavailable()
    if reason:
        raise ConfigError(reason)
    example = _check_example(model, example_input(model, 1) if example is None else example)
    example, dynamic_shapes = batch_dimension(example, dynamic_batch)
    clone = copy.deepcopy(model).eval()
    try:
        with quiet(), torch.no_grad():
            program = torch.export.export(clone, (example,), dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch.export raises many types; all mean "cannot trace this"
        raise _export_error(exc, model, "an AOTInductor package") from None
    with tempfile.TemporaryDirectory(prefix="slimkit-aoti-") as tmp:
        staged = Path(tmp) / "model.pt2"
        try:
            with quiet():
                torch._inductor.aoti_compile_and_package(
                    program, package_path=str(staged), inductor_configs={"freezing": True}
                )
        except Exception as exc:  # a C++ build or codegen failure: name its first line
            first = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")
            raise ConfigError(
                f"AOTInductor could not compile {type(model).__name__} "
                f"({type(exc).__name__}: {first[:200]}); use the 'compile' backend instead"
            ) from None
        atomic_write(path, lambda f: f.write(staged.read_bytes()))
    return path


class AotiModel(nn.Module):
    """A `.pt2` package as an inference-only module, so `evaluate` and the latency tools measure
    it like any model. `compile_s` is the time `from_model` spent exporting and compiling."""

    def __init__(
        self,
        path: str | os.PathLike,
        input_shape: tuple[int, ...] | None = None,
        batch: int | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"AOTInductor package '{self.path}' not found: build it first")
        try:
            with quiet():
                self._runner = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:
            raise WeightsError(
                f"'{self.path.name}' is not an AOTInductor package this torch loads "
                f"({type(exc).__name__}); build it again with export_aoti"
            ) from None
        if input_shape is not None:
            self.input_shape = tuple(input_shape)
        self.batch = batch  # the batch size a static package was compiled for (None: any)
        self.package_bytes = self.path.stat().st_size
        self.compile_s = 0.0
        self.training = False

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        path: str | os.PathLike,
        example: Tensor | None = None,
        *,
        dynamic_batch: bool = False,
    ) -> AotiModel:
        """Compile `model` for `example`'s batch size (any with `dynamic_batch`) and load it."""
        t0 = time.perf_counter()
        example = example_input(model, 1) if example is None else example
        export_aoti(model, path, example, dynamic_batch=dynamic_batch)
        batch = None if dynamic_batch else example.shape[0]
        runner = cls(path, getattr(model, "input_shape", None), batch)
        runner.compile_s = time.perf_counter() - t0
        if hasattr(model, "num_classes"):
            runner.num_classes = model.num_classes
        return runner

    def forward(self, x: Tensor) -> Tensor:
        shape = getattr(self, "input_shape", None)
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise ShapeError(
                f"{self.path.name} expects input of shape (N, {', '.join(map(str, shape))}), got "
                f"{tuple(x.shape)}"
            )
        if self.batch is not None and x.shape[0] != self.batch:
            raise ShapeError(
                f"{self.path.name} was compiled for batch {self.batch}, got {x.shape[0]}: compile "
                "one per batch size (or with dynamic_batch=True)"
            )
        if x.dtype != torch.float32:
            raise ShapeError(f"{self.path.name} expects float32 input, got {x.dtype}")
        out = self._runner(x.contiguous())
        return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out

    def train(self, mode: bool = True) -> AotiModel:
        if mode:
            raise ConfigError("an AOTInductor package is for inference: train the original model")
        return self
