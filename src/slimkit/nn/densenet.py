"""A small DenseNet-BC for CIFAR.

Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks", CVPR 2017,
sections 3 and 4: a 3×3 stem conv to 2k channels, three dense blocks of (depth − 4)/6
bottleneck layers (1×1 conv to 4k, 3×3 conv to k = `growth` new channels, concatenated) on
32×32, 16×16 and 8×8 maps, joined by transitions (1×1 conv compressing to ⌊θ·C⌋ channels,
θ = 0.5, then a 2×2 average pool), global average pool and a linear classifier.

Default depth 22 (3 layers per block, ~30M MACs) rather than the paper's 100+ to keep the zoo
fast. Layers are conv-BN-ReLU rather than the paper's BN-ReLU-conv so that every BatchNorm folds
into the conv before it (see `slimkit.nn.blocks.DenseLayer`, which offers both orders).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import DenseBlock, conv_norm_act
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_int, register

COMPRESSION = 0.5  # θ of the transitions (the "C" of DenseNet-BC)
BN_SIZE = 4  # bottleneck width in units of the growth rate (the "B")


def transition(in_chs: int, out_chs: int, norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """1×1 conv-BN-ReLU to `out_chs` → 2×2 average pool."""
    return nn.Sequential(
        OrderedDict(
            conv=conv_norm_act(in_chs, out_chs, 1, norm_layer=norm_layer),
            pool=nn.AvgPool2d(2),
        )
    )


class DenseNetBC(nn.Module):
    """DenseNet-BC of `depth` = 6n + 4 layers and growth rate `growth` for 3×32×32 inputs."""

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 22,
        growth: int = 12,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        depth = check_positive_int("depth", depth)
        growth = check_positive_int("growth", growth)
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(
                f"DenseNet-BC depth must be 6n+4 with n ≥ 1 (10, 16, 22, 40, 100…), got {depth}"
            )
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes
        n = (depth - 4) // 6  # bottleneck layers (two convs each) per block

        chs = 2 * growth
        self.stem = conv_norm_act(3, chs, 3, norm_layer=norm_layer)
        stages: list[nn.Module] = []
        for i in range(3):
            block = DenseBlock(chs, n, growth, BN_SIZE, norm_layer=norm_layer)
            stages.append(block)
            chs = block.out_chs
            if i < 2:
                stages.append(transition(chs, int(COMPRESSION * chs), norm_layer))
                chs = int(COMPRESSION * chs)
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(chs, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(self.stem(x))  # (B, C, 8, 8)
        return self.fc(self.flatten(self.pool(x)))  # (B, num_classes)


@register(
    "densenet",
    dataset="cifar10",
    paper="Huang et al. 2017",
    description="DenseNet-BC-22 (k=12): dense blocks of concatenated bottleneck layers",
)
def densenet(num_classes: int = 10, depth: int = 22, growth: int = 12) -> DenseNetBC:
    """DenseNet-BC for CIFAR with `depth` = 6n + 4 and growth rate `growth`."""
    return DenseNetBC(num_classes, depth, growth)
