"""The model zoo: a registry of named model factories.

A model file registers its factories with `@register(...)`; users build models with
`create(name, **kwargs)`. Every model the zoo builds carries two plain attributes the measurement
code relies on: `input_shape` (C, H, W of one sample) and `num_classes`.

The built-in model modules are imported lazily, on the first lookup, so importing this module
alone is enough to see every model. A new model file only needs adding to `_BUILTIN_MODULES`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from slimkit.errors import ConfigError, UnknownModelError

__all__ = [
    "DATASETS",
    "ModelInfo",
    "check_choice",
    "check_positive_float",
    "check_positive_int",
    "create",
    "list_models",
    "model_info",
    "register",
]

DATASETS = ("mnist", "cifar10", "imagenet")

# Modules under slimkit.nn that register models when imported.
_BUILTIN_MODULES = (
    "lenet",
    "resnet_cifar",
    "vgg",
    "mobilenet",
    "transformer",
    "mobilenet_v2",
    "shufflenet",
    "squeezenet",
    "xception",
    "densenet",
    "efficientnet",
    "mlp",
)

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about one registered model."""

    name: str
    factory: Callable[..., nn.Module]
    dataset: str  # "mnist", "cifar10" or "imagenet": the data it is meant for
    paper: str  # citation, e.g. "LeCun et al. 1998"
    description: str


_REGISTRY: dict[str, ModelInfo] = {}
_loaded = False


def register(name: str, *, dataset: str, paper: str, description: str) -> Callable[[F], F]:
    """Decorator that adds a factory to the zoo under `name`; a duplicate name is a ConfigError."""
    if dataset not in DATASETS:
        raise ConfigError(
            f"model {name!r}: dataset must be one of {', '.join(DATASETS)}, got {dataset!r}"
        )

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ConfigError(f"model name {name!r} is already registered; pick another name")
        _REGISTRY[name] = ModelInfo(name, factory, dataset, paper, description)
        return factory

    return decorator


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"slimkit.nn.{module}")
    _loaded = True


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The `ModelInfo` of `name`; an unknown name is an UnknownModelError listing the known ones."""
    _ensure_loaded()
    info = _REGISTRY.get(name)
    if info is None:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}; available: {', '.join(sorted(_REGISTRY))}"
        )
    return info


def _accepted_kwargs(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword names the factory accepts, or None when it takes **kwargs (anything goes)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model `name` with the factory's keyword options `kwargs`.

    Raises UnknownModelError for an unknown name and ConfigError for an unknown or invalid option.
    """
    info = model_info(name)
    accepted = _accepted_kwargs(info.factory)
    if accepted is not None:
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            raise ConfigError(
                f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(accepted) or '(none)'}"
            )
    model = info.factory(**kwargs)
    # A factory that forgets these is a bug in slimkit, not a user error.
    for attr in ("input_shape", "num_classes"):
        if not hasattr(model, attr):
            raise TypeError(f"zoo factory for {name!r} built a model without `{attr}`")
    return model


# --- argument checks shared by the model files (user input: ConfigError, never assert) ---


def check_positive_int(name: str, value: Any) -> int:
    """`value` as an int ≥ 1, or a one-line ConfigError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be an integer ≥ 1, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """`value` as a finite float > 0, or a one-line ConfigError naming `name`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 < float(value) < float("inf")
    ):
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`, or a one-line ConfigError listing them."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
