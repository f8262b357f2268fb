"""Tests for slimkit.nn.blocks and the zoo models built from them.

Each block's parameters and MACs (measured by slimkit.measure) are checked against the closed
forms in its paper: depthwise-separable / standard = 1/N + 1/k² (Howard et al. 2017), a ShuffleNet
unit's hw(2cm/g + 9m) (Zhang et al. 2018), the Fire module sizes of SqueezeNet's Table 1, the
inverted residual's h·w·d′·t(d′ + k² + d″) (Sandler et al. 2018), and so on. Model-level counts
use the independent formulas of test_zoo.py and published reference numbers.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError, ShapeError
from slimkit.measure import count_macs, count_params
from slimkit.measure.common import num_threads
from slimkit.nn import blocks, create
from slimkit.nn.blocks import (
    ChannelShuffle,
    DenseBlock,
    DenseLayer,
    DepthwiseSeparable,
    Fire,
    InvertedResidual,
    ShuffleUnit,
    ShuffleV2Unit,
    SqueezeExcitation,
    asymmetric_conv,
    channel_shuffle,
    conv_norm_act,
    depthwise_conv,
    dilated_conv,
    pointwise_conv,
)
from test_zoo import (
    densenet_params,
    efficientnet_params,
    mobilenet_v2_params,
    shufflenet_v1_params,
    shufflenet_v2_params,
    squeezenet_params,
    xception_params,
)


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):  # tiny tensors: more threads only contend
        yield


def params(model: nn.Module) -> int:
    return count_params(model).total


def macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    return count_macs(model, torch.zeros(1, *shape)).dense


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- depthwise, pointwise, depthwise-separable --------------------------------------------------


@pytest.mark.parametrize(
    ("m", "n", "k", "size", "stride"),
    [(32, 64, 3, 8, 1), (16, 48, 5, 9, 2), (8, 8, 3, 6, 1), (64, 128, 7, 4, 1)],
)
def test_depthwise_separable_costs_1_over_n_plus_1_over_k2(m, n, k, size, stride):
    """Howard et al. 2017, section 3.1: separable / standard = 1/N + 1/D_K², MACs and weights."""
    sep = DepthwiseSeparable(m, n, stride, kernel_size=k, norm_layer=None, act_layer=None)
    std = conv_norm_act(m, n, k, stride, norm_layer=None, act_layer=None)
    shape = (m, size, size)
    out = (size + 2 * (k // 2) - k) // stride + 1
    assert macs(sep, shape) == out * out * (k * k * m + m * n)
    assert macs(std, shape) == out * out * k * k * m * n
    expected = Fraction(1, n) + Fraction(1, k * k)
    assert Fraction(macs(sep, shape), macs(std, shape)) == expected
    assert Fraction(params(sep), params(std)) == expected
    x = torch.randn(2, *shape)
    assert sep(x).shape == std(x).shape == (2, n, out, out)


def test_depthwise_and_pointwise_counts():
    dw = depthwise_conv(12, 3, multiplier=2, norm_layer=None, act_layer=None)
    assert params(dw) == 9 * 12 * 2  # one 3×3 filter per input channel and multiplier
    assert macs(dw, (12, 8, 8)) == 8 * 8 * 9 * 24
    assert dw.conv.groups == 12 and dw.conv.out_channels == 24
    pw = pointwise_conv(12, 18, groups=3, norm_layer=None, act_layer=None)
    assert params(pw) == 12 * 18 // 3
    assert macs(pw, (12, 8, 8)) == 8 * 8 * 12 * 18 // 3
    with_bn = depthwise_conv(12)
    assert params(with_bn) == 9 * 12 + 2 * 12
    assert [type(m) for m in with_bn] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


def test_xception_separable_has_nothing_between_dw_and_pw():
    sep = DepthwiseSeparable(8, 16, act_layer=None, dw_norm=False, dw_act=False)
    assert isinstance(sep.dw.bn, nn.Identity) and isinstance(sep.dw.act, nn.Identity)
    assert isinstance(sep.pw.bn, nn.BatchNorm2d) and isinstance(sep.pw.act, nn.Identity)
    assert params(sep) == 9 * 8 + 8 * 16 + 2 * 16


# --- channel shuffle and ShuffleNet units -------------------------------------------------------


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (6, 3), (12, 4), (8, 1), (5, 5)])
def test_channel_shuffle_is_the_reshape_transpose_flatten_permutation(channels, groups):
    x = torch.randn(2, channels, 3, 4)
    per = channels // groups
    # Output channel j reads input channel (j mod g)·(C/g) + ⌊j/g⌋: the reshape (g, C/g),
    # transpose, flatten of Zhang et al. 2018, Fig. 1c.
    perm = [(j % groups) * per + j // groups for j in range(channels)]
    expected = x.reshape(2, groups, per, 3, 4).transpose(1, 2).reshape(2, channels, 3, 4)
    assert torch.equal(expected, x[:, perm])
    assert torch.equal(channel_shuffle(x, groups), expected)
    assert torch.equal(ChannelShuffle(groups)(x), expected)
    assert torch.equal(nn.ChannelShuffle(groups)(x), expected)  # torch's own
    assert sorted(perm) == list(range(channels))  # a permutation: nothing lost or repeated
    assert torch.equal(channel_shuffle(expected, per), x)  # inverted by the transposed grid


def test_channel_shuffle_mixes_every_group():
    """After a shuffle, each group of the next group conv sees channels of every group."""
    groups, per = 3, 4
    source_group = torch.arange(groups).repeat_interleave(per).float().view(1, -1, 1, 1)
    shuffled = channel_shuffle(source_group, groups).view(groups, per)  # the next conv's groups
    assert all(set(row.tolist()) == set(range(groups)) for row in shuffled)


@pytest.mark.parametrize(("c", "m", "g", "size"), [(240, 60, 3, 8), (48, 12, 4, 4), (36, 9, 1, 6)])
def test_shuffle_unit_macs_are_hw_2cm_over_g_plus_9m(c, m, g, size):
    unit = ShuffleUnit(c, c, m, g)
    h = w = size
    assert macs(unit, (c, h, w)) == h * w * (2 * c * m // g + 9 * m)  # Zhang et al., 3.2
    assert params(unit) == 2 * c * m // g + 9 * m + 2 * (m + m + c)  # convs + 3 BNs
    assert unit(torch.randn(2, c, h, w)).shape == (2, c, h, w)


def test_stride2_shuffle_unit_concatenates_a_pooled_shortcut():
    cin, cout, m, g = 24, 240, 60, 3
    unit = ShuffleUnit(cin, cout, m, g, stride=2, first_groups=1).eval()
    # conv1 at 8×8 (ungrouped), depthwise and conv2 at 4×4, conv2 making cout − cin channels
    assert macs(unit, (cin, 8, 8)) == 64 * cin * m + 16 * (9 * m + m * (cout - cin) // g)
    assert unit.conv2.conv.out_channels == cout - cin
    x = torch.randn(2, cin, 8, 8)
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, cout, 4, 4)
    pooled = nn.functional.avg_pool2d(x, 3, 2, 1)
    assert torch.allclose(y[:, :cin], torch.relu(pooled))  # the input rides along, pooled


def test_shuffle_v2_units():
    unit = ShuffleV2Unit(16, 16).eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        y = unit(x)
    # The first half passes through untouched, landing on the even channels after the shuffle.
    assert torch.equal(y[:, 0::2], x[:, :8])
    half = 8
    assert params(unit) == half * half * 2 + 9 * half + 2 * 3 * half
    assert macs(unit, (16, 6, 6)) == 36 * (2 * half * half + 9 * half)
    down = ShuffleV2Unit(16, 32, 2)
    assert down(x).shape == (2, 32, 3, 3)
    assert macs(down, (16, 6, 6)) == 9 * (9 * 16 + 16 * 16) + 36 * 16 * 16 + 9 * (9 * 16 + 256)


# --- Fire module ----------------------------------------------------------------------------------

# SqueezeNet Table 1 (Iandola et al. 2016): input channels, s1x1, e1x1, e3x3 and parameters.
FIRE_TABLE = [
    (96, 16, 64, 64, 11_920),
    (128, 16, 64, 64, 12_432),
    (128, 32, 128, 128, 45_344),
    (256, 32, 128, 128, 49_440),
    (256, 48, 192, 192, 104_880),
    (384, 48, 192, 192, 111_024),
    (384, 64, 256, 256, 188_992),
    (512, 64, 256, 256, 197_184),
]


@pytest.mark.parametrize(("cin", "s", "e1", "e3", "paper"), FIRE_TABLE)
def test_fire_module_params_match_squeezenet_table_1(cin, s, e1, e3, paper):
    fire = Fire(cin, s, e1, e3)
    assert params(fire) == (cin + 1) * s + (s + 1) * e1 + (9 * s + 1) * e3 == paper


def test_fire_module_macs_and_concat():
    fire = Fire(32, 8, 16, 24)
    assert macs(fire, (32, 6, 6)) == 36 * (32 * 8 + 8 * 16 + 9 * 8 * 24)
    x = torch.randn(2, 32, 6, 6)
    y = fire(x)
    assert y.shape == (2, 40, 6, 6)
    s = fire.squeeze(x)
    assert torch.equal(y[:, :16], fire.expand1x1(s)) and torch.equal(y[:, 16:], fire.expand3x3(s))
    normed = Fire(32, 8, 16, 24, norm_layer=nn.BatchNorm2d)
    assert params(normed) == 32 * 8 + 8 * 16 + 9 * 8 * 24 + 2 * (8 + 16 + 24)  # no biases


# --- squeeze-and-excitation, inverted residual ----------------------------------------------------


def test_squeeze_excitation_counts_and_gate():
    se = SqueezeExcitation(32, reduction=8)  # 4 squeeze channels
    assert params(se) == 2 * 32 * 4 + 4 + 32
    assert macs(se, (32, 5, 5)) == 2 * 32 * 4  # both 1×1 convs run on the pooled 1×1 map
    with torch.no_grad():
        se.expand.weight.zero_()
        se.expand.bias.copy_(torch.linspace(-2, 2, 32))
    x = torch.randn(2, 32, 5, 5)
    gate = torch.sigmoid(torch.linspace(-2, 2, 32)).view(1, -1, 1, 1)
    assert torch.allclose(se(x), x * gate)
    assert SqueezeExcitation(10).reduce.out_channels == 1  # at least one squeeze channel


@pytest.mark.parametrize(
    ("cin", "cout", "t", "k", "stride", "size"),
    [(16, 16, 6, 3, 1, 8), (16, 24, 6, 3, 2, 8), (32, 32, 1, 3, 1, 4), (24, 40, 6, 5, 2, 8)],
)
def test_inverted_residual_params_and_macs(cin, cout, t, k, stride, size):
    block = InvertedResidual(cin, cout, stride, t, kernel_size=k)
    h = cin * t
    expand = cin * h + 2 * h if t != 1 else 0
    assert params(block) == expand + k * k * h + 2 * h + h * cout + 2 * cout
    out = size // stride
    assert macs(block, (cin, size, size)) == (
        (size * size * cin * h if t != 1 else 0) + out * out * h * (k * k + cout)
    )
    if stride == 1 and t != 1:  # Sandler et al. 2018, section 3: h·w·d′·t·(d′ + k² + d″)
        assert macs(block, (cin, size, size)) == size * size * cin * t * (cin + k * k + cout)
    assert block.use_residual == (stride == 1 and cin == cout)


def test_inverted_residual_adds_its_input_and_ends_linear():
    block = InvertedResidual(8, 8).eval()
    assert isinstance(block.project.act, nn.Identity)  # the linear bottleneck
    assert isinstance(block.dw.act, nn.ReLU6)
    with torch.no_grad():
        block.project.bn.weight.zero_()
        block.project.bn.bias.fill_(-1.0)  # a ReLU here would clip it to 0
        x = torch.randn(2, 8, 4, 4)
        assert torch.allclose(block(x), x - 1.0)


def test_mbconv_with_squeeze_excitation():
    block = InvertedResidual(16, 24, 2, 6, kernel_size=5, se_chs=4, act_layer=nn.SiLU)
    h = 96
    se = 2 * h * 4 + 4 + h
    assert params(block) == 16 * h + 2 * h + 25 * h + 2 * h + se + h * 24 + 2 * 24
    assert macs(block, (16, 8, 8)) == 64 * 16 * h + 16 * h * (25 + 24) + 2 * h * 4
    assert isinstance(block.se.act, nn.SiLU)


# --- dilated and asymmetric convolutions ----------------------------------------------------------


def receptive_offsets(conv: nn.Module, chs: int, size: int = 15) -> list[tuple[int, int]]:
    """Input offsets from the centre that reach the centre output (non-zero gradient)."""
    x = torch.zeros(1, chs, size, size, requires_grad=True)
    conv.eval()(x)[0, :, size // 2, size // 2].sum().backward()
    nz = x.grad.abs().sum((0, 1)).nonzero().tolist()
    return [(r - size // 2, c - size // 2) for r, c in nz]


@pytest.mark.parametrize(("k", "d"), [(3, 2), (3, 3), (5, 2)])
def test_dilated_conv_widens_the_receptive_field_at_the_same_cost(k, d):
    torch.manual_seed(0)
    conv = dilated_conv(4, 6, k, d, norm_layer=None, act_layer=None)
    plain = conv_norm_act(4, 6, k, norm_layer=None, act_layer=None)
    assert params(conv) == params(plain) == k * k * 4 * 6
    assert macs(conv, (4, 12, 12)) == macs(plain, (4, 12, 12)) == 144 * k * k * 4 * 6
    assert conv(torch.randn(2, 4, 12, 12)).shape == (2, 6, 12, 12)  # "same" padding
    r = d * (k - 1) // 2
    taps = sorted((i, j) for i in range(-r, r + 1, d) for j in range(-r, r + 1, d))
    assert sorted(receptive_offsets(conv, 4)) == taps  # k² taps spread over (k−1)d + 1 pixels


@pytest.mark.parametrize("k", [3, 5, 7])
def test_asymmetric_factorization(k):
    c = 16
    factored = asymmetric_conv(c, c, k, norm_layer=None, act_layer=None)
    full = conv_norm_act(c, c, k, norm_layer=None, act_layer=None)
    assert params(factored) == 2 * k * c * c
    assert macs(factored, (c, 10, 10)) == 100 * 2 * k * c * c
    assert Fraction(params(factored), params(full)) == Fraction(2, k)  # 3: 33% cheaper
    assert factored.row.conv.kernel_size == (1, k) and factored.col.conv.kernel_size == (k, 1)
    assert factored(torch.randn(2, c, 10, 10)).shape == (2, c, 10, 10)
    r = k // 2
    square = sorted((i, j) for i in range(-r, r + 1) for j in range(-r, r + 1))
    assert sorted(receptive_offsets(factored, c)) == square  # the same k×k window


def test_asymmetric_with_a_bottleneck_width():
    block = asymmetric_conv(8, 12, 3, mid_chs=4)
    assert params(block) == 3 * 8 * 4 + 2 * 4 + 3 * 4 * 12 + 2 * 12


# --- dense connectivity ---------------------------------------------------------------------------


@pytest.mark.parametrize("preact", [False, True])
def test_dense_layer_appends_growth_channels(preact):
    cin, k = 10, 6
    layer = DenseLayer(cin, k, 4, preact=preact)
    norm = 2 * cin + 2 * 4 * k if preact else 2 * 4 * k + 2 * k  # BN before or after each conv
    assert params(layer) == cin * 4 * k + 9 * 4 * k * k + norm
    assert macs(layer, (cin, 5, 5)) == 25 * (cin * 4 * k + 9 * 4 * k * k)
    x = torch.randn(2, cin, 5, 5)
    y = layer(x)
    assert y.shape == (2, cin + k, 5, 5)
    assert torch.equal(y[:, :cin], x)  # the input is carried forward as it is


def test_dense_block_grows_linearly_and_params_sum_per_layer():
    cin, n, k = 8, 4, 5
    block = DenseBlock(cin, n, k, bn_size=None)
    assert block.out_chs == cin + n * k
    assert params(block) == sum(9 * (cin + i * k) * k + 2 * k for i in range(n))
    assert block(torch.randn(1, cin, 4, 4)).shape == (1, cin + n * k, 4, 4)


# --- bad configurations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "needles"),
    [
        (lambda: conv_norm_act(10, 12, 3, groups=4), ("10", "12", "groups (4)")),
        (lambda: conv_norm_act(8, 8, (1, 2, 3)), ("kernel_size",)),
        (lambda: conv_norm_act(8, 8, dilation=0), ("dilation", "0")),
        (lambda: conv_norm_act(8, 0), ("out_chs", "0")),
        (lambda: depthwise_conv(8, multiplier=0), ("multiplier", "0")),
        (lambda: ChannelShuffle(0), ("groups", "0")),
        (lambda: ShuffleUnit(24, 48, 12, 3), ("out_chs (48)", "in_chs (24)")),
        (lambda: ShuffleUnit(48, 24, 12, 3, stride=2), ("out_chs (24)", "in_chs (48)")),
        (lambda: ShuffleUnit(24, 24, 10, 3), ("mid_chs=10", "groups (3")),
        (lambda: ShuffleUnit(24, 40, 12, 3, stride=2), ("conv2 outputs=16", "groups (3")),
        (lambda: ShuffleUnit(24, 24, 12, 3, stride=3), ("stride", "3")),
        (lambda: ShuffleV2Unit(16, 15, 2), ("out_chs=15",)),
        (lambda: ShuffleV2Unit(16, 32), ("in_chs=16", "out_chs=32")),
        (lambda: InvertedResidual(8, 8, expand_ratio=0.5), ("expand_ratio", "0.5")),
        (lambda: InvertedResidual(8, 8, stride=3), ("stride", "3")),
        (lambda: InvertedResidual(8, 8, se_chs=-1), ("se_chs", "-1")),
        (lambda: SqueezeExcitation(8, reduction=0), ("reduction", "0")),
        (lambda: SqueezeExcitation(8, squeeze_chs=0), ("squeeze_chs", "0")),
        (lambda: DenseLayer(8, 0), ("growth", "0")),
        (lambda: DenseBlock(8, 0, 4), ("num_layers", "0")),
        (lambda: Fire(8, 0, 4, 4), ("squeeze_chs", "0")),
        (lambda: Fire(8, 4, 4, -1), ("expand3x3_chs", "-1")),
    ],
)
def test_bad_block_configs_are_one_line_config_errors(build, needles):
    with pytest.raises(ConfigError) as exc:
        build()
    message = one_line(exc)
    assert all(n in message for n in needles), message


def test_shuffle_of_indivisible_channels_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"7 channels .* groups \(2\)"):
        channel_shuffle(torch.zeros(1, 7, 2, 2), 2)


@pytest.mark.parametrize(
    ("name", "kwargs", "needles"),
    [
        ("mobilenet_v2", {"width_mult": 0}, ("width_mult", "0")),
        ("mobilenet_v2", {"stem_stride": 3}, ("stem_stride", "3")),
        ("shufflenet_v1", {"groups": 5}, ("groups", "5", "1, 2, 3, 4, 8")),
        ("shufflenet_v1", {"width_mult": -1}, ("width_mult", "-1")),
        ("shufflenet_v2", {"width_mult": 0.75}, ("width_mult", "0.75", "0.5, 1.0, 1.5, 2.0")),
        ("squeezenet", {"version": "2.0"}, ("version", "'2.0'", "'1.1'")),
        ("squeezenet", {"bypass": "yes"}, ("bypass", "'yes'")),
        ("xception", {"middle_blocks": 0}, ("middle_blocks", "0")),
        ("xception", {"width_mult": math.inf}, ("width_mult", "inf")),
        ("densenet", {"depth": 21}, ("depth", "21", "6n+4")),
        ("densenet", {"growth": 0}, ("growth", "0")),
        ("efficientnet", {"phi": -1}, ("phi", "-1")),
        ("efficientnet", {"phi": math.nan}, ("phi", "nan")),
        ("efficientnet", {"phi": "1"}, ("phi", "'1'")),
        ("efficientnet", {"base_size": 0}, ("base_size", "0")),
    ],
)
def test_bad_model_options_are_one_line_config_errors(name, kwargs, needles):
    with pytest.raises(ConfigError) as exc:
        create(name, **kwargs)
    message = one_line(exc)
    assert all(n in message for n in needles), message


# --- zoo models built from these blocks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "formula"),
    [
        ("mobilenet_v2", {"width_mult": 0.35}, mobilenet_v2_params),
        ("mobilenet_v2", {"width_mult": 1.4, "num_classes": 100}, mobilenet_v2_params),
        ("shufflenet_v1", {"groups": 1}, shufflenet_v1_params),
        ("shufflenet_v1", {"groups": 8, "width_mult": 0.5}, shufflenet_v1_params),
        ("shufflenet_v1", {"groups": 4, "width_mult": 0.25}, shufflenet_v1_params),
        ("shufflenet_v2", {"width_mult": 0.5}, shufflenet_v2_params),
        ("shufflenet_v2", {"width_mult": 2.0}, shufflenet_v2_params),
        ("squeezenet", {"version": "1.0"}, squeezenet_params),
        ("squeezenet_bypass", {"version": "1.0"}, squeezenet_params),
        ("xception", {"middle_blocks": 1, "width_mult": 0.5}, xception_params),
        ("densenet", {"depth": 40, "growth": 8}, densenet_params),
        ("efficientnet", {"phi": 1}, efficientnet_params),
        ("efficientnet", {"phi": 2.5}, efficientnet_params),
    ],
)
def test_model_options_match_param_formulas(name, kwargs, formula):
    assert params(create(name, **kwargs)) == formula(**kwargs)


def test_reference_imagenet_sizes():
    """Published ImageNet sizes, where the CIFAR adaptation leaves the parameters alone."""
    assert mobilenet_v2_params(1000) == 3_504_872  # torchvision; the paper rounds to 3.4M
    assert efficientnet_params(1000) == 5_288_548  # torchvision; the paper's Table 2: 5.3M
    # SqueezeNet v1.1 (a 3×3 conv1 already) as released: 1,235,496 parameters.
    assert params(create("squeezenet", num_classes=1000)) == 1_235_496
    # v1.0: Table 1's 1,248,424 less the 7×7 → 3×3 conv1 (40 taps × 3 × 96 weights).
    assert squeezenet_params(1000, "1.0") == 1_248_424 - 40 * 3 * 96


def test_mobilenet_v2_imagenet_macs_match_paper():
    model = create("mobilenet_v2", num_classes=1000, input_size=224)
    assert model.input_shape == (3, 224, 224)
    assert params(model) == mobilenet_v2_params(1000)
    assert macs(model, model.input_shape) / 1e6 == pytest.approx(300, rel=0.01)  # Table 3


def test_efficientnet_compound_scaling():
    b0, b1 = create("efficientnet"), create("efficientnet", phi=1)
    assert b0.input_shape == (3, 32, 32)
    assert b1.input_shape == (3, round(32 * 1.15), round(32 * 1.15))  # resolution γ^φ
    depth = lambda m: sum(isinstance(b, InvertedResidual) for b in m.modules())  # noqa: E731
    assert depth(b0) == 16 and depth(b1) == sum(math.ceil(n * 1.2) for n in (1, 2, 2, 3, 3, 4, 1))
    assert b1.stem.conv.out_channels == blocks.make_divisible(32 * 1.1)  # width β^φ
    assert abs(1.2 * 1.1**2 * 1.15**2 - 2) < 0.1  # α·β²·γ² ≈ 2 (eq. 3)
    b0_224 = create("efficientnet", num_classes=1000, base_size=224)
    assert macs(b0_224, b0_224.input_shape) / 1e9 == pytest.approx(0.39, rel=0.02)  # Table 2


def test_squeezenet_bypass_adds_no_parameters_but_changes_the_function():
    torch.manual_seed(0)
    plain = create("squeezenet").eval()
    bypass = create("squeezenet_bypass").eval()
    bypass.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain(x), bypass(x))


def test_make_divisible():
    assert [blocks.make_divisible(v) for v in (32, 35.2, 11.2, 3, 1280 * 1.4)] == [
        32,
        32,
        16,  # 8 would be more than 10% below 11.2
        8,
        1792,
    ]


def test_blocks_trace_and_prune_with_the_graph():
    """Every block's channels map through the pruning graph (no block is a boundary)."""
    from slimkit.graph import build_graph

    class Net(nn.Module):
        input_shape = (8, 8, 8)

        def __init__(self) -> None:
            super().__init__()
            self.units = nn.Sequential(
                DepthwiseSeparable(8, 12),
                ShuffleUnit(12, 12, 6, 3),
                Fire(12, 4, 6, 6),
                InvertedResidual(12, 12, se_chs=3),
                asymmetric_conv(12, 12),
                dilated_conv(12, 12),
                ShuffleV2Unit(12, 12),
                DenseLayer(12, 4),
            )
            self.fc = nn.Linear(16, 10)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(self.units(x).mean((2, 3)))

    graph = build_graph(Net(), torch.randn(1, 8, 8, 8))
    assert all(node.rule != "boundary" for node in graph.nodes), [
        n.name for n in graph.nodes if n.rule == "boundary"
    ]
    assert graph.groups


@pytest.mark.parametrize("name", ["squeezenet", "squeezenet_bypass"])
def test_squeezenet_conv_classifier_keeps_its_ends(name):
    """SqueezeNet classifies with a 1×1 conv (no Linear): its outputs stay fixed, like the
    first conv's inputs, while the Fire modules between them prune."""
    from slimkit.graph import build_graph

    model = create(name).eval()
    graph = build_graph(model, torch.randn(1, 3, 32, 32))
    members = {(m.name, m.role) for g in graph.groups for m in g.members}
    assert ("conv10", "out") not in members and ("conv1", "in") not in members
    assert ("conv10", "in") in members and ("fires.fire9.expand3x3.conv", "out") in members
