"""Parameter counts: total and non-zero, tied weights once, packed/quantized weights included."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParamCount:
    total: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.total if self.total else 0.0


def weight_density(weight: torch.Tensor) -> float:
    """Fraction of non-zero entries."""
    return float(torch.count_nonzero(weight)) / weight.numel() if weight.numel() else 0.0


def _packed_weights(module: nn.Module) -> list[torch.Tensor]:
    """Weights held outside `nn.Parameter`s, as torch's quantized modules do (`.weight()`)."""
    found = []
    for attr in ("weight", "bias"):
        getter = getattr(type(module), attr, None)
        if callable(getter) and not isinstance(getter, property):
            value = getattr(module, attr)()
            if isinstance(value, torch.Tensor):
                found.append(value.dequantize() if value.is_quantized else value)
    return found


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The learnable tensors a module owns directly (not its children's)."""
    own = [p for p in module.parameters(recurse=False)]
    return own if own else _packed_weights(module)


def count_params(model: nn.Module) -> ParamCount:
    """Count every learnable value once, even when a tensor is shared by several modules."""
    seen: set[int] = set()
    total = nonzero = 0
    for module in model.modules():
        for t in module_tensors(module):
            if id(t) in seen:
                continue
            seen.add(id(t))
            total += t.numel()
            nonzero += int(torch.count_nonzero(t.detach()))
    return ParamCount(total=total, nonzero=nonzero)
