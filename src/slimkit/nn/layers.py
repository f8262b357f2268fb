"""Initialization shared by the model zoo (the blocks themselves are in slimkit.nn.blocks)."""

from __future__ import annotations

from torch import nn


def init_kaiming_(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out) and linears (fan_in); zero biases; norms at 1 and 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
