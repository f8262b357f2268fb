"""Tests for slimkit.graph: channel-coupling groups found by tracing.

The synthetic models here cover the patterns structured pruning must follow (residual add,
concat, chunk/split, depthwise, grouped conv + channel shuffle, squeeze-and-excitation,
attention, flatten → linear, GroupNorm); tests/test_prune_structured.py prunes them too.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import ConfigError, ShapeError
from slimkit.graph import FIXED, Group, build_graph
from slimkit.measure.common import num_threads
from slimkit.nn import create, list_models

# Options that keep a zoo model small; others use their defaults.
FAST_KWARGS: dict[str, dict] = {
    "mobilenet_v1": {"input_size": 32, "alpha": 0.25},
    "vgg11": {"width_mult": 0.25},
    "vgg16": {"width_mult": 0.25},
}


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):  # tiny tensors: more threads only contend with other jobs
        yield


def zoo_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create(name, **FAST_KWARGS.get(name, {})).eval()


def example(model: nn.Module, batch: int = 2) -> Tensor:
    return torch.randn(batch, *model.input_shape)


# --- synthetic patterns ------------------------------------------------------------------------


class Chain(nn.Module):
    """conv-relu ×3 → global pool → linear: parameters and MACs have a closed form."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self, widths: tuple[int, ...] = (8, 16, 8), bias: bool = True) -> None:
        super().__init__()
        chans = (3, *widths)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1, bias=bias) for a, b in itertools.pairwise(chans)
        )
        self.fc = nn.Linear(widths[-1], 10)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.fc(x.mean((2, 3)))


class Residual(nn.Module):
    """stem → BasicBlock (conv-BN-ReLU-conv-BN + identity) → pool → linear."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        out = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(out)) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


class Dense(nn.Module):
    """DenseNet-style concatenation: each branch's channels sit at an offset of the concat."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 3, padding=1)
        self.b2 = nn.Conv2d(12, 6, 3, padding=1)
        self.head = nn.Conv2d(18, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = torch.cat([x, F.relu(self.b1(x))], 1)  # (B, 12, H, W)
        x = torch.cat([x, F.relu(self.b2(x))], dim=1)  # (B, 18, H, W)
        return self.fc(F.relu(self.head(x)).mean((2, 3)))


class Split(nn.Module):
    """chunk into two branches, concat, split again and add the halves."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.right = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        a, b = F.relu(self.stem(x)).chunk(2, dim=1)  # (B, 8, H, W) each
        x = torch.cat([F.relu(self.left(a)), F.relu(self.right(b))], 1)
        s1, s2 = torch.split(x, x.size(1) // 2, dim=1)
        return self.fc((s1 + s2).mean((2, 3)))


class Depthwise(nn.Module):
    """MobileNet-style depthwise conv with channel multiplier 2, then a pointwise conv."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 12, 1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.dw(F.relu(self.stem(x)))))
        return self.fc(F.relu(self.pw(x)).mean((2, 3)))


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet (Zhang et al. 2018) unit: 1×1 group conv → shuffle → 3×3 depthwise → 1×1
    group conv, plus identity."""

    def __init__(self, chans: int, mid: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.conv1 = nn.Conv2d(chans, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dw = nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, chans, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(chans)

    def forward(self, x: Tensor) -> Tensor:
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.groups)
        out = self.bn3(self.conv2(self.bn2(self.dw(out))))
        return F.relu(out + x)


class ShuffleNet(nn.Module):
    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8 * groups, 3, padding=1)
        self.unit1 = ShuffleUnit(8 * groups, 4 * groups, groups)
        self.unit2 = ShuffleUnit(8 * groups, 4 * groups, groups)
        self.fc = nn.Linear(8 * groups, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.unit2(self.unit1(F.relu(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ShuffleV2(nn.Module):
    """ShuffleNetV2 (Ma et al. 2018) units: chunk in two, convolve one half, concat, shuffle."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8),
                nn.Conv2d(8, 8, 1), nn.ReLU(),
            )
            for _ in range(2)
        )  # fmt: skip
        self.shuffle = nn.ChannelShuffle(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        for branch in self.branches:
            x1, x2 = x.chunk(2, dim=1)
            x = self.shuffle(torch.cat([x1, branch(x2)], 1))
        return self.fc(x.mean((2, 3)))


class SE(nn.Module):
    """conv-BN-ReLU, then a squeeze-and-excitation gate (Hu et al. 2018) multiplying x."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 16)
        self.head = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(x)))
        b, c = x.shape[:2]
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))  # (B, C)
        x = x * s.view(b, c, 1, 1)
        return self.fc(F.relu(self.head(x)).mean((2, 3)))


class Attention(nn.Module):
    """A pre-norm transformer block on tokens: MHA + MLP, both residual."""

    input_shape = (6, 12)  # (tokens, features)
    num_classes = 10

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(12, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)  # (B, L, E)
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return self.head(x.mean(1))


class FlattenLinear(nn.Module):
    """conv → pool → flatten → linear: each channel feeds H·W input features."""

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(self.pool(F.relu(self.conv(x))))  # (B, 128)
        return self.fc2(F.relu(self.fc1(x)))


class GroupNormNet(nn.Module):
    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.gn(self.conv1(x)))
        return self.fc(F.relu(self.conv2(x)).mean((2, 3)))


class Stack(nn.Module):
    """Selective-kernel style: two branches stacked on a new dim and summed over it."""

    input_shape = (3, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 5, padding=2)
        self.head = nn.Conv2d(8, 10, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.stack([self.a(x), self.b(x)], dim=1).sum(1)  # (B, 8, H, W)
        return self.head(F.relu(y)).mean((2, 3))


SYNTHETIC = {
    "chain": Chain,
    "residual": Residual,
    "dense": Dense,
    "split": Split,
    "depthwise": Depthwise,
    "shufflenet": ShuffleNet,
    "shufflenet_v2": ShuffleV2,
    "se": SE,
    "attention": Attention,
    "flatten_linear": FlattenLinear,
    "group_norm": GroupNormNet,
    "stack": Stack,
}


def synthetic(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = SYNTHETIC[name]().eval()
    with torch.no_grad():  # non-trivial BN statistics, so identity checks mean something
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def group_of(groups: list[Group], name: str, role: str = "out") -> Group:
    """The group in which module `name` appears with `role`."""
    found = [g for g in groups if any(m.name == name and m.role == role for m in g.members)]
    assert len(found) == 1, f"{name}:{role} in {len(found)} groups"
    return found[0]


def channels(group: Group, name: str, role: str) -> Tensor:
    """(units, k) channel indices of `name` in `group`, ordered by unit."""
    rows = {}
    for m in group.members:
        if m.name == name and m.role == role:
            rows.update(zip(m.units.tolist(), m.channels, strict=True))
    return torch.stack([rows[u] for u in sorted(rows)])


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_has_groups_and_keeps_its_ends(name):
    model = zoo_model(name)
    graph = build_graph(model, example(model))
    assert graph.groups
    assert graph.output_shape == (model.num_classes,)
    for g in graph.groups:
        assert g.size > 0 and g.names
        assert bool((g.units != FIXED).all())
    # the classifier's outputs and the first layer's inputs are never prunable
    last = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    first = next(n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    members = [(m.name, m.role) for g in graph.groups for m in g.members]
    assert (last, "out") not in members
    assert (first, "in") not in members


def test_residual_add_couples_both_sides():
    model = synthetic("residual")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "stem")
    assert {"stem", "bn0", "conv2", "bn2"} <= set(g.names)
    assert {m.name for m in g.members if m.role == "in"} == {"conv1", "fc"}
    assert group_of(graph.groups, "conv1") is not g
    assert any(d.kind == "couple" and "add" in d.detail for d in graph.dependencies)


def test_concat_maps_offsets():
    model = synthetic("dense")
    graph = build_graph(model, example(model))
    stem, b1, b2 = (group_of(graph.groups, n) for n in ("stem", "b1", "b2"))
    assert len({stem.index, b1.index, b2.index}) == 3
    assert channels(stem, "head", "in").flatten().tolist() == list(range(8))
    assert channels(b1, "head", "in").flatten().tolist() == list(range(8, 12))
    assert channels(b2, "head", "in").flatten().tolist() == list(range(12, 18))
    assert channels(b1, "b2", "in").flatten().tolist() == list(range(8, 12))


def test_chunk_splits_into_equal_parts():
    model = synthetic("split")
    graph = build_graph(model, example(model))
    stem = group_of(graph.groups, "stem")
    assert stem.size == 16 and len(stem.partitions) == 1
    assert sorted(torch.bincount(stem.partitions[0]).tolist()) == [8, 8]
    # the halves added after torch.split are one unit each: left[i] with right[i]
    left = group_of(graph.groups, "left")
    assert left is group_of(graph.groups, "right") and left.size == 8
    assert channels(left, "fc", "in").flatten().tolist() == list(range(8))


def test_depthwise_ties_outputs_to_inputs():
    model = synthetic("depthwise")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "stem")
    assert g.size == 8
    assert torch.equal(channels(g, "dw", "out"), torch.arange(16).view(8, 2))
    assert torch.equal(channels(g, "pw", "in"), torch.arange(16).view(8, 2))
    assert torch.equal(channels(g, "dw", "in"), torch.arange(8).view(8, 1))


def test_channel_shuffle_keeps_offsets_across_groups():
    model = synthetic("shufflenet")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "unit1.conv1")
    # conv1 has 2 groups of 4 outputs; the shuffle interleaves them, so one unit is the same
    # offset in both groups: conv1 outputs (i, 4 + i) at shuffled positions (2i, 2i + 1)
    assert g.size == 4
    assert torch.equal(
        channels(g, "unit1.conv1", "out"), torch.tensor([[i, 4 + i] for i in range(4)])
    )
    assert torch.equal(channels(g, "unit1.dw", "out"), torch.arange(8).view(4, 2))
    # conv2 reads 2 groups of 4 shuffled channels: units 0-1 in one, 2-3 in the other
    assert torch.equal(g.partitions[0], torch.tensor([0, 0, 1, 1]))
    stream = group_of(graph.groups, "stem")
    assert {"unit1.conv2", "unit2.conv2"} <= set(stream.names) and stream.partitions


def test_shufflenet_v2_chunk_concat_shuffle():
    model = synthetic("shufflenet_v2")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "stem")
    assert "branches.0.5" in g.names and g.partitions


def test_squeeze_excitation_gate_joins_the_group():
    model = synthetic("se")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "conv")
    assert {"conv", "bn", "fc2"} <= set(g.names)
    assert {m.name for m in g.members if m.role == "in"} == {"fc1", "head"}
    assert group_of(graph.groups, "fc1").size == 8


def test_attention_is_a_boundary_but_its_mlp_prunes():
    model = synthetic("attention")
    graph = build_graph(model, example(model))
    assert [g.names for g in graph.groups] == [["fc1"]]
    assert graph.groups[0].size == 64
    assert any(n.target == "attn" and n.rule == "boundary" for n in graph.nodes)


def test_flatten_maps_each_channel_to_its_features():
    model = synthetic("flatten_linear")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "conv")
    assert torch.equal(channels(g, "fc1", "in"), torch.arange(128).view(8, 16))


def test_group_norm_partition():
    model = synthetic("group_norm")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "conv1")
    assert torch.equal(g.partitions[0], torch.arange(16) // 4)


def test_stacked_branches_are_one_group():
    model = synthetic("stack")
    graph = build_graph(model, example(model))
    assert [g.names for g in graph.groups] == [["a", "b"]]


def test_leaf_modules_are_boundaries():
    model = synthetic("residual")
    graph = build_graph(model, example(model), leaves=("conv1",))
    names = {n for g in graph.groups for n in g.names}
    assert "conv1" not in names and "stem" not in names  # conv1 reads the stem's channels
    assert "conv2" not in names  # ... which the residual add ties to conv2


class Gate(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x if x.sum() > 0 else -x  # data-dependent: fx cannot follow


class Untraceable(nn.Module):
    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.gate = Gate()
        self.fc = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.gate(self.conv(x)).mean((2, 3)))


def test_untraceable_module_is_named_and_can_be_excluded():
    model = Untraceable()
    with pytest.raises(ConfigError, match=r"'gate' \(Gate\).*exclude") as err:
        build_graph(model, example(model))
    assert "\n" not in str(err.value)
    graph = build_graph(model, example(model), leaves=("gate",))
    assert not graph.groups  # the gate is opaque: conv's outputs cannot change


def test_bad_leaf_name_and_bad_example():
    model = synthetic("chain")
    with pytest.raises(ConfigError, match=r"no module named 'nope'.*valid: convs"):
        build_graph(model, example(model), leaves=("nope",))
    with pytest.raises(ShapeError):
        build_graph(model, torch.randn(2, 5, 8, 8))


def test_keep_masks_follow_removed_units():
    model = synthetic("chain")
    graph = build_graph(model, example(model))
    g = group_of(graph.groups, "convs.0")
    masks = graph.keep_masks(g.units[:3])
    assert set(masks) == {"convs.0", "convs.1"}
    assert masks["convs.0"]["out"].tolist() == [False] * 3 + [True] * 5
    assert masks["convs.1"]["in"].tolist() == [False] * 3 + [True] * 5
