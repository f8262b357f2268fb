"""MobileNetV2.

Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018, Table 2: a 3×3 conv with 32 channels, 17 inverted residual blocks (expansion t, output
channels c, n repeats, stride s of the first), a 1×1 conv to 1280 channels, global average pool and
a linear classifier.

`width_mult` scales every layer's channels to the nearest multiple of 8 (`make_divisible`, as in
the reference code), except the last conv, which only grows (1280·max(1, width_mult)): the paper
keeps it for multipliers below one. At 224×224 and 1000 classes this is 3.50M parameters and
300M multiply-adds (the paper's Table 3 lists 3.4M and 300M).

Small images: as `mobilenet_v1`, inputs under 96 pixels get a stride-1 stem, so a 32×32 CIFAR
image is downsampled 16× (not 32×) and still ends on a 2×2 map.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import InvertedResidual, conv_norm_act, make_divisible
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_float, check_positive_int, register

# (expansion t, output channels c, repeats n, stride s of the first), the paper's Table 2.
SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
SMALL_INPUT = 96  # inputs below this many pixels get a stride-1 stem


class MobileNetV2(nn.Module):
    """MobileNetV2 with width multiplier `width_mult` for `input_size`² RGB images."""

    def __init__(
        self,
        num_classes: int = 10,
        width_mult: float = 1.0,
        input_size: int = 32,
        stem_stride: int = 1,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        self.input_shape = (3, input_size, input_size)
        self.num_classes = num_classes
        self.width_mult = width_mult

        in_chs = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = conv_norm_act(
            3, in_chs, 3, stem_stride, norm_layer=norm_layer, act_layer=act_layer
        )
        blocks = []
        for t, c, n, s in SETTINGS:
            out_chs = make_divisible(c * width_mult)
            for i in range(n):
                blocks.append(
                    InvertedResidual(
                        in_chs,
                        out_chs,
                        s if i == 0 else 1,
                        t,
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        last = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        self.head = conv_norm_act(in_chs, last, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(last, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32w, S/s, S/s) with s the stem stride
        x = self.blocks(x)  # (B, 320w, S/16s, S/16s)
        x = self.flatten(self.pool(self.head(x)))  # (B, 1280·max(1, w))
        return self.fc(x)  # (B, num_classes)


@register(
    "mobilenet_v2",
    dataset="cifar10",
    paper="Sandler et al. 2018",
    description="MobileNetV2 (inverted residuals, linear bottlenecks) with width multiplier",
)
def mobilenet_v2(
    num_classes: int = 10,
    width_mult: float = 1.0,
    input_size: int = 32,
    stem_stride: int | None = None,
) -> MobileNetV2:
    """MobileNetV2 for `input_size`² images (32: CIFAR; 224: the paper's ImageNet setting).

    `stem_stride` defaults to 2, or 1 for inputs under 96 pixels (see the module docstring).
    """
    num_classes = check_positive_int("num_classes", num_classes)
    width_mult = check_positive_float("width_mult", width_mult)
    size = check_positive_int("input_size", input_size)
    if stem_stride is None:
        stem_stride = 1 if size < SMALL_INPUT else 2
    elif stem_stride not in (1, 2) or isinstance(stem_stride, bool):
        raise ConfigError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
    return MobileNetV2(num_classes, width_mult, size, stem_stride)
