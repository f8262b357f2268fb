"""MobileNetV1.

Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam, "MobileNets: Efficient
Convolutional Neural Networks for Mobile Vision Applications", arXiv:1704.04861, 2017.

A 3×3 stride-2 conv with 32 channels, 13 depthwise-separable blocks (3×3 depthwise conv-BN-ReLU,
then 1×1 pointwise conv-BN-ReLU), global average pool and a linear classifier. `alpha` (the
width multiplier) scales every layer's channels to int(c·alpha), at least 1; `rho` (the
resolution multiplier) sets the input size to round(224·rho). At 224×224 and alpha =
1.0/0.75/0.5/0.25 this is 569/325/149/41 M multiply-adds and 4.23/2.59/1.33/0.47 M parameters
(the paper's Table 6 rounds these to 4.2/2.6/1.3/0.5 M).

Small images: `input_size` overrides the resolution (e.g. 32 for CIFAR). Below 96 pixels the stem
conv uses stride 1 instead of 2, so the network downsamples 16× rather than 32× and a 32×32 input
still ends on a 2×2 map rather than a single pixel (the usual CIFAR adaptation). `stem_stride`
forces either choice.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import DepthwiseSeparable, conv_norm_act
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_float, check_positive_int, register

# (output channels, stride) of the 13 depthwise-separable blocks, from the paper's Table 1.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)
STEM_CHANNELS = 32
SMALL_INPUT = 96  # inputs below this many pixels get a stride-1 stem


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier `alpha` for `input_size`² RGB images."""

    def __init__(
        self,
        num_classes: int = 1000,
        alpha: float = 1.0,
        input_size: int = 224,
        stem_stride: int = 2,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.input_shape = (3, input_size, input_size)
        self.num_classes = num_classes
        self.alpha = alpha

        def ch(c: int) -> int:
            return max(1, int(c * alpha))

        self.stem = conv_norm_act(
            3, ch(STEM_CHANNELS), 3, stem_stride, norm_layer=norm_layer, act_layer=act_layer
        )
        blocks = []
        in_chs = ch(STEM_CHANNELS)
        for out_c, stride in BLOCKS:
            blocks.append(
                DepthwiseSeparable(
                    in_chs, ch(out_c), stride, norm_layer=norm_layer, act_layer=act_layer
                )
            )
            in_chs = ch(out_c)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_chs, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32α, S/s, S/s) with s the stem stride
        x = self.blocks(x)  # (B, 1024α, S/16s, S/16s)
        x = self.flatten(self.pool(x))  # (B, 1024α)
        return self.fc(x)  # (B, num_classes)


@register(
    "mobilenet_v1",
    dataset="imagenet",
    paper="Howard et al. 2017",
    description="MobileNetV1 with width multiplier alpha and resolution multiplier rho",
)
def mobilenet_v1(
    num_classes: int = 1000,
    alpha: float = 1.0,
    rho: float = 1.0,
    input_size: int | None = None,
    stem_stride: int | None = None,
) -> MobileNetV1:
    """MobileNetV1; input size round(224·rho) unless `input_size` is given (not both).

    `stem_stride` defaults to 2, or 1 for inputs under 96 pixels (see the module docstring).
    """
    num_classes = check_positive_int("num_classes", num_classes)
    alpha = check_positive_float("alpha", alpha)
    rho = check_positive_float("rho", rho)
    if input_size is None:
        size = round(224 * rho)
        if size < 1:
            raise ConfigError(f"rho={rho} gives an input size below 1 pixel; use rho ≥ 1/224")
    elif rho != 1.0:
        raise ConfigError(
            f"give mobilenet_v1 rho or input_size, not both (rho={rho}, input_size={input_size})"
        )
    else:
        size = check_positive_int("input_size", input_size)
    if stem_stride is None:
        stem_stride = 1 if size < SMALL_INPUT else 2
    elif stem_stride not in (1, 2) or isinstance(stem_stride, bool):
        raise ConfigError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
    return MobileNetV1(num_classes, alpha=alpha, input_size=size, stem_stride=stem_stride)
