"""EfficientNet-B0 with compound scaling, for CIFAR.

Tan, Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019.
The baseline (Table 1) is a 3×3 stem conv, seven stages of MBConv blocks (`InvertedResidual`
with squeeze-and-excitation to a quarter of the block's input width, Swish/SiLU activations;
expansion, kernel, stride, width and repeats below), a 1×1 conv to 1280 channels, global average
pool, dropout 0.2 and a linear classifier. Stochastic depth (drop connect) is left out: it is a
training regularizer, not part of the architecture.

Compound scaling (section 3.3): one coefficient φ scales depth by α^φ, width by β^φ and
resolution by γ^φ with α = 1.2, β = 1.1, γ = 1.15 (α·β²·γ² ≈ 2, so each unit of φ about doubles
the MACs). Repeats become ⌈n·α^φ⌉, widths the multiple of 8 nearest c·β^φ (`make_divisible`,
as the reference code rounds), and the input round(base_size·γ^φ) pixels.

CIFAR adaptation: `base_size` defaults to 32 and, as for `mobilenet_v1`/`mobilenet_v2`, inputs
under 96 pixels get a stride-1 stem, so a 32×32 image ends on a 2×2 map. `base_size=224` with
`num_classes=1000` is the paper's B0 (5.29M parameters, 0.39B multiply-adds).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import InvertedResidual, conv_norm_act, make_divisible
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_int, register

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width and resolution bases, the paper's eq. 3
# (expansion t, kernel k, stride s of the first, output channels c, repeats n), Table 1.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
SE_RATIO = 0.25  # SE squeeze width, as a fraction of the block's input channels
DROPOUT = 0.2
SMALL_INPUT = 96  # inputs below this many pixels get a stride-1 stem


def scaling(phi: float) -> tuple[float, float, float]:
    """(depth, width, resolution) multipliers α^φ, β^φ, γ^φ."""
    return ALPHA**phi, BETA**phi, GAMMA**phi


class EfficientNet(nn.Module):
    """EfficientNet-B0 scaled by depth/width multipliers for `input_size`² RGB images."""

    def __init__(
        self,
        num_classes: int = 10,
        depth_mult: float = 1.0,
        width_mult: float = 1.0,
        input_size: int = 32,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        self.input_shape = (3, input_size, input_size)
        self.num_classes = num_classes

        in_chs = make_divisible(STEM_CHANNELS * width_mult)
        stem_stride = 1 if input_size < SMALL_INPUT else 2
        self.stem = conv_norm_act(
            3, in_chs, 3, stem_stride, norm_layer=norm_layer, act_layer=act_layer
        )
        stages = []
        for t, k, s, c, n in STAGES:
            out_chs = make_divisible(c * width_mult)
            blocks = []
            for i in range(math.ceil(n * depth_mult)):
                blocks.append(
                    InvertedResidual(
                        in_chs,
                        out_chs,
                        s if i == 0 else 1,
                        t,
                        kernel_size=k,
                        se_chs=max(1, int(in_chs * SE_RATIO)),
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        head = make_divisible(HEAD_CHANNELS * width_mult)
        self.head = conv_norm_act(in_chs, head, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(DROPOUT)
        self.fc = nn.Linear(head, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32w, S/s, S/s) with s the stem stride
        x = self.head(self.stages(x))  # (B, 1280w, S/16s, S/16s)
        x = self.dropout(self.flatten(self.pool(x)))  # (B, 1280w)
        return self.fc(x)  # (B, num_classes)


@register(
    "efficientnet",
    dataset="cifar10",
    paper="Tan & Le 2019",
    description="EfficientNet-B0 (MBConv + SE, Swish) with compound scaling phi, CIFAR stem",
)
def efficientnet(num_classes: int = 10, phi: float = 0.0, base_size: int = 32) -> EfficientNet:
    """EfficientNet-B0 scaled by φ = `phi` ≥ 0: depth 1.2^φ, width 1.1^φ, resolution 1.15^φ of
    `base_size` pixels (32: CIFAR; 224: the paper's ImageNet B0)."""
    num_classes = check_positive_int("num_classes", num_classes)
    base_size = check_positive_int("base_size", base_size)
    if (
        isinstance(phi, bool)
        or not isinstance(phi, numbers.Real)
        or not 0 <= float(phi) < float("inf")
    ):
        raise ConfigError(f"phi must be a number ≥ 0 (0: the B0 baseline), got {phi!r}")
    depth, width, resolution = scaling(float(phi))
    size = round(base_size * resolution)
    return EfficientNet(num_classes, depth, width, size)
