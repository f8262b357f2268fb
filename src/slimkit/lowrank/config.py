"""The configuration of low-rank factorization: `LowRank` (which layers, which method, which
rank rule), `LayerPlan` (what happens to one layer), the method names and defaults, and the
checks of rank rules, per-layer overrides and layer filters that `slimkit.convert` shares."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from slimkit.errors import ConfigError

TAG = "slimkit_factorized"  # attribute of a replacement block: {"method": ..., "rank": ...}

LINEAR_METHODS = ("svd", "none")
CONV_METHODS = ("tucker2", "cp", "none")
_RULES = ("rank", "energy", "ratio")
_PER_LAYER_KEYS = (*_RULES, "method", "iters")
CP_ITERS = 100  # ALS sweeps; it stops earlier once the fit stops improving

LayerFilter = Sequence[str] | Callable[[str, nn.Module], bool] | None


def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_rank(v: Any, where: str) -> int | tuple[int, int] | str:
    if v == "vbmf":
        return "vbmf"
    if is_int(v) and v >= 1:
        return int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(x) and x >= 1 for x in v):
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


def check_rule(rank: Any, energy: Any, ratio: Any, where: str) -> tuple[str, Any] | None:
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
        return ("rank", check_rank(v, where))
    return (kind, _check_fraction(v, kind, where, closed=kind == "energy"))


def check_iters(v: Any, where: str) -> int | None:
    if v is not None and not (is_int(v) and v >= 0):
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
        rule = check_rule(self.rank, self.energy, self.ratio, "LowRank")
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
        check_iters(self.iters, "LowRank")
        if self.per_layer is not None:
            checked = {}
            for name, where, opts in per_layer_items(self.per_layer, _PER_LAYER_KEYS, "LowRank"):
                check_rule(opts.get("rank"), opts.get("energy"), opts.get("ratio"), where)
                method = opts.get("method")
                if method is not None and method not in (*CONV_METHODS, "svd"):
                    raise ConfigError(
                        f"{where}: method must be one of {(*CONV_METHODS, 'svd')}, got {method!r}"
                    )
                check_iters(opts.get("iters"), where)
                checked[name] = opts
            object.__setattr__(self, "per_layer", checked)
        if not isinstance(self.skip_unprofitable, bool):
            raise ConfigError(
                f"LowRank: skip_unprofitable must be True or False, got {self.skip_unprofitable!r}"
            )
        if not is_int(self.seed):
            raise ConfigError(f"LowRank: seed must be an integer, got {self.seed!r}")

    def rule(self) -> tuple[str, Any] | None:
        return check_rule(self.rank, self.energy, self.ratio, "LowRank")


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
