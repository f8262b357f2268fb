"""Unstructured (weight-level) magnitude pruning, with masks that hold through retraining.

- Han, Pool, Tran, Dally, "Learning both Weights and Connections for Efficient Neural Networks",
  NeurIPS 2015: zero the smallest-magnitude weights (to a target sparsity, or below
  `std_factor` × the layer's weight std), retrain the survivors, and repeat.
- Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
  compression", 2017: raise the sparsity along a cubic schedule during one training run.

A pruned layer keeps its mask as a non-persistent bool buffer `weight_mask` (True = kept) and a
gradient hook multiplies the weight's gradient by it, so pruned weights receive no updates;
`reapply_masks` after each optimizer step zeroes what momentum from before the pruning would
still move. The weight itself stays the only copy (no `weight_orig`), so saving, measuring and
exporting a pruned model need nothing special, and `make_permanent` only drops hooks and buffers.
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, NoReturn

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError
from slimkit.layer_names import check_names, check_selection
from slimkit.measure.accuracy import evaluate
from slimkit.measure.params import count_params
from slimkit.train import ExtraLoss, TrainConfig, fit

__all__ = [
    "DEFAULT_TYPES",
    "MagnitudePruning",
    "apply_masks",
    "compute_masks",
    "cubic_sparsity",
    "current_masks",
    "gradual_prune",
    "iterative_prune",
    "make_permanent",
    "mask_sparsity",
    "prunable_layers",
    "prune_magnitude",
    "reapply_masks",
]

MASK = "weight_mask"
DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, nn.Conv1d)
_SCOPES = ("layer", "global")

# module -> (its weight when hooked, hook handle). Kept off the module so that deepcopy and
# state dicts never see it; a copied model re-hooks itself on the next `reapply_masks`.
_HOOKS: weakref.WeakKeyDictionary[nn.Module, tuple[weakref.ref, RemovableHandle]] = (
    weakref.WeakKeyDictionary()
)


def _is_fraction(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1


@dataclass(frozen=True)
class MagnitudePruning:
    """What to prune and how much (Han et al. 2015).

    sparsity: target fraction of zero weights in [0, 1) — per layer (scope="layer") or over all
    selected weights with one |w| threshold (scope="global"). std_factor: Han et al.'s rule
    instead, pruning |w| < std_factor × std of the surviving weights (of each layer, or pooled
    when global). Exactly one of the two is set. layer_sparsity: per-layer targets by module
    name, overriding both. exclude: module names left dense. Only the `.weight` of
    `include_types` modules is pruned; biases and norms stay dense.
    """

    sparsity: float | None = None
    scope: str = "layer"
    std_factor: float | None = None
    layer_sparsity: Mapping[str, float] | None = None
    exclude: tuple[str, ...] = ()
    include_types: tuple[type[nn.Module], ...] = DEFAULT_TYPES

    def __post_init__(self) -> None:
        if (self.sparsity is None) == (self.std_factor is None):
            _fail(
                "set exactly one of sparsity (a target fraction) and std_factor (Han et al.'s "
                f"threshold rule), got sparsity={self.sparsity}, std_factor={self.std_factor}"
            )
        if self.sparsity is not None and not _is_fraction(self.sparsity):
            _fail(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.std_factor is not None and not (
            isinstance(self.std_factor, numbers.Real)
            and not isinstance(self.std_factor, bool)
            and math.isfinite(self.std_factor)
            and self.std_factor >= 0
        ):
            _fail(f"std_factor must be a finite number >= 0, got {self.std_factor!r}")
        if self.scope not in _SCOPES:
            _fail(f"scope must be one of {_SCOPES}, got {self.scope!r}")
        overrides = dict(self.layer_sparsity or {})
        for name, value in overrides.items():
            if not _is_fraction(value):
                _fail(f"layer_sparsity[{name!r}] must be in [0, 1), got {value!r}")
        check_selection("MagnitudePruning", self.exclude, overrides, "layer_sparsity",
                        self.include_types)  # fmt: skip
        # Own copies: a caller mutating its dict or list later cannot change a frozen config.
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "layer_sparsity", MappingProxyType(overrides) or None)


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"MagnitudePruning: {message}")


# --- choosing layers ---------------------------------------------------------------------------


def prunable_layers(
    model: nn.Module, include_types: tuple[type[nn.Module], ...] = DEFAULT_TYPES
) -> dict[str, nn.Module]:
    """Modules of `include_types` with a `weight` parameter, by name; a tied weight counts once."""
    found: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        prunable = isinstance(module, include_types) and isinstance(weight, nn.Parameter)
        if prunable and id(weight) not in seen:
            seen.add(id(weight))
            found[name] = module
    return found


def _selected(model: nn.Module, config: MagnitudePruning) -> dict[str, nn.Module]:
    layers = prunable_layers(model, config.include_types)
    check_names("MagnitudePruning", model, layers, config.exclude, "exclude", "prunable")
    check_names(
        "MagnitudePruning", model, layers, config.layer_sparsity or {}, "layer_sparsity", "prunable"
    )
    return {name: m for name, m in layers.items() if name not in config.exclude}


# --- computing masks ---------------------------------------------------------------------------


def _survivors(module: nn.Module) -> Tensor:
    """Flat bool: True where the weight is not pruned yet (all True before the first pruning)."""
    prior = getattr(module, MASK, None)
    if isinstance(prior, Tensor):
        return prior.flatten().to(module.weight.device)
    return torch.ones(module.weight.numel(), dtype=torch.bool, device=module.weight.device)


def _group_masks(
    modules: list[nn.Module], sparsity: float | None, std_factor: float | None
) -> list[Tensor]:
    """Keep-masks for weights that share one threshold (one layer, or all of them when global)."""
    weights = torch.cat([m.weight.detach().flatten().float() for m in modules])
    alive = torch.cat([_survivors(m) for m in modules])
    # Already-pruned weights score -1: they rank first and stay pruned whatever they drifted to.
    scores = weights.abs().masked_fill(~alive, -1.0)
    if std_factor is not None and int(alive.sum()) < 2:
        keep = alive  # no std to speak of: leave the group as it is
    elif std_factor is not None:
        keep = scores >= std_factor * weights[alive].std()  # std of the signed weights, as Han
    else:
        # Exactly round(sparsity × n) zeros (ties broken by position), never fewer than before.
        count = max(round(sparsity * scores.numel()), int((~alive).sum()))
        keep = torch.ones_like(scores, dtype=torch.bool)
        keep[torch.argsort(scores, stable=True)[:count]] = False
    sizes = [m.weight.numel() for m in modules]
    return [k.view_as(m.weight) for k, m in zip(keep.split(sizes), modules, strict=True)]


def compute_masks(model: nn.Module, config: MagnitudePruning) -> dict[str, Tensor]:
    """Keep-masks (bool, True = kept) for the selected layers, without changing the model.

    On an already-masked model, ranking is among the survivors: earlier zeros stay zero.
    """
    layers = _selected(model, config)
    overrides = config.layer_sparsity or {}
    masks: dict[str, Tensor] = {}
    for name, sparsity in overrides.items():
        (masks[name],) = _group_masks([layers[name]], sparsity, None)
    rest = {name: m for name, m in layers.items() if name not in overrides}
    groups = [list(rest)] if config.scope == "global" and rest else [[n] for n in rest]
    for names in groups:
        group = _group_masks([rest[n] for n in names], config.sparsity, config.std_factor)
        masks.update(zip(names, group, strict=True))
    return {name: masks[name] for name in layers}  # in model order


def mask_sparsity(masks: Mapping[str, Tensor]) -> float:
    """Fraction of pruned entries over all the masks."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


# --- attaching masks ---------------------------------------------------------------------------


def _mask_gradient(module: nn.Module) -> Callable[[Tensor], Tensor]:
    owner = weakref.ref(module)  # a strong reference would tie module → weight → hook → module

    def hook(grad: Tensor) -> Tensor:
        mask = getattr(owner(), MASK, None)
        return grad if mask is None else grad * mask

    return hook


def _ensure_hook(module: nn.Module) -> None:
    entry = _HOOKS.get(module)
    if entry is not None and entry[0]() is module.weight:
        return
    if entry is not None:  # the weight was replaced since: drop the hook on the old one
        entry[1].remove()
    handle = module.weight.register_hook(_mask_gradient(module))
    _HOOKS[module] = (weakref.ref(module.weight), handle)


def _zero_pruned(module: nn.Module) -> None:
    with torch.no_grad():
        # masked_fill, not multiply: -w × 0 would leave -0.0, which is not bit-identical to 0.
        module.weight.masked_fill_(~getattr(module, MASK), 0.0)


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Attach keep-masks by module name: zero the pruned weights and hold them at zero."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        weight = getattr(modules.get(name), "weight", None)
        if not isinstance(weight, nn.Parameter):
            check_names(
                "MagnitudePruning", model, prunable_layers(model), [name], "a mask", "prunable"
            )
            _fail(f"module {name!r} has no weight parameter to mask")
        if tuple(mask.shape) != tuple(weight.shape):
            _fail(
                f"mask for {name!r} has shape {tuple(mask.shape)}, the weight {tuple(weight.shape)}"
            )
        module = modules[name]
        mask = mask.detach().to(device=weight.device, dtype=torch.bool).clone()
        module.register_buffer(MASK, mask, persistent=False)
        _ensure_hook(module)
        _zero_pruned(module)


def prune_magnitude(model: nn.Module, config: MagnitudePruning) -> dict[str, Tensor]:
    """Prune `model` in place by weight magnitude (Han et al. 2015); returns the keep-masks.

    Pruned weights are zeroed and masked so that retraining keeps them at zero; pass
    `after_step=reapply_masks` to `fit`. Pruning a masked model again to a higher sparsity keeps
    every earlier zero and ranks only the surviving weights.
    """
    masks = compute_masks(model, config)
    apply_masks(model, masks)
    return masks


def reapply_masks(model: nn.Module) -> None:
    """Zero every masked weight again: use as `fit(..., after_step=reapply_masks)`.

    The gradient hook already blocks gradients, but optimizer state gathered before a weight was
    pruned (momentum, Adam moments) would still move it. Also re-hooks copied models.
    """
    for module in model.modules():
        if isinstance(getattr(module, MASK, None), Tensor):
            _ensure_hook(module)
            _zero_pruned(module)


def current_masks(model: nn.Module) -> dict[str, Tensor]:
    """Copies of the keep-masks attached to `model`, by module name."""
    return {
        name: mask.clone()
        for name, module in model.named_modules()
        if isinstance(mask := getattr(module, MASK, None), Tensor)
    }


def make_permanent(model: nn.Module) -> nn.Module:
    """Drop masks and hooks; the pruned weights stay zero in the one weight tensor."""
    for module in model.modules():
        if isinstance(getattr(module, MASK, None), Tensor):
            _zero_pruned(module)
            delattr(module, MASK)
        entry = _HOOKS.pop(module, None)
        if entry is not None:
            entry[1].remove()
    return model


# --- schedules ---------------------------------------------------------------------------------


def _is_count(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def cubic_sparsity(
    step: int, total_steps: int, final: float, initial: float = 0.0, begin: int = 0
) -> float:
    """Sparsity at `step` on Zhu & Gupta's (2017) cubic schedule.

    s_t = s_f + (s_i − s_f)(1 − (t − begin)/n)^3 for n = total_steps: `initial` until `begin`,
    fast early (many redundant weights) and flat near `final`, which holds after begin + n.
    """
    if not _is_count(total_steps, 1):
        raise ConfigError(f"cubic_sparsity: total_steps must be an int >= 1, got {total_steps!r}")
    if not _is_count(begin, 0):
        raise ConfigError(f"cubic_sparsity: begin must be an int >= 0, got {begin!r}")
    if not _is_fraction(final):
        raise ConfigError(f"cubic_sparsity: final must be in [0, 1), got {final!r}")
    if not (_is_fraction(initial) and initial <= final):
        raise ConfigError(f"cubic_sparsity: initial must be in [0, final={final}], got {initial!r}")
    progress = min(max(step - begin, 0) / total_steps, 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def _at_level(config: MagnitudePruning, level: float, final: float) -> MagnitudePruning:
    """`config` at target `level`, per-layer overrides scaled alike so all finish together."""
    ratio = level / final if final > 0 else 0.0
    overrides = {n: s * ratio for n, s in (config.layer_sparsity or {}).items()}
    return replace(config, sparsity=level, std_factor=None, layer_sparsity=overrides or None)


def _round_configs(config: MagnitudePruning, steps: list[float] | int) -> list[MagnitudePruning]:
    """One config per prune → retrain round (see `iterative_prune`)."""
    if isinstance(steps, int) and not isinstance(steps, bool):
        if steps < 1:
            raise ConfigError(f"iterative_prune: steps must be >= 1, got {steps}")
        if config.sparsity is None:  # Han et al.: the same std rule, each round on the survivors
            return [config] * steps
        levels = [cubic_sparsity(i, steps, config.sparsity) for i in range(1, steps + 1)]
        return [_at_level(config, level, config.sparsity) for level in levels]
    levels = list(steps)
    if not levels or not all(_is_fraction(s) for s in levels):
        raise ConfigError(
            f"iterative_prune: steps must be an int or a non-empty list of sparsities in [0, 1), "
            f"got {steps!r}"
        )
    if any(b < a for a, b in itertools.pairwise(levels)):
        raise ConfigError(
            f"iterative_prune: steps must not decrease (pruned weights stay pruned), got {levels}"
        )
    return [_at_level(config, level, levels[-1]) for level in levels]


def _state(model: nn.Module, masks: Mapping[str, Tensor]) -> dict[str, Any]:
    return {"sparsity": mask_sparsity(masks), "nonzero_params": count_params(model).nonzero}


def iterative_prune(
    model: nn.Module,
    train: ArrayDataset,
    config: MagnitudePruning,
    *,
    steps: list[float] | int,
    finetune: TrainConfig,
    val: ArrayDataset | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Han et al.'s (2015) iterative pruning: prune, retrain with `fit`, repeat; in place.

    steps: the sparsity of each round (non-decreasing; per-layer overrides scale with them), or
    a number of rounds — on the cubic schedule up to `config.sparsity`, or with the std rule
    applied again to the survivors each round. One record per round: target, sparsity reached
    over the pruned layers, non-zero parameters, final train loss, val top-1 right after pruning
    and after retraining (with `val`), and time_s of pruning + retraining.
    """
    records = []
    for i, round_config in enumerate(_round_configs(config, steps), start=1):
        t0 = time.perf_counter()
        masks = prune_magnitude(model, round_config)
        elapsed = time.perf_counter() - t0
        record: dict[str, Any] = {"step": i, "target": round_config.sparsity}
        if val is not None:
            record["val_top1_pruned"] = evaluate(model, val).top1
        t0 = time.perf_counter()
        history = fit(model, train, finetune, after_step=reapply_masks, progress=progress)
        elapsed += time.perf_counter() - t0
        record.update(_state(model, masks), train_loss=history.epochs[-1].loss)
        if val is not None:
            record["val_top1"] = evaluate(model, val).top1
        record["time_s"] = elapsed
        records.append(record)
    return records


def gradual_prune(
    model: nn.Module,
    train: ArrayDataset,
    config: MagnitudePruning,
    *,
    epochs: int,
    finetune: TrainConfig,
    prune_every_steps: int,
    val: ArrayDataset | None = None,
    extra_loss: ExtraLoss | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Zhu & Gupta's (2017) gradual pruning during one `fit(model, train, finetune)` run.

    Every `prune_every_steps` optimizer steps of the first `epochs` epochs, the sparsity rises
    along `cubic_sparsity` from 0 to `config.sparsity` (reached at the end of epoch `epochs`);
    the remaining `finetune.epochs - epochs` epochs train at the final sparsity. One record per
    pruning (step, target, sparsity, time_s since the start), then one for the end of training
    (with val top-1 when `val` is given). `extra_loss` goes to `fit`, e.g. a
    `slimkit.distill.Distillation` from the dense model.
    """
    if config.sparsity is None:
        raise ConfigError(
            "gradual_prune: needs MagnitudePruning(sparsity=...); the cubic schedule ramps a "
            "target sparsity, not the std_factor rule"
        )
    if not (_is_count(epochs, 1) and epochs <= finetune.epochs):
        raise ConfigError(
            f"gradual_prune: epochs must be an int in [1, finetune.epochs={finetune.epochs}], "
            f"got {epochs!r}"
        )
    if not _is_count(prune_every_steps, 1):
        raise ConfigError(
            f"gradual_prune: prune_every_steps must be an int >= 1, got {prune_every_steps!r}"
        )
    ramp = epochs * math.ceil(len(train) / finetune.batch_size)
    records: list[dict[str, Any]] = []
    masks: dict[str, Tensor] = {}
    step = 0
    t0 = time.perf_counter()

    def after_step(m: nn.Module) -> None:
        nonlocal step, masks
        step += 1
        if step <= ramp and (step % prune_every_steps == 0 or step == ramp):
            level = cubic_sparsity(step, ramp, config.sparsity)
            masks = prune_magnitude(m, _at_level(config, level, config.sparsity))
            records.append({"step": step, "target": level, **_state(m, masks)})
            records[-1]["time_s"] = time.perf_counter() - t0
        else:
            reapply_masks(m)

    fit(model, train, finetune, extra_loss=extra_loss, after_step=after_step, progress=progress)
    end: dict[str, Any] = {"step": step, "target": config.sparsity, **_state(model, masks)}
    if val is not None:
        end["val_top1"] = evaluate(model, val).top1
    end["time_s"] = time.perf_counter() - t0
    records.append(end)
    return records
