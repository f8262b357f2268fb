"""A model compiled by torch.compile (inductor) for inference, as one nn.Module.

Freezing is on: inductor treats the weights as constants, folds them into the kernels and
pre-packs them for oneDNN, which is what makes compiled int8 fast on CPU. Shapes are static
(`dynamic=False`): each new batch size compiles once, then every call of that shape reuses it,
which is the deployment pattern and keeps the kernels specialized.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError


class CompiledModel(nn.Module):
    """`model` under torch.compile, inference only; compiles on the first call per shape."""

    def __init__(self, model: nn.Module, *, freezing: bool = True) -> None:
        super().__init__()
        self.model = model
        self.freezing = freezing
        for attr in ("input_shape", "num_classes"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self._compiled = None
        self.training = False

    def forward(self, x: Tensor) -> Tensor:
        if self._compiled is None:
            self._compiled = torch.compile(self.model, dynamic=False)
        with torch._inductor.config.patch(freezing=self.freezing), torch.no_grad():
            return self._compiled(x)

    def train(self, mode: bool = True) -> CompiledModel:
        if mode:
            raise ConfigError("a compiled model is for inference: train the original model")
        return self  # exported graphs inside have no train/eval switch; nothing to change
