"""Small building blocks shared by the model zoo.

Blocks take their layer types as arguments (`norm_layer`, `act_layer`) so a model can swap, say,
BatchNorm for GroupNorm without rewriting the block. A disabled part is `nn.Identity`, so every
block's `forward` reads the same whether or not it has a norm or an activation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

LayerFactory = Callable[..., nn.Module]


def conv_bn_act(
    in_chs: int,
    out_chs: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    *,
    bias: bool = False,
    norm_layer: LayerFactory | None = nn.BatchNorm2d,
    act_layer: LayerFactory | None = nn.ReLU,
) -> nn.Sequential:
    """Conv2d ("same" padding for odd kernels) → norm → activation, as a named Sequential.

    The children are always `conv`, `bn` and `act` (the last two `nn.Identity` when disabled), so
    pruning and fusion code can find them by name. The conv has no bias by default because the
    norm that follows it has one.
    """
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(
                in_chs,
                out_chs,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=bias,
            ),
            bn=norm_layer(out_chs) if norm_layer is not None else nn.Identity(),
            act=act_layer() if act_layer is not None else nn.Identity(),
        )
    )


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
