"""Convert the standard k×k convolutions of a trained model into cheaper factorized ones.

- "separable": depthwise kh×kw (C → C·m, groups C, the conv's stride/padding/dilation) →
  pointwise 1×1 (C·m → N, the bias): the MobileNet block (Howard et al. 2017, "MobileNets";
  Chollet 2017, "Xception"), m the depth multiplier. C·m·(kh·kw + N) weights instead of
  N·C·kh·kw.
- "asymmetric": kh×1 (C → M) → 1×kw (M → N), the vertical/horizontal filter pair of Jaderberg,
  Vedaldi, Zisserman 2014 ("Speeding up Convolutional Neural Networks with Low Rank
  Expansions", scheme 2) and Inception-v3's factorized convolutions (Szegedy et al. 2016).
  M·(C·kh + N·kw) weights; M defaults to min(C, N).

Initialization fits the new layers to the original kernel W in the least-squares sense, in
closed form:

- separable: W[n, c] = Σ_j p[n, c·m+j]·f[c·m+j] means each input channel's slice W[:, c]
  (N × kh·kw) is approximated by a rank-m matrix — the problem separates per input channel, so
  the best rank-m approximation of each slice (truncated SVD, Eckart–Young) is the global
  optimum. ALS on the same objective could only reach this point more slowly (or stop at a
  worse one), which is why SVD is used. m = min(N, kh·kw) reproduces the conv exactly.
- asymmetric: W rearranged as a (C·kh) × (N·kw) matrix has rank ≤ M exactly when the kh×1 →
  1×kw pair can represent it, so its truncated SVD is again the optimum (Tai et al. 2016, "
  Convolutional Neural Networks with Low-Rank Regularization", derive the same closed form).
  M = min(C·kh, N·kw) is exact.

Both fit the weights, not the outputs, so accuracy drops; the recovery is distillation from the
original model, whose soft targets carry more than the labels:

    converted = convert(model, Conversion("separable"))
    distill(converted, model, data.train, TrainConfig(epochs=5, lr=0.01), alpha=0.9)

The blocks are tagged like `slimkit.lowrank`'s, so `save_factorized` / `load_factorized`
store and rebuild converted models without pickle.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.lowrank import (
    LayerFilter,
    LayerPlan,
    apply_plans,
    axis_conv_args,
    block,
    check_filter,
    eligible_layers,
    load_factorized,
    new_conv,
    per_layer_items,
    save_factorized,
    select_layers,
)

__all__ = [
    "KINDS",
    "Conversion",
    "asymmetric_layer",
    "convert",
    "convert_",
    "load_factorized",
    "plan_conversion",
    "save_factorized",
    "separable_layer",
]

KINDS = ("separable", "asymmetric")
_PER_LAYER_KEYS = ("to", "depth_multiplier", "rank")


def _positive(v: Any, what: str, where: str, *, optional: bool = False) -> int | None:
    if optional and v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where}: {what} must be an integer >= 1, got {v!r}")
    return v


@dataclass(frozen=True)
class Conversion:
    """Which convolutions to convert, and into what.

    to: "separable" (depthwise + pointwise) or "asymmetric" (kh×1 then 1×kw).
    layers: module names or a predicate (name, module) -> bool; default every standard conv
        (Conv2d with groups=1 and a kernel larger than 1×1 — larger than 1 on both axes for
        "asymmetric").
    exclude: module names left as they are.
    depth_multiplier: separable only: depthwise filters per input channel (exact at
        min(out_channels, kh·kw)).
    rank: asymmetric only: channels between the two convs (default min(in, out); exact at
        min(in·kh, out·kw)).
    per_layer: name -> {"to", "depth_multiplier", "rank"} overrides.
    skip_unprofitable: leave convs whose conversion would not reduce weights and MACs.
    """

    to: str = "separable"
    layers: LayerFilter = None
    exclude: tuple[str, ...] = ()
    depth_multiplier: int = 1
    rank: int | None = None
    per_layer: Mapping[str, Mapping[str, Any]] | None = None
    skip_unprofitable: bool = True

    def __post_init__(self) -> None:
        if self.to not in KINDS:
            raise ConfigError(f"Conversion: to must be one of {KINDS}, got {self.to!r}")
        layers, exclude = check_filter(self.layers, self.exclude, "Conversion")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "exclude", exclude)
        _positive(self.depth_multiplier, "depth_multiplier", "Conversion")
        _positive(self.rank, "rank", "Conversion", optional=True)
        if self.per_layer is not None:
            checked = {}
            for name, where, opts in per_layer_items(self.per_layer, _PER_LAYER_KEYS, "Conversion"):
                if opts.get("to", self.to) not in KINDS:
                    raise ConfigError(f"{where}: to must be one of {KINDS}, got {opts['to']!r}")
                _positive(opts.get("depth_multiplier", 1), "depth_multiplier", where)
                _positive(opts.get("rank"), "rank", where, optional=True)
                checked[name] = opts
            object.__setattr__(self, "per_layer", checked)
        if not isinstance(self.skip_unprofitable, bool):
            raise ConfigError(
                f"Conversion: skip_unprofitable must be True or False, got "
                f"{self.skip_unprofitable!r}"
            )


def _what(conv: nn.Conv2d, name: str) -> str:
    kh, kw = conv.kernel_size
    return f"conv {name!r} ({conv.in_channels}→{conv.out_channels}, kernel {kh}×{kw})"


def _standard(conv: nn.Module, kind: str) -> str | None:
    """Why `conv` is not a standard conv this kind converts, or None."""
    if not isinstance(conv, nn.Conv2d):
        return f"a {type(conv).__name__}, not a Conv2d"
    if conv.groups != 1:
        return f"a grouped conv (groups={conv.groups})"
    kh, kw = conv.kernel_size
    if kind == "separable" and kh * kw == 1:
        return "a 1×1 conv (already pointwise)"
    if kind == "asymmetric" and min(kh, kw) == 1:
        return f"a {kh}×{kw} conv (already one-dimensional)"
    return None


def _check_conv(conv: Any, kind: str, name: str) -> None:
    reason = _standard(conv, kind)
    if reason is not None:
        raise ConfigError(f"cannot convert {name or 'this layer'} to {kind}: it is {reason}")


def _check_limit(kind: str, conv: nn.Conv2d, rank: int, name: str) -> None:
    n, c, kh, kw = conv.weight.shape
    if kind == "separable" and rank > min(n, kh * kw):
        raise ConfigError(
            f"depth_multiplier {rank} exceeds min(out, kh·kw) = {min(n, kh * kw)} of "
            f"{_what(conv, name)}"
        )
    if kind == "asymmetric" and rank > min(c * kh, n * kw):
        raise ConfigError(
            f"rank {rank} exceeds min(in·kh, out·kw) = {min(c * kh, n * kw)} of {_what(conv, name)}"
        )


def separable_layer(conv: nn.Conv2d, depth_multiplier: int = 1, *, name: str = "") -> nn.Sequential:
    """`depthwise` kh×kw (C → C·m) → `pointwise` 1×1 (C·m → N), fitted by the best rank-m
    approximation of every input channel's N × kh·kw slice (module docstring)."""
    _check_conv(conv, "separable", name)
    m = _positive(depth_multiplier, "depth_multiplier", "separable_layer")
    _check_limit("separable", conv, m, name)
    n, c, kh, kw = conv.weight.shape
    w = conv.weight.detach().double().cpu()
    u, s, vh = torch.linalg.svd(w.transpose(0, 1).reshape(c, n, kh * kw), full_matrices=False)
    root = s[:, :m].sqrt()  # (C, m): split each singular value evenly between the two layers
    filters = (root[:, :, None] * vh[:, :m]).reshape(c * m, 1, kh, kw)
    mixing = (u[:, :, :m] * root[:, None, :]).transpose(0, 1).reshape(n, c * m, 1, 1)
    args = {k: getattr(conv, k) for k in ("stride", "padding", "dilation", "padding_mode")}
    return block(
        "separable",
        m,
        [
            ("depthwise", new_conv(conv, filters, None, groups=c, **args)),
            ("pointwise", new_conv(conv, mixing, conv.bias)),
        ],
    )


def asymmetric_layer(conv: nn.Conv2d, rank: int | None = None, *, name: str = "") -> nn.Sequential:
    """`vertical` kh×1 (C → M) → `horizontal` 1×kw (M → N), fitted by the truncated SVD of the
    kernel as a (C·kh) × (N·kw) matrix; M = `rank`, default min(C, N)."""
    _check_conv(conv, "asymmetric", name)
    n, c, kh, kw = conv.weight.shape
    r = min(c, n) if rank is None else _positive(rank, "rank", "asymmetric_layer")
    _check_limit("asymmetric", conv, r, name)
    w = conv.weight.detach().double().cpu()
    u, s, vh = torch.linalg.svd(w.permute(1, 2, 0, 3).reshape(c * kh, n * kw), False)
    root = s[:r].sqrt()
    vertical = (u[:, :r] * root).T.reshape(r, c, kh, 1)
    horizontal = (root[:, None] * vh[:r]).reshape(r, n, kw).transpose(0, 1)[:, :, None, :]
    return block(
        "asymmetric",
        r,
        [
            ("vertical", new_conv(conv, vertical, None, **axis_conv_args(conv, 0))),
            ("horizontal", new_conv(conv, horizontal, conv.bias, **axis_conv_args(conv, 1))),
        ],
    )


def _costs(kind: str, conv: nn.Conv2d, rank: int) -> tuple[int, int]:
    """(weights, MACs per output pixel) after conversion, bias excluded."""
    n, c, kh, kw = conv.weight.shape
    if kind == "separable":
        return c * rank * (kh * kw + n), c * rank * (kh * kw + n)
    return rank * (c * kh + n * kw), rank * (c * kh * conv.stride[1] + n * kw)


def _plan(model: nn.Module, config: Conversion, build: bool) -> list[tuple[LayerPlan, Any]]:
    if not isinstance(config, Conversion):
        raise ConfigError(f"config must be a Conversion, got {type(config).__name__}")
    per_layer = dict(config.per_layer or {})
    modules = dict(model.named_modules())
    for n in per_layer:
        if n not in modules:
            raise ConfigError(
                f"Conversion per_layer names {n!r}, which {type(model).__name__} lacks"
            )
    ok, why = eligible_layers(model, (nn.Conv2d,))
    for n, conv in list(ok.items()):
        reason = _standard(conv, per_layer.get(n, {}).get("to", config.to))
        if reason is not None:
            why[n] = f"it is {reason}"
            del ok[n]
    out = []
    for name in select_layers(model, ok, why, config.layers, config.exclude, "Conversion"):
        conv = ok[name]
        opts = per_layer.get(name, {})
        kind = opts.get("to", config.to)
        n, c, kh, kw = conv.weight.shape
        if kind == "separable":
            rank = opts.get("depth_multiplier", config.depth_multiplier)
        else:
            rank = opts.get("rank", config.rank) or min(c, n)
        _check_limit(kind, conv, rank, name)
        weights, macs = _costs(kind, conv, rank)
        before = n * c * kh * kw
        bias = conv.bias.numel() if conv.bias is not None else 0
        skipped = None
        if config.skip_unprofitable and (weights >= before or macs >= before):
            skipped = (
                f"{kind} at rank {rank} would need {weights} weights and {macs} MACs per output "
                f"pixel, against {before}"
            )
        plan = LayerPlan(name, kind, rank, before + bias, weights + bias, before, macs, skipped)
        made = None
        if build and skipped is None:
            make = separable_layer if kind == "separable" else asymmetric_layer
            made = make(conv, rank, name=name)
        out.append((plan, made))
    return out


def plan_conversion(model: nn.Module, config: Conversion) -> list[LayerPlan]:
    """What `convert` would do to each selected conv (method = the kind, rank = m or M)."""
    return [plan for plan, _ in _plan(model, config, build=False)]


def convert(model: nn.Module, config: Conversion) -> nn.Module:
    """A converted copy of `model` (the model itself is not modified); distill it from `model`
    afterwards: `distill(converted, model, train, TrainConfig(...), alpha=0.9)`."""
    return convert_(copy.deepcopy(model), config)


def convert_(model: nn.Module, config: Conversion) -> nn.Module:
    """Convert `model` in place: each chosen conv becomes a block under its own name."""
    plans = _plan(model, config, build=True)
    return apply_plans(model, plans, "convert", "use a smaller depth_multiplier or rank")
