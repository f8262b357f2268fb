"""Tests for the model zoo (slimkit.nn).

Parameter counts and MACs are checked against formulas written here from the layer sizes in the
papers, independently of the model code. Tests parametrized over `list_models()` cover every
registered model, including ones added later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimkit.errors import ConfigError, SlimkitError, UnknownModelError
from slimkit.nn import ModelInfo, create, list_models, model_info, register, zoo
from slimkit.nn.resnet_cifar import resnet_cifar

# Options that keep a model's forward pass fast; models not listed use their defaults.
FAST_KWARGS: dict[str, dict] = {"mobilenet_v1": {"input_size": 32, "alpha": 0.25}}
DATASET_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measured_macs(model: nn.Module) -> int:
    """Conv + linear multiply-adds of one sample, from torch's FLOP counter (MACs = FLOPs / 2)."""
    x = torch.zeros(1, *model.input_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2


# --- parameter-count formulas, from layer sizes ---


def conv(k: int, cin: int, cout: int, groups: int = 1, bias: bool = False) -> int:
    return k * k * (cin // groups) * cout + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c  # weight + bias


def linear(fin: int, fout: int) -> int:
    return fin * fout + fout


def lenet300_100_params(num_classes: int = 10) -> int:
    return linear(784, 300) + linear(300, 100) + linear(100, num_classes)


def lenet5_params(num_classes: int = 10) -> int:
    return (
        conv(5, 1, 6, bias=True)
        + conv(5, 6, 16, bias=True)
        + linear(16 * 5 * 5, 120)
        + linear(120, 84)
        + linear(84, num_classes)
    )


def lenet5_caffe_params(num_classes: int = 10) -> int:
    return (
        conv(5, 1, 20, bias=True)
        + conv(5, 20, 50, bias=True)
        + linear(50 * 4 * 4, 500)
        + linear(500, num_classes)
    )


def resnet_params(depth: int, num_classes: int = 10, shortcut: str = "B", width: int = 16) -> int:
    n = (depth - 2) // 6
    total = conv(3, 3, width) + bn(width)  # stem
    cin = width
    for cout in (width, 2 * width, 4 * width):
        for _ in range(n):
            total += conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + bn(cout)
            if cin != cout and shortcut == "B":
                total += conv(1, cin, cout) + bn(cout)  # projection; option A has no parameters
            cin = cout
    return total + linear(4 * width, num_classes)


VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg_params(depth: int, num_classes: int = 10, width_mult: float = 1.0) -> int:
    total, cin = 0, 3
    for v in VGG_CFGS[depth]:
        if v != "M":
            cout = max(1, round(v * width_mult))
            total += conv(3, cin, cout) + bn(cout)
            cin = cout
    return total + linear(cin, num_classes)


MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
MOBILENET_BLOCKS += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def mobilenet_params(num_classes: int = 1000, alpha: float = 1.0, **_size_options) -> int:
    def ch(c: int) -> int:
        return max(1, int(c * alpha))

    cin = ch(32)
    total = conv(3, 3, cin) + bn(cin)
    for c, _ in MOBILENET_BLOCKS:
        cout = ch(c)
        total += conv(3, cin, cin, groups=cin) + bn(cin) + conv(1, cin, cout) + bn(cout)
        cin = cout
    return total + linear(cin, num_classes)


def mobilenet_macs(
    alpha: float = 1.0, size: int = 224, stem_stride: int = 2, num_classes: int = 1000
) -> int:
    def ch(c: int) -> int:
        return max(1, int(c * alpha))

    def out(h: int, s: int) -> int:  # 3×3 conv, padding 1
        return (h + 2 - 3) // s + 1

    h = out(size, stem_stride)
    cin = ch(32)
    macs = h * h * 3 * 3 * 3 * cin
    for c, s in MOBILENET_BLOCKS:
        h, cout = out(h, s), ch(c)
        macs += h * h * 3 * 3 * cin  # depthwise
        macs += h * h * cin * cout  # pointwise
        cin = cout
    return macs + cin * num_classes


def transformer_params(dim=64, depth=2, mlp_dim=128, tokens=28, token_dim=28, classes=10):
    """Row embedding + positions, per block 2 LayerNorms + MHA (4d² + 4d) + MLP, LN, head."""
    block = 4 * dim + (4 * dim * dim + 4 * dim) + (dim * mlp_dim + mlp_dim) + (mlp_dim * dim + dim)
    embed = token_dim * dim + dim + tokens * dim
    return embed + depth * block + 2 * dim + dim * classes + classes


def round8(value: float) -> int:
    """Nearest multiple of 8, at least 8 and never 10% below `value` (MobileNetV2/EfficientNet)."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


MOBILENET_V2_TABLE = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3)]
MOBILENET_V2_TABLE += [(6, 160, 3), (6, 320, 1)]  # (expansion t, channels c, repeats n)


def inverted_residual_params(cin: int, cout: int, t: int, k: int = 3, se: int = 0) -> int:
    """1×1 expand (absent for t = 1) + k×k depthwise + optional SE + 1×1 project, each with BN."""
    h = cin * t
    expand = conv(1, cin, h) + bn(h) if t != 1 else 0
    squeeze = conv(1, h, se, bias=True) + conv(1, se, h, bias=True) if se else 0
    return expand + conv(k, h, h, groups=h) + bn(h) + squeeze + conv(1, h, cout) + bn(cout)


def mobilenet_v2_params(num_classes: int = 10, width_mult: float = 1.0, **_size_options) -> int:
    cin = round8(32 * width_mult)
    total = conv(3, 3, cin) + bn(cin)
    for t, c, n in MOBILENET_V2_TABLE:
        cout = round8(c * width_mult)
        for _ in range(n):
            total += inverted_residual_params(cin, cout, t)
            cin = cout
    last = round8(1280 * max(1.0, width_mult))
    return total + conv(1, cin, last) + bn(last) + linear(last, num_classes)


SHUFFLENET_V1_WIDTHS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # Zhang et al. Table 1


def shufflenet_v1_params(num_classes: int = 10, groups: int = 3, width_mult: float = 1.0) -> int:
    """Stem, then per unit: 1×1 gconv → 3×3 depthwise → 1×1 gconv (to out − in at stride 2)."""

    def rounded(v: float, m: int) -> int:
        return max(m, int(v / m + 0.5) * m)

    g = groups
    cin = rounded(24 * width_mult, g)
    total = conv(3, 3, cin) + bn(cin)
    for i, n in enumerate((4, 8, 4)):
        cout = rounded(SHUFFLENET_V1_WIDTHS[g] * 2**i * width_mult, 4 * g)
        m = cout // 4
        for j in range(n):
            first_groups = 1 if i == j == 0 else g
            branch = cout - cin if j == 0 else cout
            total += conv(1, cin, m, first_groups) + bn(m) + conv(3, m, m, m) + bn(m)
            total += conv(1, m, branch, g) + bn(branch)
            cin = cout
    return total + linear(cin, num_classes)


SHUFFLENET_V2_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024)}  # Ma et al.
SHUFFLENET_V2_WIDTHS |= {1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}  # Table 5


def shufflenet_v2_params(num_classes: int = 10, width_mult: float = 1.0) -> int:
    *widths, last = SHUFFLENET_V2_WIDTHS[width_mult]
    cin = 24
    total = conv(3, 3, cin) + bn(cin)
    for cout, n in zip(widths, (4, 8, 4), strict=True):
        half = cout // 2
        for j in range(n):
            if j == 0:  # both branches read the whole input
                total += conv(3, cin, cin, cin) + bn(cin) + conv(1, cin, half) + bn(half)
                total += conv(1, cin, half) + bn(half)
            else:  # one branch reads half the channels
                total += conv(1, half, half) + bn(half)
            total += conv(3, half, half, half) + bn(half) + conv(1, half, half) + bn(half)
            cin = cout
    return total + conv(1, cin, last) + bn(last) + linear(last, num_classes)


SQUEEZENET_FIRES = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192)]
SQUEEZENET_FIRES += [(64, 256), (64, 256)]  # (squeeze, each expand), Iandola et al. Table 1


def fire_params(cin: int, s: int, e1: int, e3: int) -> int:
    return conv(1, cin, s, bias=True) + conv(1, s, e1, bias=True) + conv(3, s, e3, bias=True)


def squeezenet_params(num_classes: int = 10, version: str = "1.1", bypass: bool = False) -> int:
    """Biased convs, no BN; the bypass (identity) adds nothing."""
    cin = {"1.0": 96, "1.1": 64}[version]
    total = conv(3, 3, cin, bias=True)
    for s, e in SQUEEZENET_FIRES:
        total += fire_params(cin, s, e, e)
        cin = 2 * e
    return total + conv(1, cin, num_classes, bias=True)


def xception_params(num_classes: int = 10, middle_blocks: int = 4, width_mult: float = 1.0) -> int:
    def ch(c: int) -> int:
        return max(1, round(c * width_mult))

    def sep(a: int, b: int) -> int:  # depthwise → pointwise → BN
        return conv(3, a, a, groups=a) + conv(1, a, b) + bn(b)

    cin = ch(32)
    total = conv(3, 3, cin) + bn(cin)
    for c in (64, 128, 256):  # entry: 2 separable convs + 1×1 projection shortcut
        total += sep(cin, ch(c)) + sep(ch(c), ch(c)) + conv(1, cin, ch(c)) + bn(ch(c))
        cin = ch(c)
    total += middle_blocks * 3 * sep(cin, cin)
    return total + sep(cin, ch(512)) + linear(ch(512), num_classes)


def densenet_params(num_classes: int = 10, depth: int = 22, growth: int = 12) -> int:
    """Stem to 2k; per layer 1×1 to 4k and 3×3 to k; transitions halve the channels."""
    n, k = (depth - 4) // 6, growth
    c = 2 * k
    total = conv(3, 3, c) + bn(c)
    for block in range(3):
        for _ in range(n):
            total += conv(1, c, 4 * k) + bn(4 * k) + conv(3, 4 * k, k) + bn(k)
            c += k
        if block < 2:
            total += conv(1, c, c // 2) + bn(c // 2)
            c //= 2
    return total + linear(c, num_classes)


EFFICIENTNET_B0 = [(1, 3, 16, 1), (6, 3, 24, 2), (6, 5, 40, 2), (6, 3, 80, 3), (6, 5, 112, 3)]
EFFICIENTNET_B0 += [(6, 5, 192, 4), (6, 3, 320, 1)]  # (t, kernel, channels, repeats), Table 1


def efficientnet_params(num_classes: int = 10, phi: float = 0.0, base_size: int = 32) -> int:
    """B0 with repeats ⌈n·1.2^φ⌉ and widths round8(c·1.1^φ); SE to a quarter of the input."""
    depth, width = 1.2**phi, 1.1**phi
    cin = round8(32 * width)
    total = conv(3, 3, cin) + bn(cin)
    for t, k, c, n in EFFICIENTNET_B0:
        cout = round8(c * width)
        for _ in range(math.ceil(n * depth)):
            total += inverted_residual_params(cin, cout, t, k, se=max(1, int(cin / 4)))
            cin = cout
    head = round8(1280 * width)
    return total + conv(1, cin, head) + bn(head) + linear(head, num_classes)


PARAM_FORMULAS: dict[str, Callable[..., int]] = {
    "lenet300_100": lenet300_100_params,
    "lenet5": lenet5_params,
    "lenet5_caffe": lenet5_caffe_params,
    **{f"resnet{d}": partial(resnet_params, d) for d in (20, 32, 44, 56, 110)},
    "vgg11": partial(vgg_params, 11),
    "vgg16": partial(vgg_params, 16),
    "mobilenet_v1": mobilenet_params,
    "transformer_mnist": transformer_params,
    "mobilenet_v2": mobilenet_v2_params,
    "shufflenet_v1": shufflenet_v1_params,
    "shufflenet_v2": shufflenet_v2_params,
    "squeezenet": squeezenet_params,
    "squeezenet_bypass": squeezenet_params,
    "xception": xception_params,
    "densenet": densenet_params,
    "efficientnet": efficientnet_params,
    "mlp": lambda: linear(784, 1200) + linear(1200, 1200) + linear(1200, 10),  # Hinton 2015
}


# --- every registered model ---


def test_registry_lists_builtin_models() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {
        "lenet300_100",
        "lenet5",
        "lenet5_caffe",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "vgg11",
        "vgg16",
        "mobilenet_v1",
    } <= set(names)


@pytest.mark.parametrize("name", list_models())
def test_model_info(name: str) -> None:
    info = model_info(name)
    assert isinstance(info, ModelInfo)
    assert info.name == name
    assert info.dataset in ("mnist", "cifar10", "imagenet")
    assert info.paper and info.description
    assert callable(info.factory)


@pytest.mark.parametrize("name", list_models())
def test_forward_default_model(name: str) -> None:
    torch.manual_seed(0)
    info = model_info(name)
    model = create(name, **FAST_KWARGS.get(name, {}))
    assert model.num_classes == (1000 if info.dataset == "imagenet" else 10)
    shape = model.input_shape
    assert isinstance(shape, tuple) and len(shape) == 3
    assert all(isinstance(d, int) and d > 0 for d in shape)
    if info.dataset in DATASET_SHAPES:
        assert shape == DATASET_SHAPES[info.dataset]
    else:
        assert shape[0] == 3

    model.train()
    y = model(torch.randn(2, *shape))
    assert y.shape == (2, model.num_classes)
    assert torch.isfinite(y).all()
    y.square().mean().backward()  # every parameter is used
    assert all(p.grad is not None for p in model.parameters())

    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, *shape))).all()


@pytest.mark.parametrize("name", list_models())
def test_num_classes_option(name: str) -> None:
    model = create(name, num_classes=7, **FAST_KWARGS.get(name, {}))
    assert model.num_classes == 7
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, *model.input_shape)).shape == (2, 7)


@pytest.mark.parametrize("name", list_models())
def test_param_count_default(name: str) -> None:
    assert name in PARAM_FORMULAS, f"add a parameter formula for {name!r} to test_zoo.py"
    kwargs = FAST_KWARGS.get(name, {})
    assert n_params(create(name, **kwargs)) == PARAM_FORMULAS[name](**kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("lenet5", {"num_classes": 100}),
        ("resnet20", {"shortcut": "A"}),
        ("resnet20", {"shortcut": "B"}),
        ("resnet56", {"shortcut": "A"}),
        ("resnet56", {"shortcut": "B"}),
        ("resnet20", {"width": 8, "num_classes": 100}),
        ("vgg11", {"width_mult": 0.5}),
        ("vgg16", {"width_mult": 0.5}),
        ("vgg16", {"width_mult": 0.3}),  # rounds 64·0.3=19.2 → 19
        ("mobilenet_v1", {"alpha": 1.0}),
        ("mobilenet_v1", {"alpha": 0.5}),
        ("mobilenet_v1", {"alpha": 0.25}),
        ("mobilenet_v1", {"alpha": 0.001, "input_size": 32}),  # every layer 1 channel wide
    ],
)
def test_param_count_options(name: str, kwargs: dict) -> None:
    assert n_params(create(name, **kwargs)) == PARAM_FORMULAS[name](**kwargs)


def test_lenet_param_counts_match_papers() -> None:
    assert n_params(create("lenet300_100")) == lenet300_100_params() == 266_610
    assert n_params(create("lenet5")) == lenet5_params() == 61_706
    assert n_params(create("lenet5_caffe")) == lenet5_caffe_params() == 431_080


# --- CIFAR ResNets ---


@pytest.mark.parametrize(("depth", "paper_m"), [(20, 0.27), (56, 0.85), (110, 1.7)])
def test_resnet_option_a_matches_paper(depth: int, paper_m: float) -> None:
    params = n_params(create(f"resnet{depth}", shortcut="A"))
    assert params == resnet_params(depth, shortcut="A")
    assert round(params / 1e6, len(str(paper_m)) - 2) == paper_m  # He et al. Table 6


def test_resnet_exact_counts() -> None:
    assert resnet_params(20, shortcut="A") == 269_722
    assert resnet_params(20, shortcut="B") == 272_474
    assert resnet_params(56, shortcut="A") == 853_018
    assert resnet_params(56, shortcut="B") == 855_770


def test_resnet_any_depth_and_shortcut_a_shapes() -> None:
    model = resnet_cifar(depth=8, shortcut="A")  # n = 1
    assert n_params(model) == resnet_params(8, shortcut="A")
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --- MobileNetV1 ---

# Howard et al. 2017, Table 6: alpha → (M mult-adds, M params), at 224×224. The paper rounds
# parameters to one decimal; the TF-slim release of the same nets lists 4.24/2.59/1.34/0.47 M.
MOBILENET_PAPER = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
MOBILENET_TF_SLIM_PARAMS_M = {1.0: 4.24, 0.75: 2.59, 0.5: 1.34, 0.25: 0.47}


@pytest.mark.parametrize("alpha", sorted(MOBILENET_PAPER))
def test_mobilenet_width_multiplier_matches_paper(alpha: float) -> None:
    paper_macs_m, paper_params_m = MOBILENET_PAPER[alpha]
    model = create("mobilenet_v1", alpha=alpha)
    assert model.input_shape == (3, 224, 224)
    params = n_params(model)
    assert params == mobilenet_params(alpha=alpha)
    assert round(params / 1e6, 1) == paper_params_m
    assert params / 1e6 == pytest.approx(MOBILENET_TF_SLIM_PARAMS_M[alpha], rel=0.03)
    if alpha != 0.25:  # the paper's "0.5 M" is 0.47 M rounded: 6% off, not within 3%
        assert params / 1e6 == pytest.approx(paper_params_m, rel=0.03)

    macs = mobilenet_macs(alpha=alpha)
    assert macs / 1e6 == pytest.approx(paper_macs_m, rel=0.03)
    assert measured_macs(model) == macs


@pytest.mark.parametrize(
    ("rho", "size", "paper_macs_m"), [(1.0, 224, 569), (0.857, 192, 418), (0.571, 128, 186)]
)
def test_mobilenet_resolution_multiplier(rho: float, size: int, paper_macs_m: int) -> None:
    model = create("mobilenet_v1", rho=rho)
    assert model.input_shape == (3, size, size)
    assert n_params(model) == mobilenet_params()  # resolution does not change parameters
    assert mobilenet_macs(size=size) / 1e6 == pytest.approx(paper_macs_m, rel=0.03)  # Table 7


def test_mobilenet_small_input_uses_stride_1_stem() -> None:
    model = create("mobilenet_v1", input_size=32, num_classes=10)
    assert model.input_shape == (3, 32, 32)
    assert measured_macs(model) == mobilenet_macs(size=32, stem_stride=1, num_classes=10)
    forced = create("mobilenet_v1", input_size=32, stem_stride=2, num_classes=10)
    assert measured_macs(forced) == mobilenet_macs(size=32, stem_stride=2, num_classes=10)


# --- bad input ---


def test_unknown_model_lists_available_names() -> None:
    with pytest.raises(UnknownModelError) as exc:
        create("resnet21")
    msg = str(exc.value)
    assert "\n" not in msg and "'resnet21'" in msg
    assert all(name in msg for name in list_models())
    assert isinstance(exc.value, ValueError)
    with pytest.raises(UnknownModelError):
        model_info("nope")


def test_unknown_kwarg_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        create("resnet20", depth=32)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'depth'" in msg and "num_classes, shortcut, width" in msg


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("resnet20", {"shortcut": "C"}, "shortcut"),
        ("resnet20", {"width": 0}, "width"),
        ("resnet20", {"num_classes": 0}, "num_classes"),
        ("lenet5", {"num_classes": 2.5}, "num_classes"),
        ("vgg16", {"width_mult": 0}, "width_mult"),
        ("vgg11", {"width_mult": -0.5}, "width_mult"),
        ("vgg11", {"width_mult": "wide"}, "width_mult"),
        ("mobilenet_v1", {"alpha": 0}, "alpha"),
        ("mobilenet_v1", {"alpha": math.inf}, "alpha"),
        ("mobilenet_v1", {"rho": -1}, "rho"),
        ("mobilenet_v1", {"rho": 0.001}, "rho"),
        ("mobilenet_v1", {"input_size": 0}, "input_size"),
        ("mobilenet_v1", {"input_size": 32, "rho": 0.5}, "rho"),
        ("mobilenet_v1", {"stem_stride": 3}, "stem_stride"),
    ],
)
def test_invalid_option_values(name: str, kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        create(name, **kwargs)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("depth", [21, 4, 0, -4, "20"])
def test_resnet_bad_depth(depth: object) -> None:
    with pytest.raises(ConfigError, match="depth"):
        resnet_cifar(depth=depth)


# --- register ---


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    list_models()  # load the built-in models before copying
    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))


class Tiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.input_shape = (1, 4, 4)
        self.num_classes = num_classes
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.usefixtures("scratch_registry")
def test_register_new_model() -> None:
    @register("tiny_test", dataset="mnist", paper="nobody", description="a test model")
    def tiny(num_classes: int = 10) -> nn.Module:
        return Tiny(num_classes)

    assert "tiny_test" in list_models()
    assert model_info("tiny_test").factory is tiny
    assert create("tiny_test", num_classes=3).num_classes == 3
    with pytest.raises(ConfigError, match=r"'hidden'.*accepted: num_classes"):
        create("tiny_test", hidden=4)


@pytest.mark.usefixtures("scratch_registry")
def test_register_rejects_duplicates_and_bad_datasets() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register("lenet5", dataset="mnist", paper="x", description="x")(lambda: Tiny(10))
    with pytest.raises(ConfigError, match="dataset"):
        register("svhn_net", dataset="svhn", paper="x", description="x")


@pytest.mark.usefixtures("scratch_registry")
def test_factory_with_var_kwargs_gets_every_option() -> None:
    @register("tiny_kw", dataset="mnist", paper="nobody", description="a test model")
    def tiny(**kwargs: int) -> nn.Module:
        return Tiny(kwargs.get("classes", 10))

    assert create("tiny_kw", classes=5).num_classes == 5


def test_errors_are_slimkit_errors() -> None:
    assert issubclass(ConfigError, SlimkitError) and issubclass(UnknownModelError, SlimkitError)
