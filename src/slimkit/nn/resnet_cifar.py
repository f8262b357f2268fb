"""CIFAR ResNets (ResNet-20/32/44/56/110).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2: a
3×3 stem conv, three stages of n BasicBlocks at width/2·width/4·width channels (16/32/64 by
default) on 32/16/8 maps, global average pool and a linear classifier; depth = 6n + 2.

Shortcuts where the shape changes:
- "B" (default): 1×1 conv + BN projection. Plain modules only, so pruning tools see every tensor.
- "A": the paper's parameter-free option: subsample by the stride and zero-pad the new channels
  (ResNet-20 ≈ 0.27M parameters, ResNet-56 ≈ 0.85M, as in the paper's Table 6).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import conv_norm_act
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_choice, check_positive_int, register

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option-A shortcut: keep every `stride`-th pixel, zero-pad channels up to `out_chs`."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_chs - in_chs  # zero channels to add (≥ 0)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H/s, W/s)
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))  # (B, C + extra, H/s, W/s)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra={self.extra}"


def projection(
    in_chs: int, out_chs: int, stride: int, norm_layer: Callable[..., nn.Module]
) -> nn.Sequential:
    """Option-B shortcut: 1×1 conv (no bias) + norm."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False),
            bn=norm_layer(out_chs),
        )
    )


class BasicBlock(nn.Module):
    """3×3 conv-BN-ReLU → 3×3 conv-BN, plus shortcut, → ReLU."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        shortcut: str = "B",
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(out_chs)
        self.act1 = act_layer()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = norm_layer(out_chs)
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_chs, out_chs, stride)
        else:
            self.shortcut = projection(in_chs, out_chs, stride, norm_layer)
        self.act2 = act_layer()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (B, out, H/s, W/s)
        out = self.bn2(self.conv2(out))  # (B, out, H/s, W/s)
        return self.act2(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet for 3×32×32 inputs with `(depth - 2) / 6` BasicBlocks per stage."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        shortcut: str = "B",
        width: int = 16,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        depth = check_positive_int("depth", depth)
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ConfigError(
                f"CIFAR ResNet depth must be 6n+2 with n ≥ 1 (8, 14, 20, 32, 56…), got {depth}"
            )
        num_classes = check_positive_int("num_classes", num_classes)
        width = check_positive_int("width", width)
        shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes
        self.depth = depth

        n = (depth - 2) // 6
        widths = (width, 2 * width, 4 * width)
        self.stem = conv_norm_act(3, width, 3, norm_layer=norm_layer, act_layer=act_layer)
        stages = []
        in_chs = width
        for i, out_chs in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_chs, out_chs, stride, shortcut, norm_layer, act_layer))
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_chs, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, w, 32, 32)
        x = self.stages(x)  # (B, 4w, 8, 8)
        x = self.flatten(self.pool(x))  # (B, 4w)
        return self.fc(x)  # (B, num_classes)


def resnet_cifar(
    depth: int, num_classes: int = 10, shortcut: str = "B", width: int = 16
) -> ResNetCifar:
    """Build a CIFAR ResNet of any depth 6n+2 (ConfigError otherwise)."""
    return ResNetCifar(depth, num_classes=num_classes, shortcut=shortcut, width=width)


def _registered(depth: int) -> Callable[..., ResNetCifar]:
    """Make and register the zoo factory `resnet{depth}`."""

    def factory(num_classes: int = 10, shortcut: str = "B", width: int = 16) -> ResNetCifar:
        return resnet_cifar(depth, num_classes=num_classes, shortcut=shortcut, width=width)

    n = (depth - 2) // 6
    factory.__name__ = factory.__qualname__ = f"resnet{depth}"
    factory.__doc__ = f"ResNet-{depth} for CIFAR ({n} BasicBlocks per stage)."
    return register(
        f"resnet{depth}",
        dataset="cifar10",
        paper="He et al. 2016",
        description=f"CIFAR ResNet-{depth}: 3 stages of {n} BasicBlocks at 16/32/64 channels",
    )(factory)


resnet20 = _registered(20)
resnet32 = _registered(32)
resnet44 = _registered(44)
resnet56 = _registered(56)
resnet110 = _registered(110)
