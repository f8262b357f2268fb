"""Channel labels: the ids and label-tensor helpers that the propagator and the op rules share.

Every position of every activation holds the id of the channel it belongs to (NONE = -1: no
channel; FIXED = 0: must not change). `Call` is one traced op seen from the label side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

FIXED = 0  # id of "must not change": input, output, boundaries
NONE = -1  # label of a position that belongs to no channel (constants, padding)


def varies(lab: Tensor, dim: int) -> bool:
    return lab.size(dim) > 1 and bool((lab != lab.narrow(dim, 0, 1)).any())


def channel_ids(lab: Tensor, dim: int) -> Tensor | None:
    """One id per index along `dim` when ids do not vary along the other dims (NONE ignored)."""
    rows = lab.movedim(dim, 0).reshape(lab.size(dim), -1)
    has = rows >= 0
    hi = rows.amax(1)
    lo = torch.where(has, rows, torch.iinfo(rows.dtype).max).amin(1)
    return hi if bool(((lo == hi) | ~has.any(1)).all()) else None


def spread_ids(ids: Tensor, shape: torch.Size, dim: int) -> Tensor:
    view = [1] * len(shape)
    view[dim] = -1
    return ids.view(view).expand(shape).contiguous()


def tensors_of(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_of(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_of(v)]
    return []


def shaped_like(value: Any, fill: int) -> Any:
    """A label structure shaped like the real output `value`, every position `fill`."""
    if isinstance(value, Tensor):
        return torch.full(value.shape, fill, dtype=torch.long)
    if isinstance(value, (tuple, list)):
        return tuple(shaped_like(v, fill) for v in value)
    return value


def same_shapes(lab: Any, real: Any) -> bool:
    a, b = tensors_of(lab), tensors_of(real)
    return len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b, strict=True))


@dataclass
class Call:
    node: fx.Node
    args: tuple  # label side: label tensors for tensors, real values otherwise
    kwargs: dict
    out: Any  # real output for a batch of one
    module: nn.Module | None = None

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        return self.args[i] if len(self.args) > i else self.kwargs.get(name, default)

    def raw(self, i: int, name: str) -> Any:
        """The fx argument itself, to tell a literal int from a computed one."""
        return self.node.args[i] if len(self.node.args) > i else self.node.kwargs.get(name)


def target_name(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))
