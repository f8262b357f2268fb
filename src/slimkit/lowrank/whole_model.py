"""Factorizing whole models: `plan_factorization` says what a `LowRank` config would do to
each selected layer, `factorize` / `factorize_` build the blocks and swap them in under the
layers' own names, and `apply_plans` does the swapping for `slimkit.convert` too."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from slimkit.errors import ConfigError
from slimkit.lowrank.config import CP_ITERS, LINEAR_METHODS, LayerPlan, LowRank, check_rule
from slimkit.lowrank.decompose import cp_layer, svd_layer, tucker2_layer
from slimkit.lowrank.ranks import bias_count, check_limit, factor_costs, layer_shape, resolve_rank
from slimkit.lowrank.selection import eligible_layers, select_layers


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
        rule = check_rule(opts.get("rank"), opts.get("energy"), opts.get("ratio"), where)
        rule = rule or global_rule
        if rule is None:
            raise ConfigError(f"no rank, energy or ratio for layer {name!r}: set one in LowRank")
        if rule == ("rank", "vbmf"):
            rule = ("vbmf", None)
        rank = resolve_rank(name, layer, method, rule)
        check_limit(name, layer, method, rank)
        n, c, kh, kw, _, _ = layer_shape(layer)
        weights, macs = factor_costs(method, layer, rank)
        bias = bias_count(layer)
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
