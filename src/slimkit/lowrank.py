"""Low-rank factorization: Linear and Conv2d layers become chains of smaller standard layers.

- SVD (Denton et al. 2014, "Exploiting Linear Structure Within Convolutional Networks for
  Efficient Evaluation"): a Linear m×n kept at rank r becomes n→r→m with r(m+n) weights instead
  of m·n. A 1×1 conv is the same matrix: it becomes two 1×1 convs, the stride on the first so the
  second runs on the subsampled map.
- Tucker-2 (Kim et al. 2016, "Compression of Deep Convolutional Neural Networks for Fast and Low
  Power Mobile Applications"): a kernel N×C×kh×kw compressed along its two channel modes,
  W ≈ G ×₀ U_out ×₁ U_in, runs as 1×1 (C→r_in) → kh×kw (r_in→r_out) → 1×1 (r_out→N) with
  C·r_in + r_in·r_out·kh·kw + r_out·N weights. Factors come from the HOSVD (De Lathauwer et al.
  2000), optionally refined by HOOI sweeps; ranks by hand, by kept energy, by a parameter budget
  or, as Kim et al. do, by empirical VBMF on the two unfoldings (Nakajima et al. 2013).
- CP (Lebedev et al. 2015, "Speeding-up Convolutional Neural Networks Using Fine-tuned
  CP-Decomposition"): W ≈ Σ_r a_r ∘ d_r ∘ b_r ∘ c_r fitted by ALS runs as 1×1 (C→R) →
  depthwise kh×1 → depthwise 1×kw → 1×1 (R→N) with R(C + kh + kw + N) weights. The separable
  k×1 / 1×k filters are Jaderberg et al. 2014's ("Speeding up Convolutional Neural Networks
  with Low Rank Expansions"); `slimkit.convert` uses them without the rank bottleneck.

Every replacement is an `nn.Sequential` of plain torch layers put under the original's name
(`model.set_submodule`), so the model stays the user's class and runs without slimkit. The block
carries a JSON-ready attribute `slimkit_factorized` ({"method", "rank"}) that `save_factorized`
turns into a description of the replaced layers: files hold that JSON beside safetensors
weights, and `load_factorized` rebuilds the architecture and swaps the blocks back in — no
pickle. Factors are computed in float64, so a full-rank factorization reproduces the layer up to
float32 rounding; the recovery step after a lossy one is `distill(factorized, original, ...)`.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.arch import check_arch, describe, read_description, rebuild
from slimkit.errors import ConfigError, WeightsError
from slimkit.graph import trace
from slimkit.measure.common import eval_mode, num_threads
from slimkit.weights import check_weights, read_safetensors, save_weights

__all__ = [
    "FORMAT",
    "METADATA_KEY",
    "TAG",
    "LayerPlan",
    "LowRank",
    "cp_layer",
    "describe_blocks",
    "evbmf_rank",
    "factorize",
    "factorize_",
    "factorized_layers",
    "insert_blocks",
    "load_factorized",
    "plan_factorization",
    "save_factorized",
    "svd_layer",
    "tucker2_layer",
]

METADATA_KEY = "slimkit.factorized"
FORMAT = "slimkit.factorized/1"
TAG = "slimkit_factorized"  # attribute of a replacement block: {"method": ..., "rank": ...}

LINEAR_METHODS = ("svd", "none")
CONV_METHODS = ("tucker2", "cp", "none")
_RULES = ("rank", "energy", "ratio")
_PER_LAYER_KEYS = (*_RULES, "method", "iters")
CP_ITERS = 100  # ALS sweeps; it stops earlier once the fit stops improving

LayerFilter = Sequence[str] | Callable[[str, nn.Module], bool] | None


# --- configuration ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_rank(v: Any, where: str) -> int | tuple[int, int] | str:
    if v == "vbmf":
        return "vbmf"
    if _is_int(v) and v >= 1:
        return int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v):
        return (int(v[0]), int(v[1]))
    raise ConfigError(
        f"{where}: rank must be an integer >= 1, a pair (rank_in, rank_out) for Tucker-2 or "
        f"'vbmf', got {v!r}"
    )


def _check_fraction(v: Any, name: str, where: str, *, closed: bool) -> float:
    ok = (
        isinstance(v, numbers.Real)
        and not isinstance(v, bool)
        and v > 0
        and (v <= 1 if closed else v < 1)
    )
    if not ok:
        interval = "(0, 1]" if closed else "(0, 1)"
        raise ConfigError(f"{where}: {name} must be a number in {interval}, got {v!r}")
    return float(v)


def _check_rule(rank: Any, energy: Any, ratio: Any, where: str) -> tuple[str, Any] | None:
    given = [
        (k, v) for k, v in (("rank", rank), ("energy", energy), ("ratio", ratio)) if v is not None
    ]
    if len(given) > 1:
        raise ConfigError(
            f"{where}: give one of rank, energy or ratio, got {', '.join(k for k, _ in given)}"
        )
    if not given:
        return None
    kind, v = given[0]
    if kind == "rank":
        return ("rank", _check_rank(v, where))
    return (kind, _check_fraction(v, kind, where, closed=kind == "energy"))


def _check_iters(v: Any, where: str) -> int | None:
    if v is not None and not (_is_int(v) and v >= 0):
        raise ConfigError(f"{where}: iters must be an integer >= 0, got {v!r}")
    return v


def per_layer_items(
    per_layer: Any, keys: tuple[str, ...], owner: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, where-for-messages, options copy) of a `per_layer` mapping whose values are dicts
    of the given `keys`; the caller checks the values."""
    if not isinstance(per_layer, Mapping):
        raise ConfigError(f"{owner}: per_layer must map module names to dicts of options")
    items = []
    for name, opts in per_layer.items():
        where = f"{owner} per_layer[{name!r}]"
        if not isinstance(opts, Mapping):
            raise ConfigError(f"{where} must be a dict of options {keys}, got {opts!r}")
        unknown = sorted(set(opts) - set(keys))
        if unknown:
            raise ConfigError(f"{where}: unknown option {unknown[0]!r}; options: {keys}")
        items.append((str(name), where, dict(opts)))
    return items


def check_filter(layers: Any, exclude: Any, where: str) -> tuple[Any, tuple[str, ...]]:
    """Validate a `layers` selection (names or predicate) and an `exclude` tuple of names."""
    if layers is not None and not callable(layers):
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise ConfigError(
                f"{where}: layers must be a list of module names or a callable (name, module) -> "
                f"bool, got {layers!r}"
            )
        layers = tuple(layers)
    if isinstance(exclude, str) or not all(isinstance(n, str) for n in exclude):
        raise ConfigError(f"{where}: exclude must be a tuple of module names, got {exclude!r}")
    return layers, tuple(exclude)


@dataclass(frozen=True)
class LowRank:
    """Which layers to factorize and how far.

    One rule sizes every selected layer (at most one of): `rank` — an int (SVD/CP rank, Tucker-2
    rank_in = rank_out), a pair (rank_in, rank_out) for Tucker-2, or "vbmf" (empirical VBMF,
    Kim et al. 2016; SVD and Tucker-2 only); `energy` — keep the smallest rank whose singular
    values hold this fraction of Σσ² (per unfolding for Tucker-2); `ratio` — the largest rank
    whose factors hold at most this fraction of the layer's weights. A rank above what the layer
    allows (min(m, n) for SVD, (C, N) for Tucker-2) is an error, so a global `rank` usually goes
    with `layers` or `per_layer`.
    conv: "tucker2", "cp" or "none" for k×k Conv2d (a 1×1 conv always uses SVD); linear: "svd"
        or "none".
    layers: module names, or a predicate (name, module) -> bool tried on every eligible Linear
        and Conv2d; default: all of them (only the `per_layer` ones when no global rule is
        given). Eligible: called by its parent as a module, not inside an opaque torch.nn
        module such as MultiheadAttention, weights not shared, groups=1.
    exclude: module names left as they are.
    per_layer: name -> {"rank" | "energy" | "ratio": ..., "method": ..., "iters": ...} overrides.
    iters: HOOI sweeps for Tucker-2 (default 0: plain HOSVD), ALS sweeps for CP (default 100).
    skip_unprofitable: leave layers whose factorization would not reduce both weights and MACs.
    seed: for the random columns of CP's initialization when the rank exceeds a mode's size.
    """

    rank: int | tuple[int, int] | str | None = None
    energy: float | None = None
    ratio: float | None = None
    conv: str = "tucker2"
    linear: str = "svd"
    layers: LayerFilter = None
    exclude: tuple[str, ...] = ()
    per_layer: Mapping[str, Mapping[str, Any]] | None = None
    iters: int | None = None
    skip_unprofitable: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        rule = _check_rule(self.rank, self.energy, self.ratio, "LowRank")
        if rule is not None:
            object.__setattr__(self, rule[0], rule[1])
        if self.conv not in CONV_METHODS:
            raise ConfigError(f"LowRank: conv must be one of {CONV_METHODS}, got {self.conv!r}")
        if self.linear not in LINEAR_METHODS:
            raise ConfigError(
                f"LowRank: linear must be one of {LINEAR_METHODS}, got {self.linear!r}"
            )
        layers, exclude = check_filter(self.layers, self.exclude, "LowRank")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "exclude", exclude)
        _check_iters(self.iters, "LowRank")
        if self.per_layer is not None:
            checked = {}
            for name, where, opts in per_layer_items(self.per_layer, _PER_LAYER_KEYS, "LowRank"):
                _check_rule(opts.get("rank"), opts.get("energy"), opts.get("ratio"), where)
                method = opts.get("method")
                if method is not None and method not in (*CONV_METHODS, "svd"):
                    raise ConfigError(
                        f"{where}: method must be one of {(*CONV_METHODS, 'svd')}, got {method!r}"
                    )
                _check_iters(opts.get("iters"), where)
                checked[name] = opts
            object.__setattr__(self, "per_layer", checked)
        if not isinstance(self.skip_unprofitable, bool):
            raise ConfigError(
                f"LowRank: skip_unprofitable must be True or False, got {self.skip_unprofitable!r}"
            )
        if not _is_int(self.seed):
            raise ConfigError(f"LowRank: seed must be an integer, got {self.seed!r}")

    def rule(self) -> tuple[str, Any] | None:
        return _check_rule(self.rank, self.energy, self.ratio, "LowRank")


@dataclass(frozen=True)
class LayerPlan:
    """What factorization does (or would do) to one layer; MACs per output position."""

    name: str
    method: str  # svd, tucker2 or cp
    rank: int | tuple[int, int] | None  # (rank_in, rank_out) for Tucker-2
    params: int  # weights + bias, before
    params_after: int
    macs: int  # per output position (pixel or token), before
    macs_after: int
    skipped: str | None = None  # why the layer stays as it is


# --- which layers may be replaced ------------------------------------------------------------


def _opaque(m: nn.Module) -> bool:
    """A torch.nn module that fx keeps whole (MultiheadAttention, TransformerEncoderLayer…): it
    may read its children's weights directly, so they cannot become blocks."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return type(m).__module__.startswith("torch.") and not isinstance(m, containers)


def eligible_layers(
    model: nn.Module, types: tuple[type[nn.Module], ...]
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Layers of `types` that can be swapped for a block by name, and why the others cannot.

    A layer is swappable when its parent calls it as a module: not inside an opaque torch.nn
    module, an earlier replacement block or a parametrization, its weight not shared with another
    module and — when the model traces — called in the graph and never read as a tensor.
    """
    modules = dict(model.named_modules())
    blocked: list[tuple[str, str]] = []  # (prefix, reason)
    for name, m in modules.items():
        if name and TAG in vars(m):
            blocked.append((name, "inside a factorized block"))
        elif name and _opaque(m) and next(m.children(), None) is not None:
            blocked.append((name, f"inside {type(m).__name__}, which reads its weights directly"))
    owners: dict[int, list[str]] = {}
    for name, m in modules.items():
        for p in m.parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    aliases: dict[int, list[str]] = {}  # one module under several names: swapping one breaks it
    for name, m in model.named_modules(remove_duplicate=False):
        aliases.setdefault(id(m), []).append(name)
    called: set[str] | None = None
    read: set[str] = set()
    try:
        with eval_mode(model):
            graph = trace(model)
        called = {n.target for n in graph.nodes if n.op == "call_module"}
        read = {n.target.rpartition(".")[0] for n in graph.nodes if n.op == "get_attr"}
    except ConfigError:
        pass  # untraceable: the structural checks alone decide
    ok: dict[str, nn.Module] = {}
    why: dict[str, str] = {}
    for name, m in modules.items():
        if not isinstance(m, types) or not name:
            continue
        reason = next((r for p, r in blocked if name.startswith(p + ".")), None)
        if reason is None and parametrize.is_parametrized(m):
            reason = "parametrized (quantized?)"
        if reason is None:
            shared = {o for p in m.parameters(recurse=False) for o in owners[id(p)]} - {name}
            shared |= set(aliases[id(m)]) - {name}
            if shared:
                reason = f"it or its weights are shared with {sorted(shared)[0]!r}"
        if reason is None and name in read:
            reason = "the model reads its weights as tensors"
        if reason is None and called is not None and name not in called:
            reason = "the traced forward never calls it"
        if reason is None:
            ok[name] = m
        else:
            why[name] = reason
    return ok, why


def select_layers(
    model: nn.Module,
    ok: dict[str, nn.Module],
    why: dict[str, str],
    layers: LayerFilter,
    exclude: tuple[str, ...],
    where: str,
    default: Sequence[str] | None = None,
) -> list[str]:
    """Names chosen by `layers` (names: each must be eligible; predicate: tried on eligible
    ones; None: `default` or every eligible layer) minus `exclude`."""
    names = dict(model.named_modules())
    for n in exclude:
        if n not in names:
            raise ConfigError(f"{where}: exclude names {n!r}, which {type(model).__name__} lacks")
    if callable(layers):
        chosen = [n for n, m in ok.items() if layers(n, m)]
    else:
        wanted = list(layers) if layers is not None else default
        if wanted is None:
            chosen = list(ok)
        else:
            for n in wanted:
                if n in why:
                    raise ConfigError(f"{where}: layer {n!r} cannot be replaced: {why[n]}")
                if n not in ok:
                    kind = type(names[n]).__name__ if n in names else None
                    shown = ", ".join(list(ok)[:30]) + (" …" if len(ok) > 30 else "")
                    raise ConfigError(
                        f"{where}: {n!r} is "
                        + (f"a {kind}, not a layer it replaces" if kind else "not a module")
                        + f" of {type(model).__name__}; eligible: {shown or 'none'}"
                    )
            chosen = list(dict.fromkeys(wanted))
    return [n for n in chosen if n not in exclude]


# --- rank selection --------------------------------------------------------------------------


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


def _unfold(w: Tensor, mode: int) -> Tensor:
    return w.movedim(mode, 0).reshape(w.shape[mode], -1)


def _layer_shape(layer: nn.Module) -> tuple[int, int, int, int, int, int]:
    """(out, in, kh, kw, sh, sw) of a Linear (kernel and stride 1) or Conv2d."""
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features, 1, 1, 1, 1
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    return layer.out_channels, layer.in_channels, kh, kw, sh, sw


def _cp_limit(n: int, c: int, kh: int, kw: int) -> int:
    """No 4-way tensor needs a CP rank above the product of all but its largest mode."""
    return n * c * kh * kw // max(n, c, kh, kw)


def _costs(method: str, layer: nn.Module, rank: Any) -> tuple[int, int]:
    """(weights, MACs per output position) of the factorized layer, bias excluded."""
    n, c, kh, kw, sh, sw = _layer_shape(layer)
    if method == "svd":
        return rank * (n + c), rank * (n + c)  # a 1×1 conv's stride sits on the first conv
    if method == "tucker2":
        r_in, r_out = rank
        core = r_in * r_out * kh * kw
        return c * r_in + core + r_out * n, c * r_in * sh * sw + core + r_out * n
    weights = rank * (c + kh + kw + n)
    return weights, rank * (c * sh * sw + kh * sw + kw + n)


def _bias(layer: nn.Module) -> int:
    return layer.bias.numel() if layer.bias is not None else 0


def _resolve_rank(
    name: str, layer: nn.Module, method: str, rule: tuple[str, Any]
) -> int | tuple[int, int]:
    n, c, kh, kw, _, _ = _layer_shape(layer)
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
            return (min(evbmf_rank(_unfold(w, 1)), c), min(evbmf_rank(_unfold(w, 0)), n))
        if kind == "energy":
            return (
                _energy_rank(torch.linalg.svdvals(_unfold(w, 1)), value),
                _energy_rank(torch.linalg.svdvals(_unfold(w, 0)), value),
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


def _check_limit(name: str, layer: nn.Module, method: str, rank: Any) -> None:
    n, c, kh, kw, _, _ = _layer_shape(layer)
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


# --- decompositions --------------------------------------------------------------------------


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
    rank = _check_rank(rank, "svd_layer")
    _check_limit(name, layer, "svd", rank)
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
    u_out, u_in = _leading(_unfold(w, 0), r_out), _leading(_unfold(w, 1), r_in)
    for _ in range(iters):
        u_out = _leading(_unfold(torch.einsum("ncpq,ca->napq", w, u_in), 0), r_out)
        u_in = _leading(_unfold(torch.einsum("ncpq,nb->bcpq", w, u_out), 1), r_in)
    core = torch.einsum("ncpq,nb,ca->bapq", w, u_out, u_in)  # (r_out, r_in, kh, kw)
    return u_in, core, u_out


def tucker2_layer(
    conv: nn.Conv2d, rank: int | tuple[int, int], *, iters: int = 0, name: str = ""
) -> nn.Sequential:
    """Tucker-2 of a k×k conv as `reduce` 1×1 (C→rank_in) → `core` k×k (rank_in→rank_out, the
    conv's stride, padding and dilation) → `expand` 1×1 (rank_out→N, the bias). `rank` is
    (rank_in, rank_out) or one int for both. Kim et al. 2016."""
    _check_layer(conv, convs_only=True)
    rank = _check_rank(rank, "tucker2_layer")
    if rank == "vbmf":
        rank = _resolve_rank(name, conv, "tucker2", ("vbmf", None))
    ranks = (rank, rank) if isinstance(rank, int) else rank
    _check_limit(name, conv, "tucker2", ranks)
    _check_iters(iters, "tucker2_layer")
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
        u = _leading(_unfold(x, mode), min(rank, d))
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
    rank = _check_rank(rank, "cp_layer")
    if not isinstance(rank, int):
        raise ConfigError(f"cp_layer: a CP rank is one integer, got {rank!r}")
    _check_limit(name, conv, "cp", rank)
    _check_iters(iters, "cp_layer")
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


# --- whole models ----------------------------------------------------------------------------


def _method(name: str, layer: nn.Module, config: LowRank, opts: Mapping[str, Any]) -> str:
    default = config.linear if isinstance(layer, nn.Linear) else config.conv
    method = opts.get("method", default)
    if isinstance(layer, nn.Linear) and method not in LINEAR_METHODS:
        raise ConfigError(f"layer {name!r} is a Linear: method must be 'svd', got {method!r}")
    if isinstance(layer, nn.Conv2d):
        if method == "svd" and layer.kernel_size != (1, 1):
            raise ConfigError(
                f"layer {name!r} has a {layer.kernel_size} kernel: SVD is for Linear and 1×1 "
                "convs; use 'tucker2' or 'cp'"
            )
        if method != "none" and layer.kernel_size == (1, 1):
            method = "svd"  # a 1×1 kernel is a matrix: Tucker-2 or CP would only add a layer
    return method


def _plan(model: nn.Module, config: LowRank, build: bool) -> list[tuple[LayerPlan, Any]]:
    if not isinstance(config, LowRank):
        raise ConfigError(f"config must be a LowRank, got {type(config).__name__}")
    per_layer = dict(config.per_layer or {})
    global_rule = config.rule()
    ok, why = eligible_layers(model, (nn.Linear, nn.Conv2d))
    for n, m in list(ok.items()):
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            why[n] = f"grouped conv (groups={m.groups})"
            del ok[n]
    modules = dict(model.named_modules())
    for n in per_layer:
        if n not in modules:
            raise ConfigError(f"LowRank per_layer names {n!r}, which {type(model).__name__} lacks")
    default = None if global_rule is not None else list(per_layer)
    names = select_layers(model, ok, why, config.layers, config.exclude, "LowRank", default)
    out = []
    for name in names:
        layer = ok[name]
        opts = per_layer.get(name, {})
        method = _method(name, layer, config, opts)
        if method == "none":
            continue
        where = f"LowRank per_layer[{name!r}]"
        rule = _check_rule(opts.get("rank"), opts.get("energy"), opts.get("ratio"), where)
        rule = rule or global_rule
        if rule is None:
            raise ConfigError(f"no rank, energy or ratio for layer {name!r}: set one in LowRank")
        if rule == ("rank", "vbmf"):
            rule = ("vbmf", None)
        rank = _resolve_rank(name, layer, method, rule)
        _check_limit(name, layer, method, rank)
        n, c, kh, kw, _, _ = _layer_shape(layer)
        weights, macs = _costs(method, layer, rank)
        bias = _bias(layer)
        skipped = None
        if config.skip_unprofitable and (weights >= n * c * kh * kw or macs >= n * c * kh * kw):
            skipped = (
                f"{method} at rank {rank} would need {weights} weights and {macs} MACs per "
                f"output position, against {n * c * kh * kw}"
            )
        plan = LayerPlan(
            name,
            method,
            rank,
            n * c * kh * kw + bias,
            weights + bias,
            n * c * kh * kw,
            macs,
            skipped,
        )
        made = None
        if build and skipped is None:
            iters = opts.get("iters", config.iters)
            if method == "svd":
                made = svd_layer(layer, rank, name=name)
            elif method == "tucker2":
                made = tucker2_layer(layer, rank, iters=iters or 0, name=name)
            else:
                made = cp_layer(
                    layer,
                    rank,
                    iters=CP_ITERS if iters is None else iters,
                    seed=config.seed,
                    name=name,
                )
        out.append((plan, made))
    return out


def plan_factorization(model: nn.Module, config: LowRank) -> list[LayerPlan]:
    """What `factorize` would do to each selected layer, without changing anything."""
    return [plan for plan, _ in _plan(model, config, build=False)]


def factorize(model: nn.Module, config: LowRank) -> nn.Module:
    """A factorized copy of `model` (the model itself is not modified).

    Recover the accuracy the approximation costs by distilling from the original:
    `distill(factorized, model, data.train, TrainConfig(epochs=..., lr=...), alpha=0.9)`.
    """
    return factorize_(copy.deepcopy(model), config)


def factorize_(model: nn.Module, config: LowRank) -> nn.Module:
    """Factorize `model` in place: each chosen layer becomes a block under its own name."""
    plans = _plan(model, config, build=True)
    return apply_plans(model, plans, "factorize", "lower the rank, energy or ratio")


def apply_plans(model: nn.Module, plans: list, verb: str, hint: str) -> nn.Module:
    """Swap each planned layer for its built block (keeping train/eval mode); a one-line
    ConfigError, with the first reasons, when no layer was replaced."""
    done = [(plan, made) for plan, made in plans if made is not None]
    if not done:
        reasons = "; ".join(f"{p.name}: {p.skipped}" for p, _ in plans[:3]) or "no layer chosen"
        raise ConfigError(
            f"nothing to {verb} in {type(model).__name__} ({reasons}): {hint}, or choose "
            "other layers"
        )
    for plan, made in done:
        made.train(model.get_submodule(plan.name).training)  # keep the model's mode
        model.set_submodule(plan.name, made)
    return model


# --- saving and loading without pickle -------------------------------------------------------


def factorized_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """name -> {"method", "rank"} of every replacement block (factorized or converted)."""
    return {name: dict(vars(m)[TAG]) for name, m in model.named_modules() if TAG in vars(m)}


_CONV_FIELDS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
)


def _layer_spec(name: str, m: nn.Module) -> dict[str, Any]:
    if type(m) is nn.Conv2d:
        spec = {f: list(v) if isinstance(v := getattr(m, f), tuple) else v for f in _CONV_FIELDS}
        return {"name": name, "type": "Conv2d", **spec, "bias": m.bias is not None}
    if type(m) is nn.Linear:
        return {
            "name": name,
            "type": "Linear",
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
        }
    raise ConfigError(
        f"block part {name!r} is a {type(m).__name__}: save_factorized stores Conv2d and Linear"
    )


def _spec(seq: nn.Module) -> dict[str, Any]:
    return {**vars(seq)[TAG], "layers": [_layer_spec(n, m) for n, m in seq.named_children()]}


def describe_blocks(model: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shapes of the layers outside replacement blocks, each block's JSON spec): with `arch`,
    what rebuilds the model — `rebuild(arch, layers)` then `insert_blocks(model, blocks)`."""
    replaced = factorized_layers(model)
    inside = tuple(f"{n}." for n in replaced)
    layers = {n: d for n, d in describe(model).items() if not n.startswith(inside)}
    return layers, {n: _spec(model.get_submodule(n)) for n in replaced}


def insert_blocks(model: nn.Module, blocks: dict[str, Any], where: str) -> None:
    """Swap the blocks `describe_blocks` wrote into a rebuilt model (weights uninitialized)."""
    for name in sorted(blocks, key=lambda n: n.count(".")):
        made = _build_block(blocks[name], f"{where}, block {name!r}")
        try:
            model.get_submodule(name)
        except AttributeError:
            raise WeightsError(
                f"{where} replaces layer {name!r} that {type(model).__name__} does not have: "
                "the file is for another architecture"
            ) from None
        model.set_submodule(name, made)


def save_factorized(model: nn.Module, path: str | os.PathLike, *, arch: dict[str, Any]) -> Path:
    """Write weights + a JSON description as one safetensors file (atomically); no pickle.

    `arch` says how to build the model before factorization: {"zoo": name, "kwargs": {...}}, or
    {"kwargs": {...}} for the `factory` given to `load_factorized`. The header holds the shapes
    of the other layers (so pruned models load too) and every replacement block's layers.
    """
    replaced = factorized_layers(model)
    if not replaced:
        raise ConfigError(
            f"{type(model).__name__} has no factorized or converted layers: factorize or convert "
            "it first, or save it with save_pruned / save_weights"
        )
    layers, blocks = describe_blocks(model)
    text = json.dumps(
        {"format": FORMAT, "arch": check_arch(arch), "layers": layers, "factorized": blocks},
        separators=(",", ":"),
    )
    return save_weights(model, path, metadata={METADATA_KEY: text})


def load_factorized(
    path: str | os.PathLike, factory: Callable[..., nn.Module] | None = None
) -> nn.Module:
    """Rebuild a model saved by `save_factorized`: the architecture from `arch` (the zoo, or
    `factory(**arch["kwargs"])`), its layers resized, the blocks swapped in, then the weights
    checked and loaded."""
    path = Path(path)
    tensors, meta = read_safetensors(path)
    desc = read_description(
        path,
        meta,
        key=METADATA_KEY,
        fmt=FORMAT,
        what="factorized-model",
        saver="save_factorized",
        dicts=("arch", "layers", "factorized"),
    )
    where = f"'{path.name}'"
    model = rebuild(desc["arch"], desc["layers"], factory, where=where)
    insert_blocks(model, desc["factorized"], where)
    check_weights(model, tensors, source=f"weights {where}")
    model.load_state_dict(tensors)
    return model


def _int(v: Any, low: int = 1) -> bool:
    return _is_int(v) and v >= low


def _pair(v: Any, low: int = 1) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_int(x, low) for x in v)


def _build_layer(spec: Any, where: str) -> tuple[str, nn.Module]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise WeightsError(f"{where}: each layer must be a dict with a name, got {spec!r}")
    kind = spec.get("type")
    w = f"{where}, layer {spec['name']!r}"
    if not isinstance(spec.get("bias"), bool):
        raise WeightsError(f"{w}: bias must be true or false, got {spec.get('bias')!r}")
    if kind == "Linear":
        i, o = spec.get("in_features"), spec.get("out_features")
        if not (_int(i) and _int(o)):
            raise WeightsError(f"{w}: features must be positive integers, got {i!r}, {o!r}")
        return spec["name"], nn.Linear(i, o, bias=spec["bias"])
    if kind != "Conv2d":
        raise WeightsError(f"{w}: type must be Conv2d or Linear, got {kind!r}")
    args = {f: spec.get(f) for f in _CONV_FIELDS}
    pad = args["padding"]
    checks = [
        all(_int(args[f]) for f in ("in_channels", "out_channels", "groups")),
        all(_pair(args[f]) for f in ("kernel_size", "stride", "dilation")),
        pad in ("same", "valid") or _pair(pad, 0),
        args["padding_mode"] in ("zeros", "reflect", "replicate", "circular"),
    ]
    if not all(checks):
        raise WeightsError(f"{w}: invalid Conv2d fields {args}")
    if args["in_channels"] % args["groups"] or args["out_channels"] % args["groups"]:
        raise WeightsError(f"{w}: channels do not split into {args['groups']} groups")
    for f in ("kernel_size", "stride", "dilation") + (
        ("padding",) if isinstance(pad, list) else ()
    ):
        args[f] = tuple(args[f])
    return spec["name"], nn.Conv2d(**args, bias=spec["bias"])


def _build_block(spec: Any, where: str) -> nn.Sequential:
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise WeightsError(f"{where}: a block needs a non-empty list of layers")
    parts = [_build_layer(s, where) for s in spec["layers"]]
    if len({n for n, _ in parts}) != len(parts):
        raise WeightsError(f"{where}: layer names repeat")
    rank = spec.get("rank")
    return block(str(spec.get("method")), tuple(rank) if isinstance(rank, list) else rank, parts)
