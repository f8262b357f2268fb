"""ShuffleNet v1 and v2 for CIFAR.

v1: Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", CVPR 2018, Table 1: a 24-channel stem, three stages of 4/8/4 `ShuffleUnit`s
(the first of each stride 2) whose width depends on the group count g (240/480/960 for g = 3),
global average pool and a linear classifier. `width_mult` is the paper's "ShuffleNet s×": every
width times s, rounded to a multiple of 4g (stages) or g (stem) so the bottleneck (a quarter of a
stage's width) and each branch split into g groups.

v2: Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018, Table 5: a 24-channel stem, three stages of 4/8/4 `ShuffleV2Unit`s, a 1×1
conv (1024 or 2048 channels), pool and classifier, at the paper's four widths 0.5×/1×/1.5×/2×.

CIFAR adaptation (32×32 inputs): the stem is a stride-1 3×3 conv with no max pool, so the stages
run at 16×16, 8×8 and 4×4 instead of 28, 14 and 7.

Channel pruning of v1: the shuffle deals the g channels at one offset of the bottleneck's groups
into consecutive positions of the second group conv's input. When m/g is not a multiple of g
(m = 60, g = 3: 20 per group) some of those runs straddle a group boundary, so removing any offset
would regroup that conv's inputs; `slimkit.graph` then keeps the bottleneck whole and only the
stage widths prune (about half the parameters and MACs at ratio 0.5, against a quarter for g = 2).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import ShuffleUnit, ShuffleV2Unit, conv_norm_act
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_positive_float, check_positive_int, register

REPEATS = (4, 8, 4)  # units per stage, both versions
STEM_CHANNELS = 24
V1_WIDTHS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # stage-2 width by g, the paper's Table 1
V2_WIDTHS = {  # stage widths and final conv by multiplier, the paper's Table 5
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def _round_to(value: float, multiple: int) -> int:
    """`value` rounded half up to a multiple of `multiple`, at least `multiple`."""
    return max(multiple, int(value / multiple + 0.5) * multiple)


class ShuffleNetV1(nn.Module):
    """ShuffleNet with `groups` groups at `width_mult`× for 3×32×32 inputs."""

    def __init__(
        self,
        num_classes: int = 10,
        groups: int = 3,
        width_mult: float = 1.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        width_mult = check_positive_float("width_mult", width_mult)
        if groups not in V1_WIDTHS or isinstance(groups, bool):
            raise ConfigError(
                f"groups must be one of {', '.join(map(str, V1_WIDTHS))} (ShuffleNet Table 1), "
                f"got {groups!r}"
            )
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes

        in_chs = _round_to(STEM_CHANNELS * width_mult, groups)
        self.stem = conv_norm_act(3, in_chs, 3, norm_layer=norm_layer, act_layer=act_layer)
        stages = []
        for i, n in enumerate(REPEATS):
            out_chs = _round_to(V1_WIDTHS[groups] * 2**i * width_mult, 4 * groups)
            units = []
            for j in range(n):
                units.append(
                    ShuffleUnit(
                        in_chs,
                        out_chs,
                        out_chs // 4,  # bottleneck: a quarter of the output (paper, 3.3)
                        groups,
                        2 if j == 0 else 1,
                        first_groups=1 if i == j == 0 else None,  # the stem is too narrow
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_chs, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 24s, 32, 32)
        x = self.stages(x)  # (B, 4·c2, 4, 4)
        return self.fc(self.flatten(self.pool(x)))  # (B, num_classes)


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 at `width_mult`× (0.5, 1, 1.5 or 2) for 3×32×32 inputs."""

    def __init__(
        self,
        num_classes: int = 10,
        width_mult: float = 1.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        if isinstance(width_mult, bool) or width_mult not in V2_WIDTHS:
            raise ConfigError(
                f"width_mult must be one of {', '.join(map(str, V2_WIDTHS))} "
                f"(ShuffleNet V2 Table 5), got {width_mult!r}"
            )
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes

        *widths, last = V2_WIDTHS[width_mult]
        self.stem = conv_norm_act(3, STEM_CHANNELS, 3, norm_layer=norm_layer, act_layer=act_layer)
        in_chs = STEM_CHANNELS
        stages = []
        for out_chs, n in zip(widths, REPEATS, strict=True):
            units = []
            for j in range(n):
                units.append(
                    ShuffleV2Unit(
                        in_chs,
                        out_chs,
                        2 if j == 0 else 1,
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.head = conv_norm_act(in_chs, last, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(last, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 24, 32, 32)
        x = self.head(self.stages(x))  # (B, 1024, 4, 4)
        return self.fc(self.flatten(self.pool(x)))  # (B, num_classes)


@register(
    "shufflenet_v1",
    dataset="cifar10",
    paper="Zhang et al. 2018",
    description="ShuffleNet 1× (g=3): pointwise group convs + channel shuffle, CIFAR stem",
)
def shufflenet_v1(num_classes: int = 10, groups: int = 3, width_mult: float = 1.0) -> ShuffleNetV1:
    """ShuffleNet v1 with `groups` ∈ {1, 2, 3, 4, 8} at `width_mult`× ("ShuffleNet s×")."""
    return ShuffleNetV1(num_classes, groups, width_mult)


@register(
    "shufflenet_v2",
    dataset="cifar10",
    paper="Ma et al. 2018",
    description="ShuffleNet V2 1×: channel split, concat and shuffle, CIFAR stem",
)
def shufflenet_v2(num_classes: int = 10, width_mult: float = 1.0) -> ShuffleNetV2:
    """ShuffleNet V2 at `width_mult` ∈ {0.5, 1.0, 1.5, 2.0}."""
    return ShuffleNetV2(num_classes, width_mult)
