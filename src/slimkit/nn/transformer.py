"""A small Transformer encoder classifier: the zoo's Linear- and attention-heavy model.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (pre-norm blocks as in Xiong et al.,
"On Layer Normalization in the Transformer Architecture", ICML 2020). Each image row is one token
(28 tokens of 28 pixels for MNIST), embedded by a Linear layer plus a learned position embedding;
the classifier reads the mean of the final tokens. Almost all of its MACs are in Linear layers,
which makes it the test case for dynamic int8 quantization and attention-head handling.

The blocks are written out (nn.MultiheadAttention + MLP) rather than nn.TransformerEncoderLayer,
whose fused fast path hides the Linear layers from tracing and export.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.lenet import MNIST_SHAPE
from slimkit.nn.zoo import check_positive_int, register


class EncoderBlock(nn.Module):
    """x + MHA(LN(x)), then x + MLP(LN(x)) with a GELU hidden layer of `mlp_dim` units."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
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
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)):
            check_positive_int(name, value)
        if dim % heads:
            raise ConfigError(f"dim ({dim}) must be divisible by heads ({heads})")
        channels, height, width = input_shape
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.embed = nn.Linear(channels * width, dim)
        self.pos = nn.Parameter(torch.zeros(1, height, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)))
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
    num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4, mlp_dim: int = 128
) -> RowTransformer:
    return RowTransformer(num_classes, dim, depth, heads, mlp_dim)
