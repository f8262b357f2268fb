"""An Xception-style network for CIFAR.

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017, Fig. 5: an
entry flow of residual blocks that each run two ReLU → separable conv → BN units and a 3×3
stride-2 max pool, with a 1×1 stride-2 conv + BN shortcut; a middle flow of residual blocks of
three such units at constant width; an exit flow of separable convs, global average pool and a
linear classifier. The separable convs have nothing between depthwise and pointwise parts
(section 4.7: no intermediate activation trains best).

Scaled down for 3×32×32 inputs: a stride-1 3×3 stem conv (32 channels), three entry blocks to
64/128/256 channels (32×32 → 4×4), `middle_blocks` middle blocks at 256 (the paper: 8 at 728),
and one exit separable conv to 512 channels (the paper: 1536 and 2048). `width_mult` scales every
width (rounded, at least 1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import Tensor, nn

from slimkit.nn.blocks import DepthwiseSeparable, conv_norm_act
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_float, check_positive_int, register

STEM_CHANNELS = 32
ENTRY_CHANNELS = (64, 128, 256)
MIDDLE_CHANNELS = 256
EXIT_CHANNELS = 512


def separable(
    in_chs: int, out_chs: int, relu_first: bool, norm_layer: Callable[..., nn.Module]
) -> nn.Sequential:
    """[ReLU →] 3×3 depthwise → 1×1 pointwise → BN: one unit of the paper's Fig. 5."""
    return nn.Sequential(
        OrderedDict(
            act=nn.ReLU() if relu_first else nn.Identity(),
            sep=DepthwiseSeparable(
                in_chs, out_chs, norm_layer=norm_layer, act_layer=None, dw_norm=False, dw_act=False
            ),
        )
    )


class XceptionBlock(nn.Module):
    """`reps` separable units, then a 3×3 stride-2 max pool when `stride` is 2, plus shortcut:
    identity when the shape is kept, else 1×1 conv (stride `stride`) + BN."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        reps: int,
        stride: int = 1,
        *,
        relu_first: bool = True,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        units = []
        for i in range(reps):
            units.append(
                separable(in_chs if i == 0 else out_chs, out_chs, relu_first or i > 0, norm_layer)
            )
        self.units = nn.Sequential(*units)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = conv_norm_act(
                in_chs, out_chs, 1, stride, norm_layer=norm_layer, act_layer=None
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.units(x)) + self.shortcut(x)  # (B, out, H/s, W/s)


class Xception(nn.Module):
    """Xception-style CIFAR net: stem → 3 entry blocks → middle blocks → exit separable conv."""

    def __init__(
        self,
        num_classes: int = 10,
        middle_blocks: int = 4,
        width_mult: float = 1.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        middle_blocks = check_positive_int("middle_blocks", middle_blocks)
        width_mult = check_positive_float("width_mult", width_mult)
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes

        def ch(c: int) -> int:
            return max(1, round(c * width_mult))

        in_chs = ch(STEM_CHANNELS)
        self.stem = conv_norm_act(3, in_chs, 3, norm_layer=norm_layer)
        entry = []
        for i, c in enumerate(ENTRY_CHANNELS):
            # The first block follows the stem's ReLU, so it starts with a conv (as in Fig. 5).
            entry.append(
                XceptionBlock(in_chs, ch(c), 2, 2, relu_first=i > 0, norm_layer=norm_layer)
            )
            in_chs = ch(c)
        self.entry = nn.Sequential(*entry)
        middle = []
        for _ in range(middle_blocks):
            middle.append(XceptionBlock(in_chs, ch(MIDDLE_CHANNELS), 3, norm_layer=norm_layer))
            in_chs = ch(MIDDLE_CHANNELS)
        self.middle = nn.Sequential(*middle)
        self.exit = nn.Sequential(separable(in_chs, ch(EXIT_CHANNELS), True, norm_layer), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch(EXIT_CHANNELS), num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32, 32, 32)
        x = self.middle(self.entry(x))  # (B, 256, 4, 4)
        x = self.exit(x)  # (B, 512, 4, 4)
        return self.fc(self.flatten(self.pool(x)))  # (B, num_classes)


@register(
    "xception",
    dataset="cifar10",
    paper="Chollet 2017",
    description="Xception-style residual net of separable convs, scaled down for CIFAR",
)
def xception(num_classes: int = 10, middle_blocks: int = 4, width_mult: float = 1.0) -> Xception:
    """Xception-style CIFAR net with `middle_blocks` middle-flow blocks at `width_mult`×."""
    return Xception(num_classes, middle_blocks, width_mult)
