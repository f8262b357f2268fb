"""Tests for slimkit.prune.structured and slimkit.prune.importance.

Sizes are checked against independent formulas: a pruned ResNet/VGG/MobileNet at ratio 0.5 must
count exactly like the zoo model built at half width, a pruned conv chain like Σ k²·c_in·c_out.
Exactness is checked by zeroing what the removed channels feed: the pruned model must then give
the same outputs as the unpruned one, which also proves the channel order survives concats,
shuffles and flattens.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError, SlimkitError, WeightsError
from slimkit.graph import Group, build_graph
from slimkit.measure import count_macs, count_params
from slimkit.measure.common import num_threads
from slimkit.nn import create, list_models
from slimkit.prune import (
    IMPORTANCE,
    ChannelPruning,
    accumulate_grads,
    bn_sparsity,
    bn_sparsity_loss,
    get_importance,
    load_pruned,
    prune_channels,
    prune_channels_,
    save_pruned,
)
from slimkit.train import TrainConfig, fit
from slimkit.weights import save_weights
from test_graph import (
    FAST_KWARGS,
    SYNTHETIC,
    Chain,
    ShuffleNet,
    Untraceable,
    example,
    group_of,
    synthetic,
    zoo_model,
)


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):
        yield


def params(model: nn.Module) -> int:
    return count_params(model).total


def macs(model: nn.Module, x: Tensor) -> int:
    return count_macs(model, x[:1]).dense


def same(a: nn.Module, b: nn.Module, x: Tensor) -> bool:
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), rtol=1e-5, atol=1e-5)


# --- every model, every pattern -------------------------------------------------------------


# nn.MultiheadAttention is a boundary: the Transformer's residual stream keeps its width and only
# the MLP hidden layers halve, so its counts fall less.
SHARE_LEFT = {"transformer_mnist": 0.8}


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_halves(name):
    model = zoo_model(name)
    x = example(model)
    pruned = prune_channels(model, ChannelPruning(0.5), x)
    assert pruned(x).shape == model(x).shape
    left = SHARE_LEFT.get(name, 0.6)
    assert params(pruned) < left * params(model)
    assert macs(pruned, x) < left * macs(model, x)
    with torch.no_grad():
        assert torch.equal(prune_channels(model, ChannelPruning(0.0), x)(x), model(x))


@pytest.mark.parametrize(
    ("name", "half"),
    [
        ("resnet20", {"width": 8}),
        ("resnet32", {"width": 8}),
        ("vgg11", {"width_mult": 0.125}),
        ("vgg16", {"width_mult": 0.125}),
        ("mobilenet_v1", {"input_size": 32, "alpha": 0.125}),
    ],
)
def test_pruned_at_half_counts_like_the_half_width_model(name, half):
    model = zoo_model(name)
    x = example(model)
    pruned = prune_channels(model, ChannelPruning(0.5), x)
    reference = create(name, **half)
    assert params(pruned) == params(reference)
    assert macs(pruned, x) == macs(reference, x)


def lenet_formula(c1: int, c2: int, f1: int, f2: int) -> tuple[int, int]:
    """LeNet-5 (conv 5×5 pad 2 → pool → conv 5×5 → pool → fc → fc → fc 10) params and MACs."""
    p = 25 * c1 + c1 + 25 * c1 * c2 + c2 + 25 * c2 * f1 + f1 + f1 * f2 + f2 + f2 * 10 + 10
    m = 25 * c1 * 28 * 28 + 25 * c1 * c2 * 10 * 10 + 25 * c2 * f1 + f1 * f2 + f2 * 10
    return p, m


def test_lenet5_formula():
    model = zoo_model("lenet5")
    x = example(model)
    assert (params(model), macs(model, x)) == lenet_formula(6, 16, 120, 84)
    pruned = prune_channels(model, ChannelPruning(0.5), x)
    assert (params(pruned), macs(pruned, x)) == lenet_formula(3, 8, 60, 42)


def chain_formula(widths: tuple[int, ...], hw: int = 64) -> tuple[int, int]:
    chans = (3, *widths)
    p = sum(9 * a * b + b for a, b in itertools.pairwise(chans)) + widths[-1] * 10 + 10
    m = sum(9 * a * b * hw for a, b in itertools.pairwise(chans)) + widths[-1] * 10
    return p, m


@pytest.mark.parametrize(
    ("config", "widths"),
    [
        (ChannelPruning(0.5), (4, 8, 4)),
        (ChannelPruning(0.5, layer_ratios={"convs.1": 0.25}), (4, 12, 4)),
        (ChannelPruning(0.6, round_to=4), (4, 8, 4)),
        (ChannelPruning(0.9, min_channels=6), (6, 6, 6)),
        (ChannelPruning(0.5, exclude=("convs.1",)), (8, 16, 4)),
        (ChannelPruning(0.5, scope="global"), None),
    ],
)
def test_chain_sizes_follow_the_config(config, widths):
    model = synthetic("chain")
    x = example(model)
    pruned = prune_channels(model, config, x)
    got = tuple(c.out_channels for c in pruned.convs)
    if widths is None:  # global: about half of all 32 channels, at most 90% of any group
        assert 15 <= 32 - sum(got) <= 16 and all(w >= 1 for w in got)
        widths = got
    assert got == widths
    assert (params(pruned), macs(pruned, x)) == chain_formula(widths)


def zero_consumers_and_pick(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Pick half of each group's units (half of each constraint cell) and zero the weights that
    read them, so that removing them cannot change the output. Returns per-group scores that
    make the pruner pick exactly those units."""
    gen = torch.Generator().manual_seed(0)
    scores = []
    for g in build_graph(model, x).groups:
        cells = torch.zeros(g.size, dtype=torch.long)
        if g.partitions:
            cells = torch.stack(g.partitions, 1).unique(dim=0, return_inverse=True)[1]
        score = torch.ones(g.size)
        for cell in cells.unique():
            members = torch.nonzero(cells == cell).flatten()
            score[members[torch.randperm(len(members), generator=gen)[: len(members) // 2]]] = 0
        scores.append(score)
        with torch.no_grad():
            for m in g.members:
                if m.role == "in":
                    for unit, chans in zip(m.units.tolist(), m.channels.tolist(), strict=True):
                        if score[unit] == 0:
                            _zero_input(m.module, chans)
    return scores


def _zero_input(layer: nn.Module, chans: list[int]) -> None:
    if isinstance(layer, nn.Linear):
        layer.weight[:, chans] = 0
        return
    groups, cin, cout = layer.groups, layer.in_channels, layer.out_channels
    if groups > 1 and groups == cin:
        return  # depthwise: its outputs are removed with the unit
    per = cin // groups
    for c in chans:
        g, offset = divmod(c, per)
        layer.weight[g * cout // groups : (g + 1) * cout // groups, offset] = 0


@pytest.mark.parametrize("name", sorted(set(SYNTHETIC) - {"group_norm"}))
def test_synthetic_pattern_prunes_exactly(name):
    model = synthetic(name)
    x = example(model, 3)
    with torch.no_grad():
        assert torch.equal(prune_channels(model, ChannelPruning(0.0), x)(x), model(x))
    scores = zero_consumers_and_pick(model, x)
    pruned = prune_channels(model, ChannelPruning(0.5, importance=lambda g: scores[g.index]), x)
    assert params(pruned) < params(model)
    assert same(pruned, model, x)


def test_zeroed_filters_are_removed_without_changing_outputs():
    model = synthetic("chain")
    x = example(model)
    dead = [1, 2, 5, 6]
    with torch.no_grad():
        model.convs[0].weight[dead] = 0
        model.convs[0].bias[dead] = 0
    pruned = prune_channels(model, ChannelPruning(0.0, layer_ratios={"convs.0": 0.5}), x)
    assert pruned.convs[0].out_channels == 4
    keep = [0, 3, 4, 7]
    assert torch.equal(pruned.convs[0].weight, model.convs[0].weight[keep])
    assert torch.equal(pruned.convs[1].weight, model.convs[1].weight[:, keep])
    assert same(pruned, model, x)


def test_grouped_conv_and_group_norm_stay_valid():
    # 2 groups of 4 mid channels: the shuffle moves offset b of both groups into conv2's group
    # b // 2, so units pair up inside conv2's groups; with 4 groups of 4, every unit is a whole
    # conv2 group and the mid channels cannot shrink (the residual stream still does).
    for groups, mid_shrinks in ((2, True), (4, False)):
        model = ShuffleNet(groups).eval()
        x = example(model)
        pruned = prune_channels(model, ChannelPruning(0.5), x)
        for name in ("unit1.conv1", "unit1.conv2", "unit2.conv1"):
            conv, old = pruned.get_submodule(name), model.get_submodule(name)
            assert conv.groups == groups
            shrinks = mid_shrinks or name != "unit1.conv2"
            assert conv.in_channels == old.in_channels // (2 if shrinks else 1)
        assert pruned(x).shape == (2, 10)
    model = synthetic("group_norm")
    pruned = prune_channels(model, ChannelPruning(0.5), example(model))
    assert (pruned.gn.num_groups, pruned.gn.num_channels) == (4, 8)
    assert pruned.conv1.out_channels == 8


def test_depthwise_and_attention_shapes():
    model = synthetic("depthwise")
    pruned = prune_channels(model, ChannelPruning(0.5), example(model))
    assert (pruned.dw.in_channels, pruned.dw.out_channels, pruned.dw.groups) == (4, 8, 4)
    model = synthetic("attention")
    pruned = prune_channels(model, ChannelPruning(0.5), example(model))
    assert (pruned.fc1.out_features, pruned.fc2.in_features) == (32, 32)
    assert pruned.attn.embed_dim == 16 and pruned.norm1.normalized_shape == (16,)


def test_global_scope_caps_each_group():
    model = zoo_model("resnet20")
    x = example(model)
    config = ChannelPruning(0.5, scope="global", max_ratio=0.6)
    graph = build_graph(model, x)
    pruned = prune_channels(model, config, x)
    total = kept = 0
    for g in graph.groups:
        name = next(m.name for m in g.members if m.role == "out")
        n = g.size
        k = pruned.get_submodule(name).out_channels - (model.get_submodule(name).out_channels - n)
        assert k >= 0.4 * n
        total, kept = total + n, kept + k
    assert 0.45 <= 1 - kept / total <= 0.5


def test_global_scope_ranks_raw_scores_when_not_normalized():
    def scores(group: Group) -> Tensor:  # convs.0: 1…8; the other groups: 100× larger
        scale = 1.0 if group.names == ["convs.0"] else 100.0
        return scale * torch.arange(1, group.size + 1, dtype=torch.float64)

    model = synthetic("chain")  # widths 8, 16, 8: 8 of 32 channels go
    x = example(model)
    kept = {}
    for normalize in (True, False):
        config = ChannelPruning(0.25, importance=scores, scope="global", normalize=normalize)
        pruned = prune_channels(model, config, x)
        kept[normalize] = [c.out_channels for c in pruned.convs]
    assert kept[True] == [6, 12, 6]  # score / group mean: the low ranks of every group go
    assert kept[False] == [1, 15, 8]  # raw: convs.0 first, down to max_ratio's floor
    with pytest.raises(ConfigError, match="normalize"):
        ChannelPruning(0.5, normalize="no")


def test_model_is_not_modified_but_inplace_form_is():
    model = zoo_model("resnet20")
    x = example(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prune_channels(model, ChannelPruning(0.5), x)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    same_model = prune_channels_(model, ChannelPruning(0.5), x)
    assert same_model is model and model.stem.conv.out_channels == 8


# --- importance criteria ----------------------------------------------------------------------


def weak_channel_scores(criterion: str) -> tuple[Tensor, int]:
    """Scores of the stem group with channel 3 planted as the weakest for `criterion`."""
    planted = 3
    model = synthetic("residual" if criterion == "bn_scale" else "chain")
    x = example(model, 8)
    with torch.no_grad():
        if criterion == "bn_scale":
            model.bn1.weight[planted] = 0.01
        elif criterion == "fpgm":  # the filter every other one is closest to: the mean
            w = model.convs[0].weight
            w[planted] = (w.sum(0) - w[planted]) / (len(w) - 1)
        else:
            model.convs[0].weight[planted] *= 0.01
    if criterion == "taylor":
        accumulate_grads(model, (x, torch.randint(0, 10, (8,))))
    name = "conv1" if criterion == "bn_scale" else "convs.0"
    group = group_of(build_graph(model, x).groups, name)
    return get_importance(criterion)(group), planted


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor", "bn_scale", "fpgm"])
def test_each_criterion_ranks_the_planted_channel_lowest(criterion):
    scores, planted = weak_channel_scores(criterion)
    assert scores.shape == (8,) and int(scores.argmin()) == planted
    assert sorted(IMPORTANCE) == ["bn_scale", "fpgm", "l1", "l2", "taylor"]


def test_importance_aggregates_coupled_producers():
    model = synthetic("residual")
    group = group_of(build_graph(model, example(model)).groups, "stem")
    expected = model.stem.weight.abs().flatten(1).sum(1) + model.conv2.weight.abs().flatten(1).sum(
        1
    )
    assert torch.allclose(IMPORTANCE["l1"](group).float(), expected)


def test_taylor_prunes_with_a_data_batch_and_asks_for_one_otherwise():
    model = synthetic("chain")
    x = example(model, 8)
    batch = (x, torch.randint(0, 10, (8,)))
    pruned = prune_channels(model, ChannelPruning(0.5, importance="taylor"), x, data_batch=batch)
    assert pruned.convs[0].out_channels == 4
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ConfigError, match="data_batch"):
        prune_channels(model, ChannelPruning(0.5, importance="taylor"), x)


def test_bn_sparsity_loss_shrinks_gammas_during_fit():
    model = synthetic("residual")
    gammas = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.allclose(bn_sparsity_loss(model, 0.5), 0.5 * gammas)
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    data = ArrayDataset(images, torch.randint(0, 10, (32,)), tuple("abcdefghij"), (0.5,) * 3,
                        (0.25,) * 3)  # fmt: skip
    totals = []
    for lam in (0.0, 0.05):
        trained = synthetic("residual")
        config = TrainConfig(epochs=2, batch_size=16, lr=0.05, weight_decay=0.0)
        fit(trained, data, config, extra_loss=bn_sparsity(lam), progress=False)
        totals.append(float(bn_sparsity_loss(trained, 1.0).detach()))
    assert totals[1] < totals[0]


# --- saving and loading -----------------------------------------------------------------------


def test_save_load_round_trip_from_the_zoo(tmp_path, no_pickle):
    model = zoo_model("resnet20")
    x = example(model)
    pruned = prune_channels(model, ChannelPruning(0.5), x).eval()
    path = save_pruned(pruned, tmp_path / "r20.safetensors", arch={"zoo": "resnet20"})
    with safe_open(str(path), framework="pt") as f:
        desc = json.loads(f.metadata()["slimkit.pruned"])
    assert desc["arch"] == {"zoo": "resnet20"}
    assert desc["layers"]["stem.conv"] == {
        "type": "Conv2d", "in_channels": 3, "out_channels": 8, "groups": 1
    }  # fmt: skip
    loaded = load_pruned(path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert params(loaded) == params(pruned)


@pytest.mark.parametrize("name", ["shufflenet", "attention", "group_norm", "depthwise"])
def test_save_load_round_trip_with_a_factory(tmp_path, no_pickle, name):
    model = synthetic(name)
    x = example(model)
    pruned = prune_channels(model, ChannelPruning(0.5), x).eval()
    path = save_pruned(pruned, tmp_path / "m.safetensors", arch={"kwargs": {}})
    loaded = load_pruned(path, factory=SYNTHETIC[name]).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


def edit_description(path, edit) -> None:
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    desc = json.loads(meta["slimkit.pruned"])
    edit(desc)
    meta["slimkit.pruned"] = json.dumps(desc)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["layers"].__setitem__("nope", d["layers"].pop("convs.0")), "'nope'"),
        (lambda d: d["layers"]["convs.0"].__setitem__("type", "Linear"), "as 'Linear'"),
        (lambda d: d["layers"]["convs.0"].__setitem__("out_channels", 6), "convs.0.weight"),
        (lambda d: d["layers"]["convs.0"].__setitem__("groups", 0), "positive"),
        (lambda d: d.__setitem__("format", "other"), "description"),
    ],
)
def test_mismatched_description_is_a_weights_error(tmp_path, edit, match):
    model = synthetic("chain")
    pruned = prune_channels(model, ChannelPruning(0.5), example(model))
    path = save_pruned(pruned, tmp_path / "c.safetensors", arch={})
    edit_description(path, edit)
    with pytest.raises(WeightsError, match=match) as err:
        load_pruned(path, factory=Chain)
    assert "\n" not in str(err.value)


def test_load_errors(tmp_path):
    model = synthetic("chain")
    plain = save_weights(model, tmp_path / "plain.safetensors")
    with pytest.raises(WeightsError, match="no pruned-model description"):
        load_pruned(plain, factory=Chain)
    with pytest.raises(WeightsError, match="does not exist"):
        load_pruned(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError):
        load_pruned(tmp_path / "junk.safetensors")
    pruned = prune_channels(zoo_model("resnet20"), ChannelPruning(0.5), torch.randn(1, 3, 32, 32))
    path = save_pruned(pruned, tmp_path / "r.safetensors", arch={"zoo": "resnet20"})
    with pytest.raises(WeightsError, match="does not have"):
        load_pruned(path, factory=lambda: create("vgg11", **FAST_KWARGS["vgg11"]))
    with pytest.raises(ConfigError, match="JSON"):
        save_pruned(pruned, tmp_path / "x.safetensors", arch={"zoo": object()})


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": 1.0},
        {"ratio": -0.1},
        {"ratio": "0.5"},
        {"ratio": True},
        {"ratio": 0.5, "scope": "net"},
        {"ratio": 0.5, "importance": "nope"},
        {"ratio": 0.5, "importance": 3},
        {"ratio": 0.5, "round_to": 0},
        {"ratio": 0.5, "min_channels": 0},
        {"ratio": 0.5, "max_ratio": 1.0},
        {"ratio": 0.5, "exclude": "convs.0"},
        {"ratio": 0.5, "layer_ratios": {"convs.0": 1.5}},
    ],
)
def test_bad_config_is_a_one_line_config_error(kwargs):
    with pytest.raises(ConfigError) as err:
        ChannelPruning(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("model", "config", "match"),
    [
        (Chain(), ChannelPruning(0.5, exclude=("conv9",)), "no module named 'conv9'"),
        (Chain(), ChannelPruning(0.5, layer_ratios={"conv9": 0.2}), "does not have"),
        (Chain(), ChannelPruning(0.5, layer_ratios={"fc": 0.2}), "cannot be pruned"),
        (Chain(), ChannelPruning(0.5, importance=lambda g: torch.ones(2)), "one score"),
        (Untraceable(), ChannelPruning(0.5), "'gate'"),
    ],
)
def test_bad_prune_input_is_a_one_line_error(model, config, match):
    with pytest.raises(SlimkitError, match=match) as err:
        prune_channels(model, config, example(model))
    assert "\n" not in str(err.value)


def test_keeping_an_unprunable_layer_whole_is_no_error():
    """Ratio 0 ("leave it alone", the CLI's --keep) on a layer that feeds the output holds
    already: same result as not naming it; any other ratio there stays an error (above)."""
    model = Chain()
    x = example(model)
    plain = prune_channels(model, ChannelPruning(0.5), x)
    kept = prune_channels(model, ChannelPruning(0.5, layer_ratios={"fc": 0.0}), x)
    pairs = zip(plain.state_dict().values(), kept.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_custom_importance_decides_what_goes():
    model = synthetic("chain")
    x = example(model)
    config = ChannelPruning(0.5, importance=lambda g: torch.arange(g.size, dtype=torch.float))
    pruned = prune_channels(model, config, x)  # keeps the highest-numbered half
    assert torch.equal(pruned.convs[0].weight, model.convs[0].weight[4:])
    assert isinstance(group_of(build_graph(model, x).groups, "convs.0"), Group)
