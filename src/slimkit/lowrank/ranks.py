"""Rank selection: the rank a rule gives a layer (a fixed rank, kept energy, a parameter
budget, or empirical VBMF after Nakajima et al. 2013), the weights and MACs a factorization at
that rank costs, and the check that a rank does not exceed what the layer allows."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError


def _energy_rank(s: Tensor, energy: float) -> int:
    """Smallest r whose singular values hold `energy` of Σσ²."""
    power = (s.double() ** 2).cumsum(0)
    if float(power[-1]) == 0:
        return 1
    return min(int((power < energy * power[-1] * (1 - 1e-12)).sum()) + 1, len(s))


def _evb_objective(sigma2: float, L: int, M: int, s2: Tensor, x_bar: float) -> float:
    alpha = L / M
    x = (s2 / (M * sigma2)).clamp_min(1e-300)
    z1, z2 = x[x > x_bar], x[x <= x_bar]
    tau = 0.5 * (z1 - (1 + alpha) + torch.sqrt((z1 - (1 + alpha)) ** 2 - 4 * alpha))
    return float(
        (z2 - z2.log()).sum()
        + (z1 - tau).sum()
        + ((tau + 1) / z1).log().sum()
        + alpha * (tau / alpha + 1).log().sum()
    )


def _minimize(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Minimum of f on [lo, hi]: a log-spaced scan, then golden-section search around the best
    cell (the VBMF objective is cheap and not always unimodal)."""
    grid = torch.logspace(math.log10(lo), math.log10(hi), 65, dtype=torch.float64).tolist()
    best = min(range(len(grid)), key=lambda i: f(grid[i]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (a + b) / 2


def evbmf_rank(matrix: Tensor) -> int:
    """Rank of `matrix` by empirical variational Bayesian matrix factorization (Nakajima,
    Sugiyama, Babacan, Tomioka, "Global Analytic Solution of Fully-observed Variational Bayesian
    Matrix Factorization", JMLR 2013): the noise variance σ² minimizes the free energy, and the
    singular values above the resulting threshold count. Kim et al. 2016 choose Tucker-2 ranks
    with it; it is noise-driven, so it often keeps fewer components than an energy rule."""
    y = matrix.detach().double().cpu()
    y = y.reshape(y.shape[0], -1)
    if y.shape[0] > y.shape[1]:
        y = y.T
    L, M = y.shape
    s2 = torch.linalg.svdvals(y) ** 2
    if float(s2[0]) == 0:
        return 1
    alpha = L / M
    tau_bar = 2.5129 * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    e_ub = min(math.ceil(L / (1 + alpha)) - 1, L) - 1
    upper = float(s2.sum()) / (L * M)
    lower = max(float(s2[e_ub + 1]) / (M * x_bar), float(s2[e_ub + 1 :].mean()) / M)
    lower = min(max(lower, upper * 1e-12), upper * (1 - 1e-9))
    sigma2 = _minimize(lambda v: _evb_objective(v, L, M, s2, x_bar), lower, upper)
    threshold = M * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar)
    return max(1, int((s2 > threshold).sum()))


def unfold(w: Tensor, mode: int) -> Tensor:
    return w.movedim(mode, 0).reshape(w.shape[mode], -1)


def layer_shape(layer: nn.Module) -> tuple[int, int, int, int, int, int]:
    """(out, in, kh, kw, sh, sw) of a Linear (kernel and stride 1) or Conv2d."""
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features, 1, 1, 1, 1
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    return layer.out_channels, layer.in_channels, kh, kw, sh, sw


def _cp_limit(n: int, c: int, kh: int, kw: int) -> int:
    """No 4-way tensor needs a CP rank above the product of all but its largest mode."""
    return n * c * kh * kw // max(n, c, kh, kw)


def factor_costs(method: str, layer: nn.Module, rank: Any) -> tuple[int, int]:
    """(weights, MACs per output position) of the factorized layer, bias excluded."""
    n, c, kh, kw, sh, sw = layer_shape(layer)
    if method == "svd":
        return rank * (n + c), rank * (n + c)  # a 1×1 conv's stride sits on the first conv
    if method == "tucker2":
        r_in, r_out = rank
        core = r_in * r_out * kh * kw
        return c * r_in + core + r_out * n, c * r_in * sh * sw + core + r_out * n
    weights = rank * (c + kh + kw + n)
    return weights, rank * (c * sh * sw + kh * sw + kw + n)


def bias_count(layer: nn.Module) -> int:
    return layer.bias.numel() if layer.bias is not None else 0


def resolve_rank(
    name: str, layer: nn.Module, method: str, rule: tuple[str, Any]
) -> int | tuple[int, int]:
    n, c, kh, kw, _, _ = layer_shape(layer)
    kind, value = rule
    w = layer.weight.detach().double().cpu()
    where = f"layer {name!r} ({type(layer).__name__} {c}→{n}, kernel {kh}×{kw})"
    if method == "svd":
        if kind == "rank":
            if isinstance(value, tuple):
                raise ConfigError(f"{where} factorizes by SVD: give one rank, got {value}")
            return value
        mat = w.reshape(n, -1)
        if kind == "vbmf":
            return evbmf_rank(mat)
        if kind == "energy":
            return _energy_rank(torch.linalg.svdvals(mat), value)
        return max(1, min(int(value * n * c / (n + c)), min(n, c)))
    if method == "tucker2":
        if kind == "rank":
            return (value, value) if isinstance(value, int) else value
        if kind == "vbmf":
            return (min(evbmf_rank(unfold(w, 1)), c), min(evbmf_rank(unfold(w, 0)), n))
        if kind == "energy":
            return (
                _energy_rank(torch.linalg.svdvals(unfold(w, 1)), value),
                _energy_rank(torch.linalg.svdvals(unfold(w, 0)), value),
            )
        return _tucker_budget(n, c, kh * kw, value)
    if kind in ("energy", "vbmf"):
        raise ConfigError(
            f"{where}: CP has no singular values to keep; give it a rank or a ratio "
            f"instead of {'energy' if kind == 'energy' else 'vbmf'}"
        )
    if isinstance(value, tuple):
        raise ConfigError(f"{where}: a CP rank is one integer, got {value}")
    if kind == "rank":
        return value
    return max(1, min(int(value * n * c * kh * kw / (c + kh + kw + n)), _cp_limit(n, c, kh, kw)))


def _tucker_budget(n: int, c: int, k2: int, ratio: float) -> tuple[int, int]:
    """The largest ranks (ρC, ρN), same fraction ρ of each mode, within ratio·N·C·k² weights."""
    budget = ratio * n * c * k2
    a, b = c * n * k2, c * c + n * n  # weights(ρ) = a·ρ² + b·ρ
    rho = (-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)
    r_in, r_out = max(1, min(c, int(rho * c))), max(1, min(n, int(rho * n)))
    while c * r_in + r_in * r_out * k2 + r_out * n > budget and r_in + r_out > 2:
        if r_in / c >= r_out / n and r_in > 1:
            r_in -= 1
        else:
            r_out -= 1
    return r_in, r_out


def check_limit(name: str, layer: nn.Module, method: str, rank: Any) -> None:
    n, c, kh, kw, _, _ = layer_shape(layer)
    what = f"{type(layer).__name__} {name!r} ({c}→{n}, kernel {kh}×{kw})"
    if method == "svd" and rank > min(n, c):
        raise ConfigError(f"SVD rank {rank} exceeds min(out, in) = {min(n, c)} of {what}")
    if method == "tucker2" and (rank[0] > c or rank[1] > n):
        raise ConfigError(
            f"Tucker-2 ranks (in {rank[0]}, out {rank[1]}) exceed the channels (in {c}, out {n}) "
            f"of {what}"
        )
    if method == "cp" and rank > _cp_limit(n, c, kh, kw):
        raise ConfigError(
            f"CP rank {rank} exceeds {_cp_limit(n, c, kh, kw)}, the most {what} can need"
        )
