"""A small Transformer encoder classifier: the zoo's Linear- and attention-heavy model.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (pre-norm blocks as in Xiong et al.,
"On Layer Normalization in the Transformer Architecture", ICML 2020). Each image row is one token
(28 tokens of 28 pixels for MNIST), embedded by a Linear layer plus a learned position embedding;
the classifier reads the mean of the final tokens. Almost all of its MACs are in Linear layers,
which makes it the test case for dynamic int8 quantization and attention-head handling.

The blocks are written out (attention + MLP) rather than nn.TransformerEncoderLayer, whose fused
fast path hides the Linear layers from tracing and export. `attention="heads"` builds them with
`HeadAttention` instead of nn.MultiheadAttention: the same function and state, but with q/k/v as
separate Linear layers whose head count follows their width, so whole heads can be pruned.
`split_attention` converts a trained model's nn.MultiheadAttention layers to it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.lenet import MNIST_SHAPE
from slimkit.nn.zoo import check_positive_int, register

ATTENTION = ("mha", "heads")


class HeadAttention(nn.Module):
    """Multi-head attention called like `nn.MultiheadAttention(batch_first=True)`, with q/k/v as
    three Linear layers, so that whole heads can be removed.

    nn.MultiheadAttention cannot lose a head and stay itself: its q/k/v projections and its
    output projection's input are all `embed_dim` wide (kdim/vdim only set the widths of the key
    and value *inputs*), and embed_dim is also its output width, the residual stream's. Here the
    head count is read from the projections' width (width / head_dim), so dropping a head's rows
    of q/k/v and its columns of `out_proj` leaves a working, smaller module; the output keeps
    `embed_dim`. Masks: a 2-D `attn_mask` (L, S) and `key_padding_mask` (B, S), bool (True =
    masked) or additive float, as nn.MultiheadAttention takes them. Being slimkit's class, not
    torch's, a model holding it needs this module to run. The `l1` criterion scores a head by
    its q/k/v rows.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, *, bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        check_positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ConfigError(f"embed_dim ({embed_dim}) must be divisible by heads ({num_heads})")
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @property
    def num_heads(self) -> int:
        return self.q_proj.out_features // self.head_dim

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> HeadAttention:
        """An equivalent HeadAttention holding `mha`'s weights."""
        if not mha.batch_first or mha.bias_k is not None or mha.add_zero_attn:
            raise ConfigError(
                "split_attention handles nn.MultiheadAttention(batch_first=True) without "
                "add_bias_kv or add_zero_attn"
            )
        if not mha._qkv_same_embed_dim:
            raise ConfigError("split_attention needs kdim == vdim == embed_dim")
        new = cls(
            mha.embed_dim, mha.num_heads, bias=mha.in_proj_bias is not None, dropout=mha.dropout
        )
        with torch.no_grad():
            for proj, w in zip(
                (new.q_proj, new.k_proj, new.v_proj), mha.in_proj_weight.chunk(3), strict=True
            ):
                proj.weight.copy_(w)
            if mha.in_proj_bias is not None:
                for proj, b in zip(
                    (new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.chunk(3), strict=True
                ):
                    proj.bias.copy_(b)
            new.out_proj.load_state_dict(mha.out_proj.state_dict())
        return new.to(mha.in_proj_weight.device).train(mha.training)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        b, n, s = query.size(0), query.size(1), key.size(1)
        # (B, H, L, head_dim); -1 heads, so removing heads needs no change here
        q = self.q_proj(query).view(b, n, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).view(b, s, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(b, s, -1, self.head_dim).transpose(1, 2)
        mask = _additive(attn_mask, q.dtype)  # (L, S)
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, q.dtype)[:, None, None, :]  # (B, 1, 1, S)
            mask = pad if mask is None else mask + pad
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:  # written out: SDPA does not return the weights
            scores = q @ k.transpose(-2, -1) * self.head_dim**-0.5  # (B, H, L, S)
            if is_causal:
                scores = scores.masked_fill(
                    torch.ones(n, s, dtype=torch.bool, device=q.device).triu(1), -torch.inf
                )
            weights = (scores if mask is None else scores + mask).softmax(-1)
            out = F.dropout(weights, p, self.training) @ v
            weights = weights.mean(1) if average_attn_weights else weights
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal
            )
        out = out.transpose(1, 2).reshape(b, n, -1)  # (B, L, H·head_dim)
        return self.out_proj(out), weights


def _additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """nn.MultiheadAttention's mask convention (bool True = masked) as an additive float mask."""
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -torch.inf)


def split_attention(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.MultiheadAttention replaced by an equivalent
    HeadAttention, whose heads `slimkit.prune.prune_channels` can remove."""
    model = copy.deepcopy(model)
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no nn.MultiheadAttention to split")
    for name, mha in found:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, HeadAttention.from_mha(mha))
    return model


class EncoderBlock(nn.Module):
    """x + MHA(LN(x)), then x + MLP(LN(x)) with a GELU hidden layer of `mlp_dim` units."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, attention: str = "mha") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = (
            nn.MultiheadAttention(dim, heads, batch_first=True)
            if attention == "mha"
            else HeadAttention(dim, heads)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class RowTransformer(nn.Module):
    """Tokens = image rows: (B, C, H, W) → (B, H, C·W) → embed → blocks → mean → classes."""

    def __init__(
        self,
        num_classes: int = 10,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 128,
        input_shape: tuple[int, int, int] = MNIST_SHAPE,
        attention: str = "mha",
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)):
            check_positive_int(name, value)
        if dim % heads:
            raise ConfigError(f"dim ({dim}) must be divisible by heads ({heads})")
        if attention not in ATTENTION:
            raise ConfigError(f"attention must be one of {ATTENTION}, got {attention!r}")
        channels, height, width = input_shape
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.embed = nn.Linear(channels * width, dim)
        self.pos = nn.Parameter(torch.zeros(1, height, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(
            *(EncoderBlock(dim, heads, mlp_dim, attention) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, H, C·W)
        x = self.blocks(self.embed(tokens) + self.pos)  # (B, H, dim)
        return self.head(self.norm(x).mean(dim=1))  # (B, classes)


@register(
    "transformer_mnist",
    dataset="mnist",
    paper="Vaswani et al. 2017 (pre-norm encoder)",
    description="2-block Transformer encoder over image rows, dim 64, 4 heads (~70K params)",
)
def transformer_mnist(
    num_classes: int = 10,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_dim: int = 128,
    attention: str = "mha",
) -> RowTransformer:
    return RowTransformer(num_classes, dim, depth, heads, mlp_dim, attention=attention)
