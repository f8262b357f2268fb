"""Tests for slimkit.convert: k×k convs to depthwise-separable or k×1 → 1×k blocks.

Exactness at full multiplier / rank for every stride, padding and dilation; optimality of the
initialization against Eckart–Young (the fitted kernel's error equals the discarded singular
values); weights and MACs against the closed forms; zoo models; pickle-free save/load.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from slimkit.convert import (
    Conversion,
    asymmetric_layer,
    convert,
    convert_,
    load_factorized,
    plan_conversion,
    save_factorized,
    separable_layer,
)
from slimkit.data import ArrayDataset
from slimkit.distill import distill
from slimkit.errors import ConfigError
from slimkit.lowrank import LowRank, factorize, factorized_layers
from slimkit.measure import count_macs, count_params
from slimkit.measure.common import num_threads
from slimkit.nn import create
from slimkit.train import TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):
        yield


CASES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=1, bias=False),
    dict(kernel_size=(3, 5), stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
    dict(kernel_size=5, padding="same"),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=1, padding_mode="circular"),
]


def kernel_of(seq: nn.Sequential, kind: str) -> torch.Tensor:
    """The k×k kernel the block computes, composed from its two layers."""
    if kind == "separable":
        f, p = (
            seq.depthwise.weight.detach().double(),
            seq.pointwise.weight.detach().double()[..., 0, 0],
        )
        c = seq.depthwise.groups
        m = f.shape[0] // c
        return torch.einsum("ncj,cjpq->ncpq", p.reshape(-1, c, m), f.reshape(c, m, *f.shape[2:]))
    v, h = (
        seq.vertical.weight.detach().double()[..., 0],
        seq.horizontal.weight.detach().double()[:, :, 0],
    )
    return torch.einsum("mcp,nmq->ncpq", v, h)


@pytest.mark.parametrize("kwargs", CASES)
def test_full_rank_is_exact(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, **kwargs)
    kh, kw = conv.kernel_size
    x = torch.randn(2, 5, 13, 12)
    sep = separable_layer(conv, min(7, kh * kw))
    asym = asymmetric_layer(conv, min(5 * kh, 7 * kw))
    assert sep.depthwise.groups == 5 and sep.depthwise.out_channels == 5 * min(7, kh * kw)
    assert asym.vertical.kernel_size == (kh, 1) and asym.horizontal.kernel_size == (1, kw)
    with torch.no_grad():
        assert torch.allclose(sep(x), conv(x), atol=1e-5)
        assert torch.allclose(asym(x), conv(x), atol=1e-5)


def test_initialization_is_the_least_squares_optimum():
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 8, 3)
    w = conv.weight.detach().double()
    for m in (1, 2, 5):
        s = torch.linalg.svdvals(w.transpose(0, 1).reshape(6, 8, 9))  # per input channel
        optimum = float((s[:, m:] ** 2).sum())
        got = float(((kernel_of(separable_layer(conv, m), "separable") - w) ** 2).sum())
        assert got == pytest.approx(optimum, rel=1e-6)
    for r in (1, 4, 10):
        s = torch.linalg.svdvals(w.permute(1, 2, 0, 3).reshape(18, 24))
        got = float(((kernel_of(asymmetric_layer(conv, r), "asymmetric") - w) ** 2).sum())
        assert got == pytest.approx(float((s[r:] ** 2).sum()), rel=1e-6)


def test_error_falls_with_rank():
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 12, 3, padding=1)
    x = torch.randn(4, 8, 10, 10)
    with torch.no_grad():
        y = conv(x)
        sep = [float((separable_layer(conv, m)(x) - y).norm()) for m in (1, 3, 6, 9)]
        asym = [float((asymmetric_layer(conv, r)(x) - y).norm()) for r in (1, 4, 12, 24)]
    for errors in (sep, asym):
        assert all(a > b for a, b in itertools.pairwise(errors)), errors


def test_weights_and_macs_match_formulas():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(6, 10, 3, padding=1), nn.Conv2d(10, 12, (3, 5), stride=2, padding=(1, 2))
    )
    x = torch.randn(1, 6, 16, 16)
    cfg = Conversion(per_layer={"0": {"depth_multiplier": 2}, "1": {"to": "asymmetric", "rank": 4}})
    out = convert(model, cfg)
    params = [count_params(out.get_submodule(n)).total for n in ("0", "1")]
    assert params == [6 * 2 * 9 + 6 * 2 * 10 + 10, 4 * (10 * 3 + 12 * 5) + 12]
    macs = count_macs(out, x).per_layer
    assert macs["0.depthwise"] == 12 * 9 * 16 * 16
    assert macs["0.pointwise"] == 12 * 10 * 16 * 16
    assert macs["1.vertical"] == 4 * 10 * 3 * 8 * 16  # rows strided, all 16 columns
    assert macs["1.horizontal"] == 12 * 4 * 5 * 8 * 8
    plans = {p.name: p for p in plan_conversion(model, cfg)}
    assert [plans[n].params_after for n in ("0", "1")] == params


@pytest.mark.parametrize(
    "name, kwargs, to, converted",
    [
        ("lenet5_caffe", {}, "separable", 2),
        ("resnet20", {"width": 8}, "separable", 19),  # 19 3×3 convs; 1×1 shortcuts stay
        ("vgg11", {"width_mult": 0.125}, "asymmetric", 8),
    ],
)
def test_zoo_models_still_run(name, kwargs, to, converted):
    torch.manual_seed(4)
    model = create(name, **kwargs).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = convert(model, Conversion(to))
    blocks = factorized_layers(out)
    assert len(blocks) == converted and {b["method"] for b in blocks.values()} == {to}
    assert all(
        out.get_submodule(n.rsplit(".", 1)[0] if "." in n else n) is not None for n in blocks
    )
    assert (
        count_macs(out, torch.randn(1, *model.input_shape)).dense
        < count_macs(model, torch.randn(1, *model.input_shape)).dense
    )
    x = torch.randn(2, *model.input_shape)
    with torch.no_grad():
        assert out.eval()(x).shape == model(x).shape
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not factorized_layers(model)


def test_selection_and_in_place():
    model = create("lenet5_caffe")
    only = convert(model, Conversion(layers=["conv2"]))
    assert set(factorized_layers(only)) == {"conv2"}
    by_rule = convert(model, Conversion(layers=lambda n, m: m.in_channels > 1))
    assert set(factorized_layers(by_rule)) == {"conv2"}
    assert set(factorized_layers(convert(model, Conversion(exclude=("conv1",))))) == {"conv2"}
    same = convert_(model, Conversion("asymmetric", layers=["conv2"], rank=10))
    assert same is model and model.conv2.vertical.out_channels == 10


def test_unprofitable_convs_are_skipped():
    model = nn.Sequential(nn.Conv2d(2, 2, 3))  # 36 weights; separable m=1 needs 2·(9+2) = 22
    assert plan_conversion(model, Conversion())[0].skipped is None
    [plan] = plan_conversion(model, Conversion(depth_multiplier=2))
    assert "44 weights" in plan.skipped
    with pytest.raises(ConfigError, match="nothing to convert in Sequential"):
        convert(model, Conversion(depth_multiplier=2))
    out = convert(model, Conversion(depth_multiplier=2, skip_unprofitable=False))
    assert factorized_layers(out)["0"]["rank"] == 2


def test_convert_then_factorize_round_trip(tmp_path):
    torch.manual_seed(5)
    model = create("lenet5_caffe")
    out = factorize(
        convert(model, Conversion(layers=["conv2"])), LowRank(ratio=0.1, layers=["fc1"])
    )
    assert {b["method"] for b in factorized_layers(out).values()} == {"separable", "svd"}
    path = save_factorized(out, tmp_path / "c.safetensors", arch={"zoo": "lenet5_caffe"})
    loaded = load_factorized(path).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), out.eval()(x))
    assert factorized_layers(loaded) == factorized_layers(out)


def test_distill_from_the_original():
    torch.manual_seed(6)
    teacher = create("lenet5_caffe").eval()
    student = convert(teacher, Conversion(layers=["conv2"]))
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    data = ArrayDataset(images, torch.randint(0, 10, (64,)), tuple("0123456789"), (0.5,), (0.25,))
    before = student.conv2.depthwise.weight.clone()
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    distill(student, teacher, data, TrainConfig(epochs=1, batch_size=32, lr=0.01), alpha=0.9)
    assert not torch.equal(before, student.conv2.depthwise.weight)
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"to": "mobile"}, "to must be one of"),
        ({"depth_multiplier": 0}, "depth_multiplier must be an integer >= 1, got 0"),
        ({"rank": 1.5}, "rank must be an integer >= 1, got 1.5"),
        ({"layers": "conv1"}, "layers must be a list"),
        ({"per_layer": {"conv1": {"kind": "x"}}}, "unknown option 'kind'"),
        ({"per_layer": {"conv1": {"to": "cp"}}}, "to must be one of"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Conversion(**kwargs)


def test_bad_layers_and_ranks():
    model = create("lenet5_caffe")
    with pytest.raises(
        ConfigError,
        match=r"depth_multiplier 30 exceeds min\(out, kh·kw\) = 25 "
        r"of conv 'conv2' \(20→50, kernel 5×5\)",
    ):
        convert(model, Conversion(layers=["conv2"], depth_multiplier=30))
    with pytest.raises(ConfigError, match=r"rank 101 exceeds min\(in·kh, out·kw\) = 100"):
        convert(model, Conversion("asymmetric", layers=["conv2"], rank=101))
    with pytest.raises(ConfigError, match="'fc1' is a Linear, not a layer it replaces"):
        convert(model, Conversion(layers=["fc1"]))
    resnet = create("resnet20", width=8)
    with pytest.raises(
        ConfigError,
        match=r"'stages.1.0.shortcut.conv' cannot be replaced: it is "
        r"a 1×1 conv",
    ):
        convert(resnet, Conversion(layers=["stages.1.0.shortcut.conv"]))
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ConfigError, match=r"it is a grouped conv \(groups=4\)"):
        convert(grouped, Conversion(layers=["0"]))
    with pytest.raises(ConfigError, match="a 1×3 conv"):
        asymmetric_layer(nn.Conv2d(3, 3, (1, 3)))
    with pytest.raises(ConfigError, match="config must be a Conversion"):
        convert(model, LowRank(rank=2))
