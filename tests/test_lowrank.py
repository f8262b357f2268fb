"""Tests for slimkit.lowrank: SVD, Tucker-2 and CP factorization, rank rules, save/load.

Sizes are checked against the closed forms — SVD r(m+n), Tucker-2 C·r_in + r_in·r_out·k² +
r_out·N, CP R(C + kh + kw + N), each plus the bias — through count_params and count_macs, not
through the code's own bookkeeping. Exactness: at full rank the block must give the layer's
outputs up to float32 rounding, for every stride, padding, dilation and padding mode.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from slimkit.data import ArrayDataset
from slimkit.distill import distill
from slimkit.errors import ConfigError, WeightsError
from slimkit.lowrank import (
    METADATA_KEY,
    LowRank,
    cp_als,
    cp_layer,
    evbmf_rank,
    factorize,
    factorize_,
    factorized_layers,
    load_factorized,
    plan_factorization,
    save_factorized,
    svd_layer,
    tucker2_layer,
)
from slimkit.measure import count_macs, count_params
from slimkit.measure.common import num_threads
from slimkit.nn import create
from slimkit.prune import ChannelPruning, prune_channels
from slimkit.train import TrainConfig
from slimkit.weights import save_weights


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):
        yield


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor, atol: float = 1e-5) -> bool:
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    return ya.shape == yb.shape and torch.allclose(ya, yb, atol=atol, rtol=1e-4)


class Small(nn.Module):
    """conv 3×3 (4→6) → conv 3×3 stride 2 (6→8) → 1×1 (8→10) → pool → linear 10→5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False)
        self.point = nn.Conv2d(8, 10, 1)
        self.fc = nn.Linear(10, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.point(x).mean((2, 3))
        return self.fc(x)


# --- exactness at full rank ----------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_svd_full_rank_is_exact(bias):
    torch.manual_seed(0)
    lin = nn.Linear(20, 12, bias=bias)
    x = torch.randn(3, 7, 20)  # extra leading dims pass through
    seq = svd_layer(lin, 12)
    assert [type(m) for m in seq] == [nn.Linear, nn.Linear]
    assert torch.allclose(seq(x), lin(x), atol=1e-5)
    conv = nn.Conv2d(6, 9, 1, stride=2, bias=bias)
    xi = torch.randn(2, 6, 9, 9)
    assert torch.allclose(svd_layer(conv, 6)(xi), conv(xi), atol=1e-5)


CONV_CASES = [
    dict(stride=1, padding=1),
    dict(stride=2, padding=1, bias=False),
    dict(stride=(2, 1), padding=(2, 0), dilation=(2, 1)),
    dict(padding="same"),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=1, padding_mode="circular"),
    dict(padding=1, padding_mode="replicate"),
]


@pytest.mark.parametrize("kwargs", CONV_CASES)
@pytest.mark.parametrize("iters", [0, 2])
def test_tucker2_full_rank_is_exact(kwargs, iters):
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 7, (3, 5) if "dilation" in kwargs else 3, **kwargs)
    x = torch.randn(2, 5, 10, 11)
    seq = tucker2_layer(conv, (5, 7), iters=iters)
    assert [n for n, _ in seq.named_children()] == ["reduce", "core", "expand"]
    assert torch.allclose(seq(x), conv(x), atol=1e-5)


@pytest.mark.parametrize("kwargs", CONV_CASES)
def test_cp_recovers_a_cp_kernel(kwargs):
    """A kernel that is exactly rank 3 is fitted exactly (and the padding split is exact)."""
    torch.manual_seed(2)
    conv = nn.Conv2d(5, 7, (3, 5) if "dilation" in kwargs else 3, **kwargs)
    kh, kw = conv.kernel_size
    a, d, b, c = torch.randn(7, 3), torch.randn(5, 3), torch.randn(kh, 3), torch.randn(kw, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("nr,cr,pr,qr->ncpq", a, d, b, c))
    seq = cp_layer(conv, 3, iters=300)
    x = torch.randn(2, 5, 10, 11)
    assert [n for n, _ in seq.named_children()] == ["reduce", "vertical", "horizontal", "expand"]
    assert seq.vertical.groups == seq.horizontal.groups == 3
    assert rel(seq(x), conv(x)) < 1e-4


def test_full_rank_model_is_exact():
    torch.manual_seed(3)
    model = create("resnet20", width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    full = {
        n: {
            "rank": (m.in_channels, m.out_channels)
            if m.kernel_size != (1, 1)
            else min(m.in_channels, m.out_channels)
        }
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }
    full["fc"] = {"rank": 10}
    out = factorize(model, LowRank(per_layer=full, skip_unprofitable=False))
    assert len(factorized_layers(out)) == len(full)
    assert same_outputs(out, model, x, atol=1e-4)


# --- error falls as rank grows -------------------------------------------------------------


def test_error_falls_with_rank():
    torch.manual_seed(4)
    lin, conv = nn.Linear(30, 20), nn.Conv2d(8, 12, 3, padding=1)
    x, xi = torch.randn(16, 30), torch.randn(4, 8, 8, 8)
    with torch.no_grad():
        svd = [rel(svd_layer(lin, r)(x), lin(x)) for r in (1, 4, 10, 20)]
        tucker = [rel(tucker2_layer(conv, r)(xi), conv(xi)) for r in (1, 3, 6, (8, 12))]
        hooi = [rel(tucker2_layer(conv, r, iters=3)(xi), conv(xi)) for r in (1, 3, 6)]
        cp = [rel(cp_layer(conv, r, iters=60)(xi), conv(xi)) for r in (1, 6, 24, 72)]
    for errors in (svd, tucker, hooi, cp):
        assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert svd[-1] < 1e-5 and tucker[-1] < 1e-5 and cp[-1] < 1e-3


def test_hooi_fits_at_least_as_well_as_hosvd():
    torch.manual_seed(5)
    w = torch.randn(12, 10, 3, 3)
    conv = nn.Conv2d(10, 12, 3)
    with torch.no_grad():
        conv.weight.copy_(w)
    x = torch.randn(4, 10, 7, 7)
    with torch.no_grad():
        hosvd = rel(tucker2_layer(conv, (4, 5))(x), conv(x))
        hooi = rel(tucker2_layer(conv, (4, 5), iters=5)(x), conv(x))
    assert hooi <= hosvd + 1e-6


def test_cp_als_balances_factors():
    torch.manual_seed(6)
    factors = cp_als(torch.randn(6, 5, 3, 3, dtype=torch.float64), 4, 30)
    norms = torch.stack([f.norm(dim=0) for f in factors])
    assert torch.allclose(norms, norms[:1].expand_as(norms), rtol=1e-9)


# --- parameter and MAC counts match the closed forms ---------------------------------------


def test_params_and_macs_match_formulas():
    torch.manual_seed(7)
    model = Small()
    x = torch.randn(1, 4, 12, 12)
    cfg = LowRank(
        per_layer={
            "conv1": {"rank": (2, 3)},
            "conv2": {"rank": 3, "method": "cp"},
            "point": {"rank": 2},
            "fc": {"rank": 2},
        },
        skip_unprofitable=False,
    )
    out = factorize(model, cfg)
    p = lambda m: count_params(m).total  # noqa: E731
    # conv1 Tucker-2 (C=4, N=6, k=3, r=(2,3)) + bias 6; conv2 CP R=3, no bias;
    # point SVD r=2 of 8→10 + bias 10; fc SVD r=2 of 10→5 + bias 5
    expected = [
        4 * 2 + 2 * 3 * 9 + 3 * 6 + 6,
        3 * (6 + 3 + 3 + 8),
        2 * (8 + 10) + 10,
        2 * (10 + 5) + 5,
    ]
    assert [p(out.get_submodule(n)) for n in ("conv1", "conv2", "point", "fc")] == expected
    assert p(out) == sum(expected)
    macs = count_macs(out, x).per_layer
    hw, hw2 = 12 * 12, 6 * 6  # conv2 has stride 2
    assert macs["conv1.reduce"] == 4 * 2 * hw
    assert macs["conv1.core"] == 2 * 3 * 9 * hw
    assert macs["conv1.expand"] == 3 * 6 * hw
    assert macs["conv2.reduce"] == 6 * 3 * hw  # 1×1 at input resolution
    assert macs["conv2.vertical"] == 3 * 3 * 6 * 12  # rows strided, columns not yet
    assert macs["conv2.horizontal"] == 3 * 3 * hw2
    assert macs["conv2.expand"] == 3 * 8 * hw2
    assert macs["point.reduce"] + macs["point.expand"] == 2 * (8 + 10) * hw2
    assert macs["fc.reduce"] + macs["fc.expand"] == 2 * (10 + 5)


def test_lenet_svd_layer_counts():
    model = create("lenet300_100")
    out = factorize(model, LowRank(layers=["fc1"], rank=40))
    before, after = count_params(model).total, count_params(out).total
    assert before - after == 784 * 300 - 40 * (784 + 300)
    x = torch.randn(1, 1, 28, 28)
    assert count_macs(model, x).dense - count_macs(out, x).dense == 784 * 300 - 40 * 1084


def test_plans_report_the_same_counts():
    model = Small()
    plans = {p.name: p for p in plan_factorization(model, LowRank(ratio=0.5))}
    out = factorize(model, LowRank(ratio=0.5))
    for name, plan in plans.items():
        if plan.skipped is None:
            assert count_params(out.get_submodule(name)).total == plan.params_after
        assert count_params(model.get_submodule(name)).total == plan.params


# --- rank rules -----------------------------------------------------------------------------


def test_energy_rule_picks_smallest_rank():
    torch.manual_seed(8)
    lin = nn.Linear(40, 25)
    s = torch.linalg.svdvals(lin.weight.detach().double())
    kept = (s**2).cumsum(0) / (s**2).sum()
    model = nn.Sequential(lin)
    [plan] = plan_factorization(model, LowRank(energy=0.8, skip_unprofitable=False))
    r = plan.rank
    assert kept[r - 1] >= 0.8 > kept[r - 2]


def test_ratio_rule_fits_the_budget():
    model = Small()
    for ratio in (0.2, 0.5, 0.8):
        for plan in plan_factorization(model, LowRank(ratio=ratio, skip_unprofitable=False)):
            bias = plan.params - plan.macs  # params = weights + bias; macs = weights here
            smallest = plan.rank in (1, (1, 1))  # never below rank 1, whatever the budget
            assert plan.params_after - bias <= ratio * plan.macs or smallest
    lin = nn.Sequential(nn.Linear(784, 300))
    [plan] = plan_factorization(lin, LowRank(ratio=0.2))
    assert plan.rank == 43 and 43 * 1084 <= 0.2 * 784 * 300 < 44 * 1084


def test_vbmf_finds_the_rank_under_noise():
    g = torch.Generator().manual_seed(9)
    signal = torch.randn(60, 5, generator=g) @ torch.randn(5, 90, generator=g)
    noisy = signal + 0.05 * torch.randn(60, 90, generator=g)
    assert evbmf_rank(noisy) == 5
    assert evbmf_rank(noisy.T) == 5
    conv = nn.Conv2d(16, 24, 3)
    core = torch.randn(4, 3, 3, 3, generator=g)
    w = torch.einsum(
        "bapq,nb,ca->ncpq", core, torch.randn(24, 4, generator=g), torch.randn(16, 3, generator=g)
    )
    with torch.no_grad():
        conv.weight.copy_(w + 0.01 * torch.randn(w.shape, generator=g))
    [plan] = plan_factorization(nn.Sequential(conv), LowRank(rank="vbmf"))
    assert plan.rank == (3, 4)


# --- whole models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, cfg",
    [
        ("lenet300_100", {}, LowRank(energy=0.9)),
        ("resnet20", {"width": 8}, LowRank(ratio=0.4, exclude=("stem.conv",))),
        ("vgg11", {"width_mult": 0.125}, LowRank(ratio=0.3, conv="cp", iters=20)),
        ("transformer_mnist", {}, LowRank(ratio=0.5)),
    ],
)
def test_zoo_models_still_run(name, kwargs, cfg):
    torch.manual_seed(10)
    model = create(name, **kwargs).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, *model.input_shape)
    out = factorize(model, cfg)
    assert factorized_layers(out)
    assert count_params(out).total < count_params(model).total
    with torch.no_grad():
        assert out.eval()(x).shape == model(x).shape
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # untouched
    assert not factorized_layers(model)
    assert not any(m.training for m in out.modules())  # blocks take the model's mode


def test_attention_and_stem_rules():
    model = create("transformer_mnist")
    plans = {p.name for p in plan_factorization(model, LowRank(ratio=0.5))}
    assert not any("attn" in n for n in plans)  # MultiheadAttention reads out_proj.weight itself
    with pytest.raises(ConfigError, match=r"out_proj.*MultiheadAttention"):
        factorize(model, LowRank(ratio=0.5, layers=["blocks.0.attn.out_proj"]))


def test_shared_weights_and_blocks_are_left_alone():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.c(self.b(self.a(x)))

    plans = plan_factorization(Tied(), LowRank(rank=2))
    assert [p.name for p in plans] == ["c"]
    with pytest.raises(ConfigError, match="shared with 'b'"):
        plan_factorization(Tied(), LowRank(rank=2, layers=["a"]))
    twin = Tied()
    twin.d = twin.c  # the same layer under a second name
    with pytest.raises(ConfigError, match="'c' cannot be replaced: it or its weights are shared"):
        plan_factorization(twin, LowRank(rank=2, layers=["c"]))
    once = factorize(Tied(), LowRank(rank=2))
    assert set(factorized_layers(once)) == {"c"}
    with pytest.raises(ConfigError, match=r"nothing to factorize in Tied \(no layer chosen\)"):
        factorize(once, LowRank(rank=1))  # the layers inside a block are not re-factorized
    with pytest.raises(ConfigError, match=r"'c\.reduce' cannot be replaced: inside a factorized"):
        factorize(once, LowRank(rank=1, layers=["c.reduce"]))


def test_in_place_and_unprofitable_layers():
    model = create("lenet300_100")
    plans = {p.name: p for p in plan_factorization(model, LowRank(energy=1.0))}
    assert all(p.skipped for p in plans.values())
    with pytest.raises(ConfigError, match="nothing to factorize in LeNet300100"):
        factorize(model, LowRank(energy=1.0))
    same = factorize_(model, LowRank(rank=10, layers=["fc1"]))
    assert same is model and isinstance(model.fc1, nn.Sequential)


def test_distill_recovers_through_the_blocks():
    torch.manual_seed(11)
    teacher = create("lenet300_100").eval()
    student = factorize(teacher, LowRank(rank=4, layers=["fc1"]))
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    data = ArrayDataset(images, torch.randint(0, 10, (64,)), tuple("0123456789"), (0.5,), (0.25,))
    before = student.fc1.reduce.weight.clone()
    distill(student, teacher, data, TrainConfig(epochs=1, batch_size=32, lr=0.01), alpha=0.9)
    assert not torch.equal(before, student.fc1.reduce.weight)


# --- saving and loading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, cfg",
    [
        ("lenet300_100", {}, LowRank(ratio=0.2, layers=["fc1", "fc2"])),
        ("resnet20", {"width": 8}, LowRank(ratio=0.4)),
        ("vgg11", {"width_mult": 0.125}, LowRank(ratio=0.4, conv="cp", iters=10)),
    ],
)
def test_save_load_round_trip_is_exact(tmp_path, name, kwargs, cfg):
    torch.manual_seed(12)
    out = factorize(create(name, **kwargs), cfg).eval()
    path = save_factorized(out, tmp_path / "f.safetensors", arch={"zoo": name, "kwargs": kwargs})
    loaded = load_factorized(path).eval()
    x = torch.randn(3, *out.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), out(x))
    assert factorized_layers(loaded) == factorized_layers(out)
    again = save_factorized(
        loaded, tmp_path / "g.safetensors", arch={"zoo": name, "kwargs": kwargs}
    )
    assert load_file(again).keys() == load_file(path).keys()
    with safe_open(str(path), framework="pt") as f:
        desc = json.loads(f.metadata()[METADATA_KEY])
    assert set(desc["factorized"]) == set(factorized_layers(out))
    assert not any(n.startswith(tuple(f"{b}." for b in desc["factorized"])) for n in desc["layers"])


def test_pruned_then_factorized_round_trip(tmp_path):
    torch.manual_seed(13)
    model = create("lenet300_100")
    x = torch.randn(2, 1, 28, 28)
    pruned = prune_channels(model, ChannelPruning(ratio=0.5), x)
    out = factorize(pruned, LowRank(rank=20, layers=["fc1"])).eval()
    loaded = load_factorized(
        save_factorized(out, tmp_path / "p.safetensors", arch={"zoo": "lenet300_100"})
    ).eval()
    assert loaded.fc2.in_features == 150
    with torch.no_grad():
        assert torch.equal(loaded(x), out(x))


def test_factory_arch(tmp_path):
    out = factorize(Small(), LowRank(ratio=0.5)).eval()
    path = save_factorized(out, tmp_path / "s.safetensors", arch={"kwargs": {}})
    with pytest.raises(ConfigError, match="factory="):
        load_factorized(path)
    loaded = load_factorized(path, factory=Small).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), out(x))


def test_save_and_load_errors(tmp_path):
    model = create("lenet300_100")
    with pytest.raises(ConfigError, match="no factorized or converted layers"):
        save_factorized(model, tmp_path / "x.safetensors", arch={"zoo": "lenet300_100"})
    plain = save_weights(model, tmp_path / "plain.safetensors")
    with pytest.raises(WeightsError, match="no factorized-model description"):
        load_factorized(plain)
    out = factorize(model, LowRank(rank=8, layers=["fc1"]))
    path = save_factorized(out, tmp_path / "f.safetensors", arch={"zoo": "lenet300_100"})
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as f:
        desc = json.loads(f.metadata()[METADATA_KEY])

    def rewrite(d, name):
        target = tmp_path / name
        save_file(tensors, str(target), metadata={METADATA_KEY: json.dumps(d)})
        return target

    bad = json.loads(json.dumps(desc))
    bad["factorized"]["fc1"]["layers"][0]["in_features"] = -1
    with pytest.raises(WeightsError, match=r"block 'fc1', layer 'reduce': features"):
        load_factorized(rewrite(bad, "a.safetensors"))
    bad = json.loads(json.dumps(desc))
    bad["factorized"]["nope"] = bad["factorized"].pop("fc1")
    with pytest.raises(WeightsError, match="replaces layer 'nope'"):
        load_factorized(rewrite(bad, "b.safetensors"))
    bad = json.loads(json.dumps(desc))
    bad["factorized"]["fc1"]["layers"][0]["out_features"] = 9
    with pytest.raises(WeightsError, match=r"'fc1.reduce.weight' has shape \(8, 784\)"):
        load_factorized(rewrite(bad, "c.safetensors"))
    with pytest.raises(WeightsError, match="corrupt"):
        save_file(tensors, str(tmp_path / "d.safetensors"), metadata={METADATA_KEY: "{"})
        load_factorized(tmp_path / "d.safetensors")


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"rank": (1, 2, 3)}, "rank must be"),
        ({"energy": 0.0}, r"energy must be a number in \(0, 1\]"),
        ({"ratio": 1.0}, r"ratio must be a number in \(0, 1\), got 1.0"),
        ({"rank": 3, "energy": 0.5}, "give one of rank, energy or ratio, got rank, energy"),
        ({"rank": 3, "conv": "tt"}, "conv must be one of"),
        ({"rank": 3, "linear": "tucker2"}, "linear must be one of"),
        ({"rank": 3, "layers": "fc1"}, "layers must be a list"),
        ({"rank": 3, "iters": -1}, "iters must be an integer >= 0"),
        ({"per_layer": {"fc": {"rnk": 3}}}, "unknown option 'rnk'"),
        ({"per_layer": {"fc": {"method": "qr"}}}, "method must be one of"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LowRank(**kwargs)


def test_ranks_beyond_the_layer():
    model = create("lenet300_100")
    with pytest.raises(ConfigError, match=r"SVD rank 400 exceeds min\(out, in\) = 300 .*'fc1'"):
        factorize(model, LowRank(rank=400, layers=["fc1"]))
    with pytest.raises(
        ConfigError,
        match=r"Tucker-2 ranks \(in 5, out 2\) exceed the channels "
        r"\(in 4, out 6\)",
    ):
        factorize(Small(), LowRank(per_layer={"conv1": {"rank": (5, 2)}}))
    with pytest.raises(
        ConfigError, match=r"CP rank 200 exceeds 36, the most Conv2d 'conv1' \(4→6, kernel 3×3\)"
    ):
        factorize(Small(), LowRank(per_layer={"conv1": {"rank": 200, "method": "cp"}}))
    with pytest.raises(ConfigError, match="CP has no singular values"):
        factorize(Small(), LowRank(energy=0.9, conv="cp", layers=["conv1"]))
    with pytest.raises(ConfigError, match="give one rank"):
        factorize(Small(), LowRank(per_layer={"fc": {"rank": (2, 3)}}))
    with pytest.raises(ConfigError, match="rank must be"):
        tucker2_layer(nn.Conv2d(3, 3, 3), 0)


def test_bad_layer_choices():
    with pytest.raises(ConfigError, match=r"'nope' is not a module of Small; eligible: conv1"):
        factorize(Small(), LowRank(rank=2, layers=["nope"]))
    with pytest.raises(ConfigError, match="exclude names 'nope'"):
        factorize(Small(), LowRank(rank=2, exclude=("nope",)))
    with pytest.raises(ConfigError, match="per_layer names 'nope'"):
        factorize(Small(), LowRank(per_layer={"nope": {"rank": 2}}))
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2))
    with pytest.raises(ConfigError, match=r"'0' cannot be replaced: grouped conv \(groups=2\)"):
        factorize(grouped, LowRank(rank=2, layers=["0"]))
    with pytest.raises(ConfigError, match=r"expected an nn\.Linear or nn\.Conv2d, got ReLU"):
        svd_layer(nn.ReLU(), 2)
    with pytest.raises(ConfigError, match="svd_layer factorizes Linear and 1×1 convs"):
        svd_layer(nn.Conv2d(3, 3, 3), 2)
    with pytest.raises(ConfigError, match="config must be a LowRank"):
        factorize(Small(), {"rank": 2})
    with pytest.raises(ConfigError, match=r"no rank, energy or ratio for layer 'fc'"):
        factorize(Small(), LowRank(layers=["fc"]))
