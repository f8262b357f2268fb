"""Removing torch.nn.utils.parametrize parametrizations without breaking deep copies."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


def remove_parametrizations(module: nn.Module, tensors: list[str]) -> None:
    """`parametrize.remove_parametrizations(..., leave_parametrized=True)` without its flaw: it
    deletes properties from the injected class, which deepcopies share, and so breaks every
    copy of the model. When `tensors` are all the module's parametrizations, the class is swapped
    back instead and left alone; the original Parameter objects are kept (optimizers holding
    them stay valid)."""
    if sorted(module.parametrizations) != sorted(tensors):  # more than ours: torch's way
        with torch.no_grad():
            for tensor in tensors:
                parametrize.remove_parametrizations(module, tensor, leave_parametrized=True)
        return
    originals = {}
    with torch.no_grad():
        for tensor in ("weight", "bias"):
            if tensor in tensors:
                value = getattr(module, tensor).detach()
                original = module.parametrizations[tensor].original
                original.set_(value)
                originals[tensor] = original
    module.__class__ = type(module).__bases__[0]
    del module._modules["parametrizations"]
    module._parameters = {**originals, **module._parameters}
