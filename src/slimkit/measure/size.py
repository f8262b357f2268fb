"""Sizes in bytes: the dense fp32 figure, the in-memory tensors, and the real saved artifact."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from torch import nn

from slimkit.measure.params import count_params
from slimkit.weights import save_weights

FP32_BYTES = 4


def dense_bytes(model: nn.Module) -> int:
    """What the parameters take as dense fp32: the usual 'uncompressed size'."""
    return count_params(model).total * FP32_BYTES


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers as stored now (dtype-aware, shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def file_bytes(*paths: str | os.PathLike) -> int:
    """Size on disk of an artifact and its side files."""
    return sum(Path(p).stat().st_size for p in paths)


def saved_bytes(model: nn.Module) -> int:
    """Size of the safetensors file the model saves to (header included), measured on disk."""
    with tempfile.TemporaryDirectory(prefix="slimkit-size-") as d:
        return file_bytes(save_weights(model, Path(d) / "model.safetensors"))
