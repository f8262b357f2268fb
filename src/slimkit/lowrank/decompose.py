"""Decompositions of single layers into tagged `nn.Sequential` blocks of plain torch layers:
truncated SVD of a Linear or 1×1 conv, Tucker-2 (HOSVD, optionally HOOI) and CP (ALS) of a
k×k conv, and the small builders (`new_conv`, `block`, `axis_conv_args`) that `slimkit.convert`
reuses for its own blocks."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.lowrank.config import CP_ITERS, TAG, check_iters, check_rank
from slimkit.lowrank.ranks import check_limit, resolve_rank, unfold
from slimkit.measure.common import num_threads


def _leading(mat: Tensor, r: int) -> Tensor:
    """The r leading left singular vectors; an orthonormal completion past the matrix rank."""
    u = torch.linalg.svd(mat, full_matrices=r > min(mat.shape))[0]
    return u[:, :r]


def new_conv(ref: nn.Module, weight: Tensor, bias: Tensor | None, **kwargs: Any) -> nn.Conv2d:
    """A Conv2d holding `weight` (and `bias`) in `ref`'s dtype, device and requires_grad."""
    out_ch, in_per_group, kh, kw = weight.shape
    groups = kwargs.pop("groups", 1)
    conv = nn.Conv2d(
        in_per_group * groups,
        out_ch,
        (kh, kw),
        groups=groups,
        bias=bias is not None,
        device="meta",
        **kwargs,
    )
    return _fill(conv, ref, weight, bias)


def _new_linear(ref: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    return _fill(layer, ref, weight, bias)


def _fill(layer: nn.Module, ref: nn.Module, weight: Tensor, bias: Tensor | None) -> Any:
    like = ref.weight
    grad = like.requires_grad
    layer.weight = nn.Parameter(weight.to(like.dtype).to(like.device).contiguous(), grad)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone().to(like.device), ref.bias.requires_grad)
    return layer


def block(method: str, rank: Any, layers: Sequence[tuple[str, nn.Module]]) -> nn.Sequential:
    """The replacement: a Sequential of `layers`, tagged for `save_factorized`."""
    seq = nn.Sequential(OrderedDict(layers))
    setattr(seq, TAG, {"method": method, "rank": list(rank) if isinstance(rank, tuple) else rank})
    return seq


def split_padding(conv: nn.Conv2d, axis: int) -> Any:
    """The padding of a conv that filters along `axis` only (0: height, 1: width).

    Exact for every padding mode: the 1×1 and one-axis convs before it act per pixel or per
    column/row without bias, so padding their output equals padding the input.
    """
    if isinstance(conv.padding, str):
        return conv.padding
    return (conv.padding[0], 0) if axis == 0 else (0, conv.padding[1])


def axis_conv_args(conv: nn.Conv2d, axis: int) -> dict[str, Any]:
    """stride/padding/dilation/padding_mode for the kh×1 (axis 0) or 1×kw (axis 1) half of
    `conv`."""
    pick = (lambda t: (t[0], 1)) if axis == 0 else (lambda t: (1, t[1]))
    return {
        "stride": pick(conv.stride),
        "padding": split_padding(conv, axis),
        "dilation": pick(conv.dilation),
        "padding_mode": conv.padding_mode,
    }


def _check_layer(layer: nn.Module, convs_only: bool = False) -> None:
    ok = isinstance(layer, nn.Conv2d) or (isinstance(layer, nn.Linear) and not convs_only)
    if not ok:
        raise ConfigError(
            f"expected {'an nn.Conv2d' if convs_only else 'an nn.Linear or nn.Conv2d'}, got "
            f"{type(layer).__name__}"
        )
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ConfigError(
            f"cannot factorize a grouped conv (groups={layer.groups}): only groups=1 convs"
        )


def svd_layer(layer: nn.Linear | nn.Conv2d, rank: int, *, name: str = "") -> nn.Sequential:
    """Truncated SVD W ≈ (U√S)(√S Vᵀ) of a Linear, or of a 1×1 Conv2d, as two layers
    `reduce` (in→rank, no bias) and `expand` (rank→out, the bias). The singular values are split
    evenly so both factors train at the same scale. Denton et al. 2014."""
    _check_layer(layer)
    if isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1):
        raise ConfigError(
            f"svd_layer factorizes Linear and 1×1 convs; {name or 'this conv'} has kernel "
            f"{layer.kernel_size}: use tucker2_layer or cp_layer"
        )
    rank = check_rank(rank, "svd_layer")
    check_limit(name, layer, "svd", rank)
    n, c = layer.weight.shape[:2]
    u, s, vh = torch.linalg.svd(layer.weight.detach().double().cpu().reshape(n, c), False)
    root = s[:rank].sqrt()
    first, second = root[:, None] * vh[:rank], u[:, :rank] * root
    if isinstance(layer, nn.Linear):
        parts = [
            ("reduce", _new_linear(layer, first, None)),
            ("expand", _new_linear(layer, second, layer.bias)),
        ]
    else:
        pad = {"padding": layer.padding, "padding_mode": layer.padding_mode}
        parts = [
            ("reduce", new_conv(layer, first[:, :, None, None], None, stride=layer.stride, **pad)),
            ("expand", new_conv(layer, second[:, :, None, None], layer.bias)),
        ]
    return block("svd", rank, parts)


def _tucker2_factors(w: Tensor, r_in: int, r_out: int, iters: int) -> tuple[Tensor, ...]:
    """HOSVD of the two channel modes, then `iters` HOOI sweeps (each factor re-fit to the
    tensor projected on the other; De Lathauwer et al. 2000)."""
    u_out, u_in = _leading(unfold(w, 0), r_out), _leading(unfold(w, 1), r_in)
    for _ in range(iters):
        u_out = _leading(unfold(torch.einsum("ncpq,ca->napq", w, u_in), 0), r_out)
        u_in = _leading(unfold(torch.einsum("ncpq,nb->bcpq", w, u_out), 1), r_in)
    core = torch.einsum("ncpq,nb,ca->bapq", w, u_out, u_in)  # (r_out, r_in, kh, kw)
    return u_in, core, u_out


def tucker2_layer(
    conv: nn.Conv2d, rank: int | tuple[int, int], *, iters: int = 0, name: str = ""
) -> nn.Sequential:
    """Tucker-2 of a k×k conv as `reduce` 1×1 (C→rank_in) → `core` k×k (rank_in→rank_out, the
    conv's stride, padding and dilation) → `expand` 1×1 (rank_out→N, the bias). `rank` is
    (rank_in, rank_out) or one int for both. Kim et al. 2016."""
    _check_layer(conv, convs_only=True)
    rank = check_rank(rank, "tucker2_layer")
    if rank == "vbmf":
        rank = resolve_rank(name, conv, "tucker2", ("vbmf", None))
    ranks = (rank, rank) if isinstance(rank, int) else rank
    check_limit(name, conv, "tucker2", ranks)
    check_iters(iters, "tucker2_layer")
    w = conv.weight.detach().double().cpu()
    u_in, core, u_out = _tucker2_factors(w, ranks[0], ranks[1], iters or 0)
    args = {k: getattr(conv, k) for k in ("stride", "padding", "dilation", "padding_mode")}
    return block(
        "tucker2",
        ranks,
        [
            ("reduce", new_conv(conv, u_in.T[:, :, None, None], None)),
            ("core", new_conv(conv, core, None, **args)),
            ("expand", new_conv(conv, u_out[:, :, None, None], conv.bias)),
        ],
    )


def cp_als(x: Tensor, rank: int, iters: int, seed: int = 0, tol: float = 1e-10) -> list[Tensor]:
    """CP decomposition x ≈ Σ_r ∘_m factors[m][:, r] of a 4-way tensor by alternating least
    squares (Carroll & Chang 1970; Harshman 1970), each factor m solved exactly given the
    others: F_m = X_(m)·KR(others)·(⊙ gramians)⁺. Initialized from each mode's leading singular
    vectors (random columns past a mode's size). Stops when the relative error changes by less
    than `tol`. Returns factors whose columns have equal norms across modes."""
    g = torch.Generator().manual_seed(seed)
    factors = []
    for mode, d in enumerate(x.shape):
        u = _leading(unfold(x, mode), min(rank, d))
        if rank > d:
            u = torch.cat([u, torch.randn(d, rank - d, generator=g, dtype=x.dtype)], 1)
        factors.append(u)
    # Hundreds of tiny products: threads only contend there (tens of times slower on a busy
    # machine); large kernels keep torch's thread pool.
    small = x.numel() * rank < 2**24
    with num_threads(1 if small else torch.get_num_threads()):
        factors = _cp_sweeps(x, factors, rank, iters, tol)
    norms = torch.stack([f.norm(dim=0) for f in factors])  # (4, rank)
    scale = norms.prod(0).pow(1 / 4)
    return [f / n.clamp_min(1e-300) * scale for f, n in zip(factors, norms, strict=True)]


def _cp_sweeps(x: Tensor, factors: list[Tensor], rank: int, iters: int, tol: float) -> list[Tensor]:
    letters = "abcd"
    norm2 = float((x * x).sum())
    previous = math.inf
    for _ in range(iters):
        for m in range(4):
            others = [o for o in range(4) if o != m]
            gram = torch.ones(rank, rank, dtype=x.dtype)
            for o in others:
                gram = gram * (factors[o].T @ factors[o])
            spec = f"abcd,{','.join(letters[o] + 'r' for o in others)}->{letters[m]}r"
            mttkrp = torch.einsum(spec, x, *[factors[o] for o in others])
            factors[m] = mttkrp @ torch.linalg.pinv(gram, hermitian=True)
        # ‖x − x̂‖² = ‖x‖² − 2⟨x, x̂⟩ + ‖x̂‖², with the last mttkrp giving ⟨x, x̂⟩ cheaply
        gram = gram * (factors[3].T @ factors[3])
        inner = float((mttkrp * factors[3]).sum())
        error = math.sqrt(max(norm2 - 2 * inner + float(gram.sum()), 0.0) / max(norm2, 1e-300))
        if abs(previous - error) < tol:
            break
        previous = error
    return factors


def cp_layer(
    conv: nn.Conv2d, rank: int, *, iters: int = CP_ITERS, seed: int = 0, name: str = ""
) -> nn.Sequential:
    """CP of a kh×kw conv as `reduce` 1×1 (C→R) → `vertical` depthwise kh×1 → `horizontal`
    depthwise 1×kw → `expand` 1×1 (R→N, the bias), fitted by ALS. Lebedev et al. 2015; CP-ALS
    can converge slowly or to a degenerate fit at high ranks, which fine-tuning repairs (their
    Section 3), so budget for `distill` after it."""
    _check_layer(conv, convs_only=True)
    rank = check_rank(rank, "cp_layer")
    if not isinstance(rank, int):
        raise ConfigError(f"cp_layer: a CP rank is one integer, got {rank!r}")
    check_limit(name, conv, "cp", rank)
    check_iters(iters, "cp_layer")
    w = conv.weight.detach().double().cpu()
    a, d, b, c = cp_als(w, rank, iters, seed)  # modes: out, in, height, width
    return block(
        "cp",
        rank,
        [
            ("reduce", new_conv(conv, d.T[:, :, None, None], None)),
            (
                "vertical",
                new_conv(conv, b.T[:, None, :, None], None, groups=rank, **axis_conv_args(conv, 0)),
            ),
            (
                "horizontal",
                new_conv(conv, c.T[:, None, None, :], None, groups=rank, **axis_conv_args(conv, 1)),
            ),
            ("expand", new_conv(conv, a[:, :, None, None], conv.bias)),
        ],
    )
