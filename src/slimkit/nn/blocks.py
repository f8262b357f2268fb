"""Building blocks of efficient CNNs, each as in the paper that introduced it.

- `depthwise_conv`, `pointwise_conv`, `DepthwiseSeparable`: Howard et al., "MobileNets: Efficient
  Convolutional Neural Networks for Mobile Vision Applications", arXiv:1704.04861, 2017 (and
  Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017).
- `channel_shuffle`, `ChannelShuffle`, `ShuffleUnit`: Zhang, Zhou, Lin, Sun, "ShuffleNet: An
  Extremely Efficient Convolutional Neural Network for Mobile Devices", CVPR 2018.
- `ShuffleV2Unit`: Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design", ECCV 2018.
- `Fire`: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
  <0.5MB model size", arXiv:1602.07360, 2016.
- `InvertedResidual`: Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and
  Linear Bottlenecks", CVPR 2018 (with the squeeze-and-excitation of Tan & Le, "EfficientNet:
  Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019, as MBConv).
- `dilated_conv`: Yu, Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016.
- `asymmetric_conv`: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
  Architecture for Computer Vision" (Inception-v3), CVPR 2016, section 3.2.
- `SqueezeExcitation`: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018.
- `DenseLayer`, `DenseBlock`: Huang, Liu, van der Maaten, Weinberger, "Densely Connected
  Convolutional Networks", CVPR 2017.

Every block is plain torch.nn layers and tensor ops that `torch.fx` traces, so channel pruning,
BatchNorm folding and ONNX export see every layer. Conv-norm-act units are named Sequentials with
children `conv`, `bn`, `act`; disabled parts are Identity.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError, ShapeError
from slimkit.nn.zoo import check_positive_float, check_positive_int

__all__ = [
    "ChannelShuffle",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparable",
    "Fire",
    "InvertedResidual",
    "ShuffleUnit",
    "ShuffleV2Unit",
    "SqueezeExcitation",
    "asymmetric_conv",
    "channel_shuffle",
    "conv_norm_act",
    "depthwise_conv",
    "dilated_conv",
    "make_divisible",
    "pointwise_conv",
]

LayerFactory = Callable[..., nn.Module]
KernelSize = int | tuple[int, int]


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor`, never below `divisor` nor 10% below
    `value` (the channel rounding of the MobileNetV2 and EfficientNet reference code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _pair(name: str, value: KernelSize) -> tuple[int, int]:
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2:
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return check_positive_int(name, pair[0]), check_positive_int(name, pair[1])


def _check_groups(in_chs: int, out_chs: int, groups: int) -> None:
    if in_chs % groups or out_chs % groups:
        raise ConfigError(
            f"in_chs ({in_chs}) and out_chs ({out_chs}) must both be divisible by groups ({groups})"
        )


def conv_norm_act(
    in_chs: int,
    out_chs: int,
    kernel_size: KernelSize = 3,
    stride: int = 1,
    groups: int = 1,
    dilation: int = 1,
    *,
    bias: bool = False,
    norm_layer: LayerFactory | None = nn.BatchNorm2d,
    act_layer: LayerFactory | None = nn.ReLU,
) -> nn.Sequential:
    """Conv2d → norm → activation, children `conv`, `bn`, `act` (Identity when disabled).

    Rectangular kernels and dilation are allowed: the padding dilation·(k−1)/2 per
    side keeps the map size ("same") for odd kernels at stride 1.
    """
    in_chs = check_positive_int("in_chs", in_chs)
    out_chs = check_positive_int("out_chs", out_chs)
    kh, kw = _pair("kernel_size", kernel_size)
    stride = check_positive_int("stride", stride)
    groups = check_positive_int("groups", groups)
    dilation = check_positive_int("dilation", dilation)
    _check_groups(in_chs, out_chs, groups)
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(
                in_chs,
                out_chs,
                (kh, kw),
                stride=stride,
                padding=(dilation * (kh - 1) // 2, dilation * (kw - 1) // 2),
                dilation=dilation,
                groups=groups,
                bias=bias,
            ),
            bn=norm_layer(out_chs) if norm_layer is not None else nn.Identity(),
            act=act_layer() if act_layer is not None else nn.Identity(),
        )
    )


# --- depthwise, pointwise, depthwise-separable (MobileNet) --------------------------------------


def depthwise_conv(
    chs: int,
    kernel_size: KernelSize = 3,
    stride: int = 1,
    *,
    multiplier: int = 1,
    dilation: int = 1,
    norm_layer: LayerFactory | None = nn.BatchNorm2d,
    act_layer: LayerFactory | None = nn.ReLU,
) -> nn.Sequential:
    """One k×k filter per input channel (groups = chs), `multiplier` outputs per channel.

    Costs k²·chs·multiplier·H'·W' MACs: no mixing across channels, which `pointwise_conv` adds.
    """
    multiplier = check_positive_int("multiplier", multiplier)
    return conv_norm_act(
        chs,
        chs * multiplier,
        kernel_size,
        stride,
        groups=chs,
        dilation=dilation,
        norm_layer=norm_layer,
        act_layer=act_layer,
    )


def pointwise_conv(
    in_chs: int,
    out_chs: int,
    *,
    groups: int = 1,
    norm_layer: LayerFactory | None = nn.BatchNorm2d,
    act_layer: LayerFactory | None = nn.ReLU,
) -> nn.Sequential:
    """1×1 conv: mixes channels at each pixel, in_chs·out_chs/groups·H·W MACs."""
    return conv_norm_act(
        in_chs, out_chs, 1, groups=groups, norm_layer=norm_layer, act_layer=act_layer
    )


class DepthwiseSeparable(nn.Module):
    """k×k depthwise conv-BN-act (`dw`) → 1×1 pointwise conv-BN-act (`pw`).

    Against a standard k×k conv from M to N channels it costs 1/N + 1/k² of the MACs and
    parameters (Howard et al. 2017, section 3.1). `dw_norm=False, dw_act=False` gives Xception's
    separable conv, with nothing between the two convs (Chollet 2017, section 4.7); `act_layer`
    None leaves the output linear.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory | None = nn.ReLU,
        *,
        kernel_size: int = 3,
        dilation: int = 1,
        dw_norm: bool = True,
        dw_act: bool = True,
    ) -> None:
        super().__init__()
        self.dw = depthwise_conv(
            in_chs,
            kernel_size,
            stride,
            dilation=dilation,
            norm_layer=norm_layer if dw_norm else None,
            act_layer=act_layer if dw_act else None,
        )
        self.pw = pointwise_conv(in_chs, out_chs, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))  # (B, in, H/s, W/s) → (B, out, H/s, W/s)


# --- group convolution and channel shuffle (ShuffleNet) -----------------------------------------


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Channel c = g·(C/groups) + i moves to i·groups + g: reshape (B, groups, C/groups, …),
    transpose the two channel axes, flatten them back (Zhang et al. 2018, section 3.1).

    Equal to `torch.nn.ChannelShuffle(groups)`; written with unflatten/transpose/flatten so fx
    tracing, channel pruning and every ONNX opset follow it.
    """
    if isinstance(x, Tensor) and x.size(1) % groups:  # an fx Proxy is not a Tensor: no check
        raise ShapeError(
            f"channel shuffle: {x.size(1)} channels are not divisible by groups ({groups})"
        )
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ChannelShuffle(nn.Module):
    """`channel_shuffle` as a module: lets the next group conv see every group's channels."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = check_positive_int("groups", groups)

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """ShuffleNet unit (Zhang et al. 2018, Fig. 2b/c).

    1×1 group conv-BN-ReLU (`conv1`, to `mid_chs`) → channel shuffle → 3×3 depthwise conv-BN
    (`dw`, stride `stride`) → 1×1 group conv-BN (`conv2`), then ReLU of
    - stride 1: the sum with the input (out_chs = in_chs);
    - stride 2: the concatenation with a 3×3 stride-2 average pool of the input, so `conv2` makes
      out_chs − in_chs channels.
    At stride 1 with c channels and m = mid_chs it costs hw(2cm/g + 9m) MACs (paper, section 3.2).
    `first_groups` sets the groups of `conv1` alone: the paper uses 1 on the first unit, whose
    input is the narrow stem.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        mid_chs: int,
        groups: int,
        stride: int = 1,
        *,
        first_groups: int | None = None,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        groups = check_positive_int("groups", groups)
        g1 = groups if first_groups is None else check_positive_int("first_groups", first_groups)
        if stride not in (1, 2):
            raise ConfigError(f"ShuffleUnit stride must be 1 or 2, got {stride!r}")
        if stride == 1 and out_chs != in_chs:
            raise ConfigError(
                f"a stride-1 ShuffleUnit adds its input: out_chs ({out_chs}) must equal "
                f"in_chs ({in_chs})"
            )
        if stride == 2 and out_chs <= in_chs:
            raise ConfigError(
                f"a stride-2 ShuffleUnit concatenates its input: out_chs ({out_chs}) must exceed "
                f"in_chs ({in_chs})"
            )
        self.stride = stride
        branch_chs = out_chs - in_chs if stride == 2 else out_chs
        if mid_chs % groups or branch_chs % groups or in_chs % g1:
            raise ConfigError(
                f"ShuffleUnit widths must split into groups ({groups}; first_groups {g1}): "
                f"in_chs={in_chs}, mid_chs={mid_chs}, conv2 outputs={branch_chs}"
            )
        self.conv1 = conv_norm_act(
            in_chs, mid_chs, 1, groups=g1, norm_layer=norm_layer, act_layer=act_layer
        )
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.dw = depthwise_conv(mid_chs, 3, stride, norm_layer=norm_layer, act_layer=None)
        self.conv2 = conv_norm_act(
            mid_chs, branch_chs, 1, groups=groups, norm_layer=norm_layer, act_layer=None
        )
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = act_layer()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.dw(self.shuffle(self.conv1(x))))  # (B, out or out − in, H/s, W/s)
        if self.stride == 2:
            return self.act(torch.cat([self.shortcut(x), out], 1))  # (B, out, H/2, W/2)
        return self.act(out + x)  # (B, out, H, W)


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit (Ma et al. 2018, Fig. 3c/d).

    Stride 1: split the channels in two halves, keep the first, run the second through 1×1
    conv-BN-ReLU → 3×3 depthwise conv-BN → 1×1 conv-BN-ReLU (`branch2`), concatenate, shuffle
    with 2 groups. Stride 2: no split; `branch1` (3×3 depthwise stride 2 conv-BN → 1×1 conv-BN-ReLU)
    and `branch2` both read the whole input and make out_chs/2 channels each.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        *,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"ShuffleV2Unit stride must be 1 or 2, got {stride!r}")
        if out_chs % 2 or (stride == 1 and in_chs != out_chs):
            raise ConfigError(
                f"ShuffleV2Unit needs an even out_chs, equal to in_chs at stride 1 "
                f"(in_chs={in_chs}, out_chs={out_chs}, stride={stride})"
            )
        self.stride = stride
        half = out_chs // 2
        branch_in = in_chs if stride == 2 else half
        if stride == 2:
            self.branch1 = nn.Sequential(
                depthwise_conv(in_chs, 3, 2, norm_layer=norm_layer, act_layer=None),
                pointwise_conv(in_chs, half, norm_layer=norm_layer, act_layer=act_layer),
            )
        self.branch2 = nn.Sequential(
            pointwise_conv(branch_in, half, norm_layer=norm_layer, act_layer=act_layer),
            depthwise_conv(half, 3, stride, norm_layer=norm_layer, act_layer=None),
            pointwise_conv(half, half, norm_layer=norm_layer, act_layer=act_layer),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)  # (B, C/2, H, W) each
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)  # (B, out, H/2, W/2)
        return self.shuffle(out)


# --- Fire module (SqueezeNet) -------------------------------------------------------------------


class Fire(nn.Module):
    """Fire module (Iandola et al. 2016, section 3.2): 1×1 squeeze conv to `squeeze_chs` → ReLU,
    then 1×1 (`expand1x1_chs`) and 3×3 (`expand3x3_chs`) expand convs → ReLU, concatenated.

    As in the paper the convs have biases and no norm; with a `norm_layer` they lose the bias.
    Parameters: (in + 1)·s + (s + 1)·e1 + (9s + 1)·e3 without norm.
    """

    def __init__(
        self,
        in_chs: int,
        squeeze_chs: int,
        expand1x1_chs: int,
        expand3x3_chs: int,
        *,
        norm_layer: LayerFactory | None = None,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        for name, value in (
            ("squeeze_chs", squeeze_chs),
            ("expand1x1_chs", expand1x1_chs),
            ("expand3x3_chs", expand3x3_chs),
        ):
            check_positive_int(name, value)
        bias = norm_layer is None
        kwargs = {"bias": bias, "norm_layer": norm_layer, "act_layer": act_layer}
        self.squeeze = conv_norm_act(in_chs, squeeze_chs, 1, **kwargs)
        self.expand1x1 = conv_norm_act(squeeze_chs, expand1x1_chs, 1, **kwargs)
        self.expand3x3 = conv_norm_act(squeeze_chs, expand3x3_chs, 3, **kwargs)
        self.out_chs = expand1x1_chs + expand3x3_chs

    def forward(self, x: Tensor) -> Tensor:
        s = self.squeeze(x)  # (B, s, H, W)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], 1)  # (B, e1 + e3, H, W)


# --- squeeze-and-excitation, inverted residual (MobileNetV2, EfficientNet MBConv) ---------------


class SqueezeExcitation(nn.Module):
    """Channel gate (Hu et al. 2018): global average pool → 1×1 conv to `squeeze_chs` (default
    chs // reduction, at least 1) → act → 1×1 conv back to `chs` → sigmoid, multiplying the input.

    1×1 convs on the pooled map rather than Linear layers: no reshape, so pruning maps the
    channels straight through. Costs 2·chs·squeeze_chs MACs and as many weights plus biases.
    """

    def __init__(
        self,
        chs: int,
        reduction: int = 16,
        *,
        squeeze_chs: int | None = None,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        chs = check_positive_int("chs", chs)
        reduction = check_positive_int("reduction", reduction)
        squeeze = max(1, chs // reduction) if squeeze_chs is None else squeeze_chs
        squeeze = check_positive_int("squeeze_chs", squeeze)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(chs, squeeze, 1)
        self.act = act_layer()
        self.expand = nn.Conv2d(squeeze, chs, 1)
        self.gate = gate_layer()

    def forward(self, x: Tensor) -> Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))  # (B, C, 1, 1)
        return x * s


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (Sandler et al. 2018, Table 1).

    1×1 expand conv-BN-act to round(in·t) channels (`expand`; Identity when t = 1) → k×k
    depthwise conv-BN-act (`dw`, stride `stride`) → optional squeeze-and-excitation (`se`, to
    `se_chs` channels) → 1×1 project conv-BN with no activation (`project`: the linear bottleneck,
    since ReLU on a narrow layer destroys information). The input is added back when stride is 1
    and in_chs == out_chs. Expanded width h = round(in·t): hw·in·h + h'w'·h·(k² + out) MACs.
    `se_chs` > 0 with SiLU activations is EfficientNet's MBConv (Tan & Le 2019).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        expand_ratio: float = 6.0,
        *,
        kernel_size: int = 3,
        se_chs: int = 0,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU6,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"InvertedResidual stride must be 1 or 2, got {stride!r}")
        expand_ratio = check_positive_float("expand_ratio", expand_ratio)
        if expand_ratio < 1:
            raise ConfigError(f"expand_ratio must be ≥ 1 (an expansion), got {expand_ratio}")
        if isinstance(se_chs, bool) or not isinstance(se_chs, int) or se_chs < 0:
            raise ConfigError(f"se_chs must be an integer ≥ 0 (0: no SE), got {se_chs!r}")
        hidden = round(check_positive_int("in_chs", in_chs) * expand_ratio)
        self.use_residual = stride == 1 and in_chs == out_chs
        self.expand = (
            conv_norm_act(in_chs, hidden, 1, norm_layer=norm_layer, act_layer=act_layer)
            if hidden != in_chs
            else nn.Identity()
        )
        self.dw = depthwise_conv(
            hidden, kernel_size, stride, norm_layer=norm_layer, act_layer=act_layer
        )
        self.se = (
            SqueezeExcitation(hidden, squeeze_chs=se_chs, act_layer=act_layer)
            if se_chs
            else nn.Identity()
        )
        self.project = conv_norm_act(hidden, out_chs, 1, norm_layer=norm_layer, act_layer=None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))  # (B, out, H/s, W/s)
        return x + out if self.use_residual else out


# --- dilated and asymmetric (factorized) convolutions --------------------------------------------


def dilated_conv(
    in_chs: int,
    out_chs: int,
    kernel_size: int = 3,
    dilation: int = 2,
    stride: int = 1,
    *,
    norm_layer: LayerFactory | None = nn.BatchNorm2d,
    act_layer: LayerFactory | None = nn.ReLU,
) -> nn.Sequential:
    """k×k conv with taps `dilation` pixels apart (Yu & Koltun 2016): the receptive field of a
    (k−1)·d + 1 kernel for the weights and MACs of a k×k one; "same" padding keeps the map size."""
    return conv_norm_act(
        in_chs,
        out_chs,
        kernel_size,
        stride,
        dilation=dilation,
        norm_layer=norm_layer,
        act_layer=act_layer,
    )


def asymmetric_conv(
    in_chs: int,
    out_chs: int,
    kernel_size: int = 3,
    mid_chs: int | None = None,
    *,
    norm_layer: LayerFactory | None = nn.BatchNorm2d,
    act_layer: LayerFactory | None = nn.ReLU,
) -> nn.Sequential:
    """A k×k conv factorized into 1×k (`row`, to `mid_chs`, default out_chs) then k×1 (`col`)
    conv-BN-act (Szegedy et al. 2016, section 3.2): k·(in·mid + mid·out) weights instead of
    k²·in·out — for k = 3 and equal widths 33% cheaper, with the same 3×3 receptive field."""
    k = check_positive_int("kernel_size", kernel_size)
    mid = out_chs if mid_chs is None else mid_chs
    return nn.Sequential(
        OrderedDict(
            row=conv_norm_act(in_chs, mid, (1, k), norm_layer=norm_layer, act_layer=act_layer),
            col=conv_norm_act(mid, out_chs, (k, 1), norm_layer=norm_layer, act_layer=act_layer),
        )
    )


# --- dense connectivity (DenseNet) ---------------------------------------------------------------


def _norm_act_conv(
    in_chs: int, out_chs: int, kernel_size: int, norm_layer: LayerFactory, act_layer: LayerFactory
) -> nn.Sequential:
    """The paper's pre-activation composite: norm → act → conv."""
    return nn.Sequential(
        OrderedDict(
            bn=norm_layer(in_chs),
            act=act_layer(),
            conv=nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False),
        )
    )


class DenseLayer(nn.Module):
    """One DenseNet layer: makes `growth` new channels from all before it and appends them.

    With `bn_size` (DenseNet-B) a 1×1 conv to bn_size·growth channels comes first (`conv1`), then
    the 3×3 conv to `growth` (`conv2`); `bn_size=None` keeps only the 3×3 conv. `preact=True` is
    the paper's BN-ReLU-conv order (Huang et al. 2017, section 3); the default conv-BN-ReLU keeps
    each BatchNorm right after a conv, so it folds into that conv for deployment (a BN that
    normalizes a concatenation has no conv of its own to fold into).
    """

    def __init__(
        self,
        in_chs: int,
        growth: int,
        bn_size: int | None = 4,
        *,
        preact: bool = False,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        growth = check_positive_int("growth", growth)
        in_chs = check_positive_int("in_chs", in_chs)
        if bn_size is not None:
            bn_size = check_positive_int("bn_size", bn_size)

        def unit(cin: int, cout: int, k: int) -> nn.Sequential:
            if preact:
                return _norm_act_conv(cin, cout, k, norm_layer, act_layer)
            return conv_norm_act(cin, cout, k, norm_layer=norm_layer, act_layer=act_layer)

        mid = in_chs if bn_size is None else bn_size * growth
        self.conv1 = unit(in_chs, mid, 1) if bn_size is not None else nn.Identity()
        self.conv2 = unit(mid, growth, 3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv2(self.conv1(x))], 1)  # (B, C + growth, H, W)


class DenseBlock(nn.Sequential):
    """`num_layers` DenseLayers: in_chs + num_layers·growth channels out (`out_chs`)."""

    def __init__(
        self,
        in_chs: int,
        num_layers: int,
        growth: int,
        bn_size: int | None = 4,
        *,
        preact: bool = False,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        num_layers = check_positive_int("num_layers", num_layers)
        super().__init__(
            *(
                DenseLayer(
                    in_chs + i * growth,
                    growth,
                    bn_size,
                    preact=preact,
                    norm_layer=norm_layer,
                    act_layer=act_layer,
                )
                for i in range(num_layers)
            )
        )
        self.out_chs = in_chs + num_layers * growth
