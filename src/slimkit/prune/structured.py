"""Structured channel pruning that removes channels for real.

`prune_channels(model, ChannelPruning(ratio=0.5), example)` traces the model once
(`slimkit.graph`), scores every prunable unit of every channel group with an importance criterion
(`slimkit.prune.importance`), picks the units to drop and rebuilds each affected layer as a smaller
layer of the same type with the kept channels' weights copied exactly. The result is the user's own
model class with smaller `nn.Conv2d` / `nn.Linear` / norm layers: it runs without slimkit.

Saving never pickles modules: `save_pruned` writes one safetensors file whose metadata entry
`slimkit.pruned` is JSON — the `arch` dict given by the caller (how to build the unpruned model)
and the shape hyper-parameters of every resizable layer. `load_pruned` builds the architecture,
resizes the layers whose description differs, and loads the weights after a key-by-key check.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.arch import check_arch, describe, read_description, rebuild, replace_tensor
from slimkit.errors import ConfigError
from slimkit.graph import CHANNEL_NORM, CONV, ChannelGraph, Group, build_graph
from slimkit.measure.common import check_input, eval_mode, first_tensor, num_threads
from slimkit.prune.importance import Importance, accumulate_grads, get_importance
from slimkit.weights import check_weights, read_safetensors, save_weights

SCOPES = ("layer", "global")
METADATA_KEY = "slimkit.pruned"
FORMAT = "slimkit.pruned/1"


def _check_ratio(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ConfigError(f"ChannelPruning: {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"ChannelPruning: {name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ChannelPruning:
    """What to prune and how much.

    ratio: fraction of each group's channels to remove ("layer" scope), or of all prunable
        channels ("global" scope: units ranked across groups by score / group mean score, no
        group losing more than `max_ratio`).
    importance: a registered criterion name (l1, l2, taylor, bn_scale, fpgm) or a callable
        (group) -> 1-D tensor of scores, high = keep.
    layer_ratios: module name -> ratio for the group whose output channels that module produces
        (a group named by several modules takes the smallest); these groups leave the global pool.
    exclude: modules whose channels must not change; they are traced as opaque leaves, so this
        also works around a submodule fx cannot trace.
    round_to: kept channels per group rounded up to a multiple of this (e.g. 8 for SIMD kernels).
    min_channels: never keep fewer channels than this in a group (and never zero).
    normalize: "global" scope ranks score / group mean score; False ranks the raw scores, as
        Network Slimming's one threshold over all BN scales does (fair only when every group's
        scores share a scale, e.g. one BN per group).
    """

    ratio: float
    importance: str | Importance = "l1"
    scope: str = "layer"
    max_ratio: float = 0.9
    layer_ratios: Mapping[str, float] | None = None
    exclude: tuple[str, ...] = ()
    round_to: int = 1
    min_channels: int = 1
    normalize: bool = True

    def __post_init__(self) -> None:
        _check_ratio("ratio", self.ratio)
        if isinstance(self.importance, str):
            get_importance(self.importance)
        elif not callable(self.importance):
            raise ConfigError(
                f"ChannelPruning: importance must be a name or a callable, got {self.importance!r}"
            )
        if self.scope not in SCOPES:
            raise ConfigError(f"ChannelPruning: scope must be one of {SCOPES}, got {self.scope!r}")
        if _check_ratio("max_ratio", self.max_ratio) == 0:
            raise ConfigError("ChannelPruning: max_ratio must be > 0")
        if self.layer_ratios is not None:
            if not isinstance(self.layer_ratios, Mapping):
                raise ConfigError("ChannelPruning: layer_ratios must map module names to ratios")
            ratios = {str(k): _check_ratio(f"layer_ratios[{k!r}]", v) for k, v in
                      self.layer_ratios.items()}  # fmt: skip
            object.__setattr__(self, "layer_ratios", ratios)
        if isinstance(self.exclude, str) or not all(isinstance(n, str) for n in self.exclude):
            raise ConfigError(
                f"ChannelPruning: exclude must be a tuple of module names, got {self.exclude!r}"
            )
        object.__setattr__(self, "exclude", tuple(self.exclude))
        _check_count("round_to", self.round_to)
        _check_count("min_channels", self.min_channels)
        if not isinstance(self.normalize, bool):
            raise ConfigError(
                f"ChannelPruning: normalize must be True or False, got {self.normalize!r}"
            )


def prune_channels(
    model: nn.Module,
    config: ChannelPruning,
    example: Tensor,
    *,
    data_batch: Tensor | tuple[Tensor, Tensor] | None = None,
) -> nn.Module:
    """A pruned copy of `model`; the model itself is not modified.

    `example` is an input batch (shapes only). `data_batch` — `(inputs, targets)` or inputs — is
    run forward and backward first when the criterion needs gradients (taylor).
    """
    pruned = copy.deepcopy(model)
    for p, q in zip(model.parameters(), pruned.parameters(), strict=True):
        if p.grad is not None:  # deepcopy drops gradients; taylor may need the user's
            q.grad = p.grad.detach().clone()
    return prune_channels_(pruned, config, example, data_batch=data_batch)


def prune_channels_(
    model: nn.Module,
    config: ChannelPruning,
    example: Tensor,
    *,
    data_batch: Tensor | tuple[Tensor, Tensor] | None = None,
) -> nn.Module:
    """Prune `model` in place (its layers are resized) and return it."""
    if not isinstance(config, ChannelPruning):
        raise ConfigError(f"config must be a ChannelPruning, got {type(config).__name__}")
    if isinstance(example, Tensor):
        check_input(model, example)
    importance = get_importance(config.importance)
    if data_batch is not None:
        accumulate_grads(model, data_batch)
    graph = build_graph(model, example, leaves=config.exclude)
    scores = [_scores(importance, g) for g in graph.groups]
    keeps = _keep_counts(graph, scores, config)
    removed = [torch.empty(0, dtype=torch.long)]
    for group, score, keep in zip(graph.groups, scores, keeps, strict=True):
        if keep < group.size:
            removed.append(group.units[~_select(group, score, keep)])
    _apply(graph, torch.cat(removed))
    if data_batch is not None:
        model.zero_grad(set_to_none=True)
    _check_runs(model, example, graph.output_shape)
    return model


# --- how many units each group keeps ---------------------------------------------------------


def _scores(importance: Importance, group: Group) -> Tensor:
    scores = importance(group)
    if not isinstance(scores, Tensor) or scores.shape != (group.size,):
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ConfigError(
            f"importance returned {shape} for a group of {group.size} channels "
            f"({', '.join(group.names[:3])}): return one score per channel"
        )
    if not bool(torch.isfinite(scores).all()):
        raise ConfigError(f"importance returned NaN or inf for group {group.names[:3]}")
    return scores.detach().double().cpu()


def _cells(group: Group) -> Tensor | None:
    """Cell of each unit: units that no equal-count constraint tells apart. None when a
    constraint has parts of different sizes (then no uniform choice keeps them equal)."""
    for p in group.partitions:
        sizes = torch.bincount(p[p >= 0])
        if not bool((sizes == sizes[0]).all()):
            return None
    return torch.stack(group.partitions, 1).unique(dim=0, return_inverse=True)[1]


def _feasible(group: Group) -> list[int]:
    """Unit counts the group may keep, ascending.

    With equal-count constraints (grouped convs, GroupNorm, chunk) every cell keeps the same
    fraction, so each part of each constraint keeps the same count: fractions t / g with g the
    gcd of the cell sizes (one cell per conv group, say).
    """
    n = group.size
    if not group.partitions:
        return list(range(1, n + 1))
    cells = _cells(group)
    if cells is None:
        return [n]
    g = math.gcd(*torch.bincount(cells).tolist())
    return [n * t // g for t in range(1, g + 1)]


def _round_keep(n: int, target: int, feasible: list[int], config: ChannelPruning) -> int:
    target = max(target, min(config.min_channels, n), 1)
    ok = [k for k in feasible if k >= target and (k % config.round_to == 0 or k == n)]
    return min(ok) if ok else n


def _group_ratios(graph: ChannelGraph, config: ChannelPruning) -> list[float | None]:
    """Per group: its ratio, or None for the global pool."""
    ratios: list[float | None] = [
        config.ratio if config.scope == "layer" else None for _ in graph.groups
    ]
    if not config.layer_ratios:
        return ratios
    modules = dict(graph.model.named_modules())
    owners: dict[str, list[int]] = {}
    for g in graph.groups:
        for name in g.names:
            owners.setdefault(name, []).append(g.index)
    named: dict[int, float] = {}
    for name, ratio in config.layer_ratios.items():
        if name not in modules or not name:
            valid = [n for n in modules if n]
            raise ConfigError(
                f"layer_ratios names {name!r}, which {type(graph.model).__name__} does not "
                f"have; valid: {', '.join(valid[:40])}{' …' if len(valid) > 40 else ''}"
            )
        if name not in owners:
            if ratio == 0:  # "leave it whole" holds already: nothing to check or do
                continue
            raise ConfigError(
                f"layer_ratios names {name!r}, whose output channels cannot be pruned (they "
                "reach the model output, an excluded layer or an op slimkit cannot map)"
            )
        for gi in owners[name]:
            named[gi] = min(named.get(gi, ratio), ratio)
    for gi, ratio in named.items():
        ratios[gi] = ratio
    return ratios


def _keep_counts(graph: ChannelGraph, scores: list[Tensor], config: ChannelPruning) -> list[int]:
    groups = graph.groups
    ratios = _group_ratios(graph, config)
    feasible = [_feasible(g) for g in groups]
    keeps = [
        _round_keep(g.size, g.size - int(r * g.size + 1e-9), f, config) if r is not None else 0
        for g, r, f in zip(groups, ratios, feasible, strict=True)
    ]
    pool = [i for i, r in enumerate(ratios) if r is None]
    if pool:  # global: drop the lowest (normalized) scores, at most max_ratio of any group
        n_total = sum(groups[i].size for i in pool)
        budget = int(config.ratio * n_total + 1e-9)
        cap = {
            i: groups[i].size
            - max(math.ceil((1 - config.max_ratio) * groups[i].size), config.min_channels, 1)
            for i in pool
        }
        entries = []
        for i in pool:
            mean = float(scores[i].mean())
            normalized = scores[i] / mean if config.normalize and mean > 0 else scores[i]
            entries += [(s, i) for s in normalized.tolist()]
        entries.sort(key=lambda e: e[0])
        dropped = dict.fromkeys(pool, 0)
        for _, i in entries:
            if budget == 0:
                break
            if dropped[i] < cap[i]:
                dropped[i] += 1
                budget -= 1
        for i in pool:
            n = groups[i].size
            keeps[i] = _round_keep(n, n - dropped[i], feasible[i], config)
    return keeps


# --- which units each group keeps ------------------------------------------------------------


def _select(group: Group, scores: Tensor, keep: int) -> Tensor:
    """Bool mask of the `keep` best units; with constraints, the best of every cell."""
    mask = torch.zeros(group.size, dtype=torch.bool)
    cells = _cells(group) if group.partitions else torch.zeros(group.size, dtype=torch.long)
    for cell in cells.unique().tolist():
        members = torch.nonzero(cells == cell).flatten()
        k = len(members) * keep // group.size  # exact: `keep` is feasible
        mask[members[torch.topk(scores[members], k).indices]] = True
    return mask


# --- surgery: smaller layers with the kept weights -------------------------------------------


def _apply(graph: ChannelGraph, removed: Tensor) -> None:
    for name, sides in graph.keep_masks(removed).items():
        module = graph.model.get_submodule(name)
        axis = graph.ports[f"{name}:norm"].axis if "norm" in sides else 0
        _prune_layer(module, sides, axis)


def _prune_layer(m: nn.Module, sides: dict[str, Tensor], axis: int) -> None:
    """Slice `m`'s weights to the kept channels and update its shape attributes."""
    tensors = list(m.parameters()) + list(m.buffers())
    if tensors:  # index on the layer's device
        sides = {role: keep.to(tensors[0].device) for role, keep in sides.items()}
    if isinstance(m, CONV):
        keep_in = sides.get("in", m.weight.new_ones(m.in_channels, dtype=torch.bool))
        keep_out = sides.get("out", m.weight.new_ones(m.out_channels, dtype=torch.bool))
        rows = torch.nonzero(keep_out).flatten()
        weight = m.weight.detach()[rows]  # (C_out', C_in/groups, k…)
        depthwise = m.groups > 1 and m.groups == m.in_channels
        if depthwise:  # one input per group: dropping inputs drops whole groups
            groups = int(keep_in.sum())
        else:  # each output row keeps the surviving inputs of its own group
            per_group = keep_in.view(m.groups, -1)  # (groups, C_in/groups)
            if len(set(per_group.sum(1).tolist())) != 1:
                raise RuntimeError(f"uneven channels per group in {m}: a graph bug")
            offsets = torch.stack([torch.nonzero(r).flatten() for r in per_group])
            index = offsets[rows // (m.out_channels // m.groups)]  # (C_out', C_in'/groups)
            index = index.view(*index.shape, *[1] * (weight.dim() - 2))
            weight = torch.gather(weight, 1, index.expand(-1, -1, *weight.shape[2:]))
            groups = m.groups
        replace_tensor(m, "weight", weight)
        replace_tensor(m, "bias", m.bias[rows] if m.bias is not None else None)
        m.in_channels, m.out_channels, m.groups = int(keep_in.sum()), len(rows), groups
    elif isinstance(m, nn.Linear):
        keep_in = sides.get("in", m.weight.new_ones(m.in_features, dtype=torch.bool))
        keep_out = sides.get("out", m.weight.new_ones(m.out_features, dtype=torch.bool))
        replace_tensor(m, "weight", m.weight[keep_out][:, keep_in])
        replace_tensor(m, "bias", m.bias[keep_out] if m.bias is not None else None)
        m.in_features, m.out_features = int(keep_in.sum()), int(keep_out.sum())
    elif isinstance(m, (*CHANNEL_NORM, nn.GroupNorm)):
        keep = sides["norm"]
        for name in ("weight", "bias", "running_mean", "running_var"):
            value = getattr(m, name, None)
            replace_tensor(m, name, value[keep] if value is not None else None)
        if isinstance(m, nn.GroupNorm):
            m.num_channels = int(keep.sum())
        else:
            m.num_features = int(keep.sum())
    elif isinstance(m, nn.LayerNorm):
        index = torch.nonzero(sides["norm"]).flatten()
        for name in ("weight", "bias"):
            value = getattr(m, name, None)
            replace_tensor(m, name, value.index_select(axis, index) if value is not None else None)
        shape = list(m.normalized_shape)
        shape[axis] = len(index)
        m.normalized_shape = tuple(shape)
    else:
        raise RuntimeError(f"no surgery for {type(m).__name__}: a graph bug")


def _check_runs(model: nn.Module, example: Tensor, expected: tuple[int, ...]) -> None:
    """The pruned model must still run and give the same output shape."""
    try:
        with torch.no_grad(), eval_mode(model), num_threads(1):
            shape = tuple(first_tensor(model(example[:1])).shape[1:])
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ConfigError(
            f"the pruned {type(model).__name__} no longer runs ({reason}): its forward uses a "
            "channel count slimkit could not follow; exclude the layers around it"
        ) from None
    if shape != expected:
        raise ConfigError(
            f"pruning changed {type(model).__name__}'s output shape from {expected} to {shape}; "
            "exclude the layers that produce it"
        )


# --- saving and loading without pickle -------------------------------------------------------


def save_pruned(model: nn.Module, path: str | os.PathLike, *, arch: dict[str, Any]) -> Path:
    """Write weights + layer shapes as one safetensors file (atomically); nothing is pickled.

    `arch` says how to build the unpruned model: {"zoo": name, "kwargs": {...}} for a zoo model,
    or {"kwargs": {...}} passed to the `factory` given to `load_pruned`. It must be JSON.
    """
    text = json.dumps({"format": FORMAT, "arch": check_arch(arch), "layers": describe(model)})
    return save_weights(model, path, metadata={METADATA_KEY: text})


def load_pruned(
    path: str | os.PathLike, factory: Callable[..., nn.Module] | None = None
) -> nn.Module:
    """Rebuild a model saved by `save_pruned`: the architecture from `arch` (the zoo, or
    `factory(**arch["kwargs"])`), described layers resized, then the weights checked and loaded."""
    path = Path(path)
    tensors, meta = read_safetensors(path)
    desc = read_description(
        path, meta, key=METADATA_KEY, fmt=FORMAT, what="pruned-model", saver="save_pruned"
    )
    model = rebuild(desc["arch"], desc["layers"], factory, where=f"'{path.name}'")
    check_weights(model, tensors, source=f"weights '{path.name}'")
    model.load_state_dict(tensors)
    return model
