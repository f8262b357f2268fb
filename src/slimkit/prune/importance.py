"""Channel importance criteria: callables `(group) -> 1-D tensor`, one score per unit, high = keep.

A unit is one channel of a `slimkit.graph.Group` together with every channel coupled to it, so a
score sums over all the layers that produce the group's channels (each conv of a residual stage,
say), not just one of them.

- `l1`, `l2`: the norm of each output filter — Li, Kadav, Durdanovic, Samet, Graf, "Pruning
  Filters for Efficient ConvNets", ICLR 2017.
- `taylor`: first-order Taylor estimate of the loss change, Σ|w · ∂L/∂w| over those filters —
  Molchanov, Mallya, Tyree, Frosio, Kautz, "Importance Estimation for Neural Network Pruning",
  CVPR 2019. Needs gradients: `accumulate_grads(model, batch)` runs one batch to fill them.
- `bn_scale`: |γ| of the norm layers on the channels — Liu, Li, Shen, Huang, Yan, Zhang,
  "Learning Efficient Convolutional Networks through Network Slimming", ICCV 2017. Train with
  `bn_sparsity(lam)` as `fit(extra_loss=...)` first so that γ becomes sparse. Groups without a
  norm layer fall back to `l1`.
- `fpgm`: distance of each filter to the geometric median of its layer's filters, approximated as
  in the paper by the sum of distances to all of them; the smallest is the most replaceable —
  He, Liu, Wang, Hu, Yang, "Filter Pruning via Geometric Median", CVPR 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from slimkit.errors import ConfigError
from slimkit.graph import Group, Member
from slimkit.measure.common import eval_mode, first_tensor

Importance = Callable[[Group], Tensor]
IMPORTANCE: dict[str, Importance] = {}


def register_importance(name: str) -> Callable[[Importance], Importance]:
    """Decorator adding a criterion to the registry under `name`."""

    def decorator(fn: Importance) -> Importance:
        if name in IMPORTANCE:
            raise ConfigError(f"importance {name!r} is already registered; pick another name")
        IMPORTANCE[name] = fn
        return fn

    return decorator


def get_importance(spec: str | Importance) -> Importance:
    """The criterion registered as `spec`, or `spec` itself when it is a callable."""
    if callable(spec):
        return spec
    if spec not in IMPORTANCE:
        raise ConfigError(
            f"unknown importance {spec!r}; choose one of {', '.join(sorted(IMPORTANCE))} "
            "or pass a callable (group) -> tensor"
        )
    return IMPORTANCE[spec]


def _filter_scores(group: Group, score: Callable[[Member, Tensor], Tensor]) -> Tensor:
    """Sum `score(member, filters)` over every layer producing the group's channels.

    `filters` is the layer's weight as (C_out, fan_in): one row per output channel. `score`
    returns one value per row; a unit adds the values of all its rows in all producers.
    """
    total = torch.zeros(group.size, dtype=torch.float64)
    for m in group.members:
        if m.role == "out":
            filters = m.module.weight.detach().flatten(1)  # (C_out, C_in/groups · k…)
            per_channel = score(m, filters).double().cpu()  # (C_out,)
            total.index_add_(0, m.units, per_channel[m.channels].sum(1))
    return total


@register_importance("l1")
def l1(group: Group) -> Tensor:
    return _filter_scores(group, lambda m, w: w.abs().sum(1))


@register_importance("l2")
def l2(group: Group) -> Tensor:
    return _filter_scores(group, lambda m, w: w.norm(dim=1))


@register_importance("taylor")
def taylor(group: Group) -> Tensor:
    def score(m: Member, w: Tensor) -> Tensor:
        grad = m.module.weight.grad
        if grad is None:
            raise ConfigError(
                f"taylor importance needs gradients but {m.name!r} has none: pass "
                "data_batch=(inputs, targets) to prune_channels, or call accumulate_grads first"
            )
        return (w * grad.flatten(1)).abs().sum(1)

    return _filter_scores(group, score)


@register_importance("bn_scale")
def bn_scale(group: Group) -> Tensor:
    total = torch.zeros(group.size, dtype=torch.float64)
    found = False
    for m in group.members:
        gamma = getattr(m.module, "weight", None) if m.role == "norm" else None
        if gamma is None:
            continue
        found = True
        gamma = gamma.detach().abs().movedim(m.axis, 0)  # (C, …) for LayerNorm over several dims
        per_channel = gamma.reshape(len(gamma), -1).sum(1).double().cpu()
        total.index_add_(0, m.units, per_channel[m.channels].sum(1))
    return total if found else l1(group)


@register_importance("fpgm")
def fpgm(group: Group) -> Tensor:
    # Σ_j ||F_i - F_j||: small for a filter near the layer's geometric median (replaceable).
    def score(m: Member, w: Tensor) -> Tensor:
        w = w.double()
        return torch.cdist(w[None], w[None])[0].sum(1)

    return _filter_scores(group, score)


def accumulate_grads(model: nn.Module, batch: Tensor | tuple[Tensor, Tensor]) -> None:
    """Fill every parameter's `.grad` with ∂loss/∂w of one batch (old gradients are dropped).

    `batch` is `(inputs, targets)` for a cross-entropy loss, or `inputs` alone, in which case the
    model's own predictions serve as targets. Runs in eval mode, so BatchNorm uses (and keeps) its
    running statistics: a filter's score then scales with its weights, as the criterion assumes.
    """
    inputs, targets = batch if isinstance(batch, (tuple, list)) else (batch, None)
    model.zero_grad(set_to_none=True)
    with eval_mode(model), torch.enable_grad():
        logits = first_tensor(model(inputs))
        if targets is None:
            targets = logits.detach().argmax(1)
        F.cross_entropy(logits, targets).backward()


def bn_sparsity_loss(model: nn.Module, lam: float) -> Tensor:
    """lam · Σ|γ| over every BatchNorm of `model`: the Network Slimming sparsity penalty."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.affine]
    gammas = [m.weight.abs().sum() for m in bns]
    if not gammas:
        raise ConfigError(f"{type(model).__name__} has no BatchNorm with a scale to make sparse")
    return lam * torch.stack(gammas).sum()


def bn_sparsity(lam: float) -> Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]:
    """`bn_sparsity_loss` shaped as `slimkit.train.fit(extra_loss=...)` wants it."""
    if not lam >= 0:
        raise ConfigError(f"bn sparsity lam must be >= 0, got {lam!r}")

    def extra_loss(model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> Tensor:
        return bn_sparsity_loss(model, lam)

    return extra_loss
