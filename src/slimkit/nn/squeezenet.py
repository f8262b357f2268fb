"""SqueezeNet for CIFAR, with or without simple bypass.

Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", arXiv:1602.07360, 2016: a conv, eight `Fire` modules
(squeeze 16…64, expand 64…256 + 64…256) with 3×3 stride-2 max pools between them, dropout 0.5, a
1×1 conv to the classes, ReLU and global average pool — no fully connected layer. As in the paper
the convs have biases and no BatchNorm.

`version` "1.1" (default) is the authors' SqueezeNet v1.1 (64-filter 3×3 first conv, pools after
conv1, fire3 and fire5: 2.4× less computation at the same accuracy); "1.0" is the paper's
Table 1 (96 filters, pools after conv1, fire4 and fire8). `bypass` adds the paper's simple bypass
(section 6): identity shortcuts around fire3, 5, 7 and 9, whose input and output widths match.

CIFAR adaptation: the first conv is 3×3 with stride 1 (the paper's is 7×7 or 3×3 with stride 2),
so the pools take 32×32 to 16, 8 and 4.
"""

from __future__ import annotations

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.blocks import Fire
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.zoo import check_choice, check_positive_int, register

# (squeeze, expand1x1, expand3x3) of fire2…fire9, the paper's Table 1.
FIRES: tuple[tuple[int, int, int], ...] = (
    (16, 64, 64),
    (16, 64, 64),
    (32, 128, 128),
    (32, 128, 128),
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
)
VERSIONS = {"1.0": (96, (4, 8)), "1.1": (64, (3, 5))}  # conv1 width, fires followed by a pool
BYPASS = (3, 5, 7, 9)  # fires with a simple bypass


class SqueezeNet(nn.Module):
    """SqueezeNet `version` for 3×32×32 inputs; `bypass` adds identity shortcuts."""

    def __init__(self, num_classes: int = 10, version: str = "1.1", bypass: bool = False) -> None:
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        version = check_choice("version", version, tuple(VERSIONS))
        self.input_shape = (3, 32, 32)
        self.num_classes = num_classes
        if not isinstance(bypass, bool):
            raise ConfigError(f"bypass must be True or False, got {bypass!r}")
        self.bypass = bypass

        stem_chs, pool_after = VERSIONS[version]
        self.conv1 = nn.Conv2d(3, stem_chs, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_chs = stem_chs
        self.fires = nn.ModuleDict()  # fire2 … fire9, named as in the paper
        self.pools = nn.ModuleDict()  # the max pools after some of them, by fire name
        for i, (s, e1, e3) in enumerate(FIRES, start=2):
            self.fires[f"fire{i}"] = Fire(in_chs, s, e1, e3)
            in_chs = e1 + e3
            if i in pool_after:
                self.pools[f"fire{i}"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.dropout = nn.Dropout(0.5)
        self.conv10 = nn.Conv2d(in_chs, num_classes, 1)
        self.act10 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.act1(self.conv1(x)))  # (B, 64 or 96, 16, 16)
        for name, fire in self.fires.items():
            out = fire(x)
            x = out + x if self.bypass and int(name[4:]) in BYPASS else out
            if name in self.pools:
                x = self.pools[name](x)
        x = self.act10(self.conv10(self.dropout(x)))  # (B, num_classes, 4, 4)
        return self.flatten(self.pool(x))  # (B, num_classes)


@register(
    "squeezenet",
    dataset="cifar10",
    paper="Iandola et al. 2016",
    description="SqueezeNet v1.1 of Fire modules (squeeze 1×1, expand 1×1 + 3×3), CIFAR stem",
)
def squeezenet(num_classes: int = 10, version: str = "1.1", bypass: bool = False) -> SqueezeNet:
    """SqueezeNet `version` "1.1" or "1.0"; `bypass=True` is `squeezenet_bypass`."""
    return SqueezeNet(num_classes, version, bypass)


@register(
    "squeezenet_bypass",
    dataset="cifar10",
    paper="Iandola et al. 2016",
    description="SqueezeNet v1.1 with simple bypass (identity around fire3/5/7/9), CIFAR stem",
)
def squeezenet_bypass(num_classes: int = 10, version: str = "1.1") -> SqueezeNet:
    """SqueezeNet with the paper's simple bypass connections."""
    return SqueezeNet(num_classes, version, bypass=True)
