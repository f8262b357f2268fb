"""Checks shared by the configs that pick layers by name (MagnitudePruning, KBitConfig,
WeightSharing): the exclude list, per-layer overrides that must not also be excluded, the layer
types they apply to, and names a model does not have (answered with the closest valid one)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from slimkit.errors import ConfigError


def check_selection(
    owner: str,
    exclude: Any,
    overrides: Mapping[str, Any],
    field: str,
    include_types: Any = None,
) -> None:
    """`exclude` is a tuple of names, none of them also in the `field` overrides, and
    `include_types` (when given) a non-empty tuple of nn.Module classes."""
    if isinstance(exclude, str) or not all(isinstance(n, str) for n in exclude):
        raise ConfigError(f"{owner}: exclude must be a tuple of module names, got {exclude!r}")
    both = sorted(set(overrides) & set(exclude))
    if both:
        raise ConfigError(
            f"{owner}: layer {both[0]!r} is both excluded and given {field}; pick one"
        )
    if include_types is not None and not (
        isinstance(include_types, tuple)
        and include_types
        and all(isinstance(t, type) and issubclass(t, nn.Module) for t in include_types)
    ):
        raise ConfigError(
            f"{owner}: include_types must be a non-empty tuple of nn.Module classes, got "
            f"{include_types!r}"
        )


def check_names(
    owner: str, model: nn.Module, valid: Iterable[str], names: Iterable[str], field: str, kind: str
) -> None:
    """Every one of `names` (from the config's `field`) is among `valid`, the model's `kind`
    layers; otherwise one line naming the first stranger and the closest valid name."""
    valid = list(valid)
    unknown = [n for n in names if n not in valid]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(valid[:6]) + (f", … ({len(valid)} in all)" if len(valid) > 6 else "")
    raise ConfigError(
        f"{owner}: {field} names {unknown[0]!r}, not a {kind} layer of {type(model).__name__}; "
        f"{hint}valid names: {shown or 'none'}"
    )
