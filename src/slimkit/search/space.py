"""Search spaces: one ordinal dimension per layer and technique, and what a policy builds.

A dimension is (kind, layer, choices) with choices ordered from "leave as it is" to "compress
most", so every strategy can step along it: channel ratio (structured pruning, one dimension per
channel group, named by a module that produces it), sparsity (unstructured), rank (the fraction
of a layer's weights its low-rank factors keep) and bits (k-bit weights, 32 = float). Two
dimensions act on the whole model: width (MobileNet's multiplier α applied to a trained model:
every channel group keeps the fraction α, the most important channels by L1 norm) and
resolution (the input size multiplier ρ, for models with global pooling). A policy maps each
dimension's name to one of its choices; `build` applies it with the library's own verbs, in the
order width/channel → rank → sparsity → bits, and `recipe_steps` writes the same thing as
pipeline steps (resolution as the recipe's `resolution`), so `slimkit compress --recipe`
reproduces a searched model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit import prune, quant
from slimkit.errors import ConfigError
from slimkit.graph import build_graph
from slimkit.lowrank import LowRank, factorize, plan_factorization
from slimkit.measure.common import declare_input

KINDS = ("channel", "sparsity", "rank", "bits", "width", "resolution")
DEFAULT_CHOICES: dict[str, tuple[float, ...]] = {
    "channel": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "sparsity": (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    "rank": (1.0, 0.5, 0.35, 0.25, 0.15),
    "bits": (32, 8, 6, 4, 3, 2),
    "width": (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25),
    "resolution": (1.0, 0.875, 0.75, 0.625, 0.5),
}
# Pairs that cannot go together: no single artifact holds both, or (width, channel) one
# subsumes the other.
_EXCLUSIVE = [("sparsity", "bits"), ("sparsity", "rank"), ("rank", "bits"), ("width", "channel")]


@dataclass(frozen=True)
class Dimension:
    kind: str
    layer: str
    choices: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.layer}"


@dataclass(frozen=True)
class Space:
    dims: tuple[Dimension, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if any(d.kind == k for d in self.dims))

    @property
    def size(self) -> int:
        n = 1
        for d in self.dims:
            n *= len(d.choices)
        return n

    def signature(self) -> str:
        """JSON naming every dimension and its choices: a stored study must match it."""
        return json.dumps([[d.name, list(d.choices)] for d in self.dims], separators=(",", ":"))

    def policy(self, indices: Sequence[int]) -> dict[str, float]:
        return {d.name: d.choices[i] for d, i in zip(self.dims, indices, strict=True)}

    def identity(self) -> list[int]:
        return [0] * len(self.dims)

    def extreme(self) -> list[int]:
        return [len(d.choices) - 1 for d in self.dims]


def default_space(
    model: nn.Module,
    example: torch.Tensor,
    kinds: Sequence[str] = ("channel",),
    choices: dict[str, Sequence[float]] | None = None,
    exclude: Sequence[str] = (),
) -> Space:
    """One dimension per eligible layer for each technique in `kinds`."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise ConfigError(f"search space kinds must be drawn from {KINDS}, got {list(kinds)}")
    for a, b in _EXCLUSIVE:
        if a in kinds and b in kinds:
            raise ConfigError(
                f"search spaces {a} and {b} cannot be combined (one artifact cannot hold both, or "
                "one subsumes the other); pick one of them"
            )
    picked = {k: _check_choices(k, (choices or {}).get(k, DEFAULT_CHOICES[k])) for k in kinds}
    dims: list[Dimension] = []
    for kind in kinds:
        layers = [n for n in _layers(kind, model, example, min(picked[kind])) if n not in exclude]
        dims += [Dimension(kind, name, picked[kind]) for name in layers]
    if not dims:
        raise ConfigError(
            f"{type(model).__name__} has no layer the {'/'.join(kinds)} space can change"
        )
    return Space(tuple(dims))


def _check_choices(kind: str, values: Sequence[float]) -> tuple[float, ...]:
    values = tuple(values)
    identity = DEFAULT_CHOICES[kind][0]
    if len(values) < 2 or values[0] != identity:
        raise ConfigError(
            f"{kind} choices must start with {identity} (no change) and offer at least one "
            f"more, got {list(values)}"
        )
    if kind in ("channel", "sparsity") and not all(0 <= v < 1 for v in values):
        raise ConfigError(f"{kind} choices must be fractions in [0, 1), got {list(values)}")
    if kind in ("rank", "width", "resolution") and not all(0 < v <= 1 for v in values):
        raise ConfigError(f"{kind} choices must be fractions in (0, 1], got {list(values)}")
    if kind == "bits" and not all(v == 32 or (int(v) == v and 2 <= v <= 8) for v in values):
        raise ConfigError(f"bits choices must be 32 (float) or integers 2..8, got {list(values)}")
    return values


def _layers(kind: str, model: nn.Module, example: torch.Tensor, smallest: float) -> list[str]:
    if kind == "width":
        return ["model"] if _layers("channel", model, example, smallest) else []
    if kind == "resolution":
        return ["input"] if _runs_at(model, example, smallest) else []
    if kind == "channel":
        names: list[str] = []
        for group in build_graph(model, example).groups:
            if group.size > 1 and group.names and group.names[0] not in names:
                names.append(group.names[0])
        return names
    if kind == "rank":
        plans = plan_factorization(model, LowRank(ratio=0.5))
        return [p.name for p in plans if p.skipped is None]
    return list(prune.prunable_layers(model))


def _runs_at(model: nn.Module, example: torch.Tensor, scale: float) -> bool:
    try:
        with torch.no_grad():
            model.eval().forward(scaled(example, scale))  # past any input-shape check
        return True
    except RuntimeError:  # a fixed-size flatten → Linear cannot take a smaller feature map
        return False


def scaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """A normalized batch resized by `scale` (the shapes a resolution multiplier feeds)."""
    if scale == 1.0:
        return x
    size = [max(1, round(s * scale)) for s in x.shape[2:]]
    return F.interpolate(x, size=size, mode="bilinear", antialias=True)


def resolution_of(policy: dict[str, float]) -> float:
    return policy.get("resolution:input", 1.0)


# --- applying a policy --------------------------------------------------------------------------


def by_kind(policy: dict[str, float]) -> dict[str, dict[str, float]]:
    """{"channel:conv1": 0.3, ...} → {"channel": {"conv1": 0.3}, ...}, no-change entries dropped."""
    out: dict[str, dict[str, float]] = {k: {} for k in KINDS}
    for name, value in policy.items():
        kind, _, layer = name.partition(":")
        if value != DEFAULT_CHOICES[kind][0]:
            out[kind][layer] = value
    return out


def build(model: nn.Module, policy: dict[str, float], example: torch.Tensor) -> nn.Module:
    """The compressed copy of `model` that `policy` describes (the model is not modified).
    k-bit layers come back fake-quantized (their forward uses the quantized weights)."""
    parts = by_kind(policy)
    out = model
    if parts["width"]:
        ratio = 1.0 - parts["width"]["model"]
        out = prune.prune_channels(out, prune.ChannelPruning(ratio=ratio), example)
    if parts["channel"]:
        out = prune.prune_channels(
            out, prune.ChannelPruning(ratio=0.0, layer_ratios=parts["channel"]), example
        )
    if parts["rank"]:
        out = factorize(out, _lowrank(parts["rank"]))
    if parts["sparsity"]:
        out = _copy_if_same(out, model)
        prune.prune_magnitude(
            out, prune.MagnitudePruning(sparsity=0.0, layer_sparsity=parts["sparsity"])
        )
        prune.make_permanent(out)
    if parts["bits"]:
        out = quant.quantize_kbit(out, _kbit(parts["bits"], policy))
    out = _copy_if_same(out, model).eval()
    if resolution_of(policy) != 1.0:
        declare_input(out, scaled(example, resolution_of(policy)).shape[1:])
    return out


def _copy_if_same(out: nn.Module, model: nn.Module) -> nn.Module:
    return copy.deepcopy(model) if out is model else out


def _lowrank(ranks: dict[str, float]) -> LowRank:
    return LowRank(per_layer={n: {"ratio": r} for n, r in ranks.items() if r < 1})


def _kbit(bits: dict[str, float], policy: dict[str, float]) -> quant.KBitConfig:
    floats = tuple(
        n.partition(":")[2] for n, v in policy.items() if n.startswith("bits:") and v == 32
    )
    return quant.KBitConfig(
        bits=8,
        keep_first_last=False,
        layer_bits={n: int(b) for n, b in bits.items()},
        exclude=floats,
    )


def artifact_kind(policy: dict[str, float]) -> str:
    """Which file holds the result: kbit, sparse, factorized or pruned (also for width and
    resolution: the weights of a resolution-only policy are the input's, saved as they are)."""
    parts = by_kind(policy)
    for kind, artifact in (("bits", "kbit"), ("sparsity", "sparse"), ("rank", "factorized")):
        if parts[kind]:
            return artifact
    return "pruned"


def recipe_steps(policy: dict[str, float], train: dict[str, Any]) -> list[dict[str, Any]]:
    """Pipeline steps that apply `policy` and then recover with the `train` options (epochs, lr,
    distill_alpha, ...; the recovery happens inside the last step for k-bit QAT)."""
    parts = by_kind(policy)
    steps: list[dict[str, Any]] = []
    if parts["width"]:
        steps.append({"prune": {"method": "channel", "ratio": 1.0 - parts["width"]["model"]}})
    if parts["channel"]:
        steps.append(
            {"prune": {"method": "channel", "ratio": 0.0, "layer_ratios": parts["channel"]}}
        )
    if parts["rank"]:
        per_layer = {n: {"ratio": r} for n, r in parts["rank"].items()}
        steps.append({"factorize": {"per_layer": per_layer}})
    if parts["sparsity"]:
        steps.append(
            {"prune": {"method": "magnitude", "sparsity": 0.0, "layer_sparsity": parts["sparsity"]}}
        )
    training = {k: v for k, v in train.items() if v is not None}
    if parts["bits"]:
        cfg = _kbit(parts["bits"], policy)
        step = {
            "scheme": "kbit",
            "bits": 8,
            "keep_first_last": False,
            "layer_bits": dict(cfg.layer_bits or {}),
        }
        if cfg.exclude:
            step["exclude"] = list(cfg.exclude)
        steps.append({"quantize": {**step, **training}})
    elif training.get("epochs", 0) > 0:
        steps.append({"finetune": training})
    return steps
