"""Tests for attention-head pruning: HeadAttention / split_attention (slimkit.nn.transformer) and
the scaled-dot-product-attention rule of slimkit.graph.op_rules.

split_attention must reproduce nn.MultiheadAttention; pruning must remove whole heads (a head's
q/k/v rows and out_proj columns) and nothing else, exactly: the pruned model equals the unpruned
one with the removed heads' out_proj columns zeroed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.graph import build_graph
from slimkit.measure import count_macs, count_params
from slimkit.measure.common import num_threads
from slimkit.nn import create
from slimkit.prune import (
    ChannelPruning,
    HeadAttention,
    load_pruned,
    prune_channels,
    save_pruned,
    split_attention,
)

E, H, D = 64, 4, 16  # transformer_mnist: embed dim, heads, head dim
HEADS_ARCH = {"zoo": "transformer_mnist", "kwargs": {"attention": "heads"}}


@pytest.fixture(autouse=True)
def one_thread():
    with num_threads(1):
        yield


def transformer() -> nn.Module:
    torch.manual_seed(0)
    return create("transformer_mnist").eval()


def images(n: int = 3) -> Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 1, 28, 28)


def only_block0_heads(ratio: float) -> ChannelPruning:
    return ChannelPruning(0.0, layer_ratios={"blocks.0.attn.q_proj": ratio})


# --- HeadAttention is nn.MultiheadAttention with q/k/v split ---------------------------------


@pytest.mark.parametrize("need_weights", [False, True])
def test_split_attention_reproduces_multihead_attention(need_weights):
    mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
    ha = HeadAttention.from_mha(mha)
    x = torch.randn(2, 5, E)
    pad = torch.tensor([[False] * 4 + [True], [False] * 5])
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    with torch.no_grad():
        for kwargs in ({}, {"key_padding_mask": pad, "attn_mask": causal}):
            want = mha(x, x, x, need_weights=need_weights, **kwargs)
            got = ha(x, x, x, need_weights=need_weights, **kwargs)
            assert torch.allclose(got[0], want[0], atol=1e-6)
            assert (got[1] is None) == (want[1] is None)
            if need_weights:
                assert torch.allclose(got[1], want[1], atol=1e-6)
    assert count_params(ha).total == count_params(mha).total


def test_split_model_matches_and_loads_into_the_heads_architecture():
    model = transformer()
    split = split_attention(model)
    assert isinstance(model.blocks[0].attn, nn.MultiheadAttention)  # the original is untouched
    assert isinstance(split.blocks[1].attn, HeadAttention)
    with torch.no_grad():
        assert torch.allclose(split(images()), model(images()), atol=1e-5)
    fresh = create("transformer_mnist", attention="heads")
    fresh.load_state_dict(split.state_dict())  # same keys and shapes: strict load


def test_split_attention_refuses_what_it_cannot_convert():
    with pytest.raises(ConfigError, match="batch_first"):
        HeadAttention.from_mha(nn.MultiheadAttention(8, 2))
    with pytest.raises(ConfigError, match=r"no nn\.MultiheadAttention"):
        split_attention(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="attention must be one of"):
        create("transformer_mnist", attention="flash")


# --- the graph: one unit per head ------------------------------------------------------------


def test_each_attention_is_a_group_of_heads():
    graph = build_graph(split_attention(transformer()), images())
    heads = [g for g in graph.groups if "blocks.0.attn.q_proj" in g.names]
    assert len(heads) == 1 and heads[0].size == H
    members = {(m.name, m.role): tuple(m.channels.shape) for m in heads[0].members}
    assert members == {
        ("blocks.0.attn.q_proj", "out"): (H, D),
        ("blocks.0.attn.k_proj", "out"): (H, D),
        ("blocks.0.attn.v_proj", "out"): (H, D),
        ("blocks.0.attn.out_proj", "in"): (H, D),
    }


def test_multihead_attention_boundary_says_how_to_prune_heads():
    graph = build_graph(transformer(), images())
    assert not any("attn" in name for g in graph.groups for name in g.names)
    assert any("split_attention" in d.detail for d in graph.dependencies)


class SingleHead(nn.Module):
    """SDPA on 3-D q/k/v: q and k channels pair one to one, v's channels are its own."""

    input_shape = (5, 8)
    num_classes = 8

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 6), nn.Linear(8, 6), nn.Linear(8, 4)
        self.out = nn.Linear(4, 8)

    def forward(self, x: Tensor) -> Tensor:
        y = F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))
        return self.out(y).mean(1)


def test_attention_pairs_query_and_key_channels_only():
    graph = build_graph(SingleHead(), torch.randn(2, 5, 8))
    assert sorted(map(tuple, (g.names for g in graph.groups))) == [("k", "q"), ("v",)]
    pruned = prune_channels(SingleHead(), ChannelPruning(0.5), torch.randn(2, 5, 8))
    assert (pruned.q.out_features, pruned.k.out_features, pruned.v.out_features) == (3, 3, 2)


# --- pruning heads -----------------------------------------------------------------------------


def test_pruned_heads_shrink_by_the_expected_amount():
    model = split_attention(transformer())
    x = images()
    pruned = prune_channels(model, only_block0_heads(0.5), x)
    attn = pruned.blocks[0].attn
    assert attn.num_heads == 2 and pruned.blocks[1].attn.num_heads == H
    assert (attn.q_proj.out_features, attn.out_proj.in_features, attn.out_proj.out_features) == (
        2 * D,
        2 * D,
        E,
    )
    assert pruned(x).shape == model(x).shape
    # two heads of D: q/k/v rows with biases (3·D·(E+1)) and out_proj columns (D·E) each
    removed = 2 * (3 * D * (E + 1) + D * E)
    assert count_params(model).total - count_params(pruned).total == removed
    # per token: four D·E products per head; over 28 tokens, with attention's own MACs on top
    fewer = count_macs(model, x[:1]).dense - count_macs(pruned, x[:1]).dense
    assert fewer >= 28 * 2 * 4 * D * E


def test_ratio_zero_gives_identical_outputs():
    model = split_attention(transformer())
    pruned = prune_channels(model, ChannelPruning(0.0), images())
    with torch.no_grad():
        assert torch.equal(pruned(images()), model(images()))


def test_the_weakest_head_goes_and_nothing_else_changes():
    model = split_attention(transformer())
    attn = model.blocks[0].attn
    with torch.no_grad():  # head 1: tiny q/k/v rows (lowest L1) and no say in the output
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[D : 2 * D] *= 1e-3
        attn.out_proj.weight[:, D : 2 * D] = 0
    pruned = prune_channels(model, only_block0_heads(0.25), images())
    kept = pruned.blocks[0].attn
    assert kept.num_heads == H - 1
    rows = torch.cat([torch.arange(D), torch.arange(2 * D, H * D)])  # heads 0, 2, 3
    assert torch.equal(kept.q_proj.weight, attn.q_proj.weight[rows])
    with torch.no_grad():
        assert torch.allclose(pruned(images()), model(images()), atol=1e-5)


def test_save_load_round_trip(tmp_path, no_pickle):
    model = split_attention(transformer())
    x = images()
    pruned = prune_channels(model, ChannelPruning(0.5), x).eval()
    path = save_pruned(pruned, tmp_path / "heads.safetensors", arch=HEADS_ARCH)
    loaded = load_pruned(path).eval()
    assert [b.attn.num_heads for b in loaded.blocks] == [2, 2]
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert count_params(loaded).total == count_params(pruned).total
