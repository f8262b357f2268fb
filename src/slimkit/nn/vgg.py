"""VGG with BatchNorm for CIFAR (VGG-11, VGG-16).

Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR
2015, in the CIFAR form used by Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017 and
Liu et al., "Learning Efficient Convolutional Networks through Network Slimming", ICCV 2017: every
3×3 conv is followed by BatchNorm and ReLU, five 2×2 max-pools take 32×32 down to 1×1, and a
single linear layer classifies the 512 channels left.

Convs have no bias: the BatchNorm after each one has a shift of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from slimkit.nn.blocks import conv_norm_act
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_float, check_positive_int, register

M = "M"  # a 2×2 max-pool in a cfg
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "vgg16": [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
}


def scale_channels(channels: int, width_mult: float) -> int:
    """round(channels · width_mult), at least 1."""
    return max(1, round(channels * width_mult))


class VGG(nn.Module):
    """Conv-BN-ReLU stack from `cfg` (ints are conv widths, "M" a max-pool) → flatten → linear."""

    def __init__(
        self,
        cfg: Sequence[int | str],
        num_classes: int = 10,
        width_mult: float = 1.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        width_mult = check_positive_float("width_mult", width_mult)
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes

        layers: list[nn.Module] = []
        in_chs = 3
        for v in cfg:
            if v == M:
                layers.append(nn.MaxPool2d(2))
            else:
                out_chs = scale_channels(int(v), width_mult)
                layers.append(
                    conv_norm_act(in_chs, out_chs, 3, norm_layer=norm_layer, act_layer=act_layer)
                )
                in_chs = out_chs
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_chs, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 512·w, 1, 1) after five pools of a 32×32 input
        x = self.flatten(x)  # (B, 512·w)
        return self.fc(x)  # (B, num_classes)


@register(
    "vgg11",
    dataset="cifar10",
    paper="Simonyan & Zisserman 2015",
    description="VGG-11 with BatchNorm, CIFAR variant (one linear classifier)",
)
def vgg11(num_classes: int = 10, width_mult: float = 1.0) -> VGG:
    return VGG(CFGS["vgg11"], num_classes=num_classes, width_mult=width_mult)


@register(
    "vgg16",
    dataset="cifar10",
    paper="Simonyan & Zisserman 2015",
    description="VGG-16 with BatchNorm, CIFAR variant (one linear classifier)",
)
def vgg16(num_classes: int = 10, width_mult: float = 1.0) -> VGG:
    return VGG(CFGS["vgg16"], num_classes=num_classes, width_mult=width_mult)
