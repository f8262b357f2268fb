"""Architecture descriptions: rebuild a (possibly pruned) model without unpickling code.

Every slimkit artifact (pruned, k-bit, int8) stores two JSON values beside its tensors: `arch`,
how to build the original model — {"zoo": name, "kwargs": {...}} or {"kwargs": {...}} for a
user's factory — and `layers`, the shape of every conv/linear/norm layer. `rebuild` constructs
the original and resizes the described layers, so a model whose channels were removed loads
back into standard, smaller torch layers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.errors import ConfigError, WeightsError
from slimkit.graph import CHANNEL_NORM, CONV, LAYERS


def replace_tensor(module: nn.Module, name: str, value: Tensor | None) -> None:
    """Swap `module.<name>` for `value`, keeping Parameter-ness and requires_grad."""
    old = getattr(module, name, None)
    if value is None or old is None:
        return
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.detach().clone(), old.requires_grad))
    else:
        setattr(module, name, value.detach().clone())


def layer_type(m: nn.Module) -> str:
    """The torch class name of a layer; torch.nn.utils.parametrize's injected subclass
    (Conv2d → ParametrizedConv2d) reports its base, so quantized layers describe as plain ones."""
    cls = type(m).__bases__[0] if parametrize.is_parametrized(m) else type(m)
    return cls.__name__


def check_arch(arch: Any) -> dict[str, Any]:
    """`arch` must be a JSON dict; returned unchanged."""
    if not isinstance(arch, dict):
        raise ConfigError(f"arch must be a dict such as {{'zoo': 'resnet20'}}, got {arch!r}")
    try:
        json.dumps(arch)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"arch must hold only JSON values (str, number, list, dict): {e}"
        ) from None
    return arch


def describe(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The shape fields of every conv/linear/norm layer, by module name (JSON-ready)."""
    return {name: _describe(m) for name, m in model.named_modules() if isinstance(m, LAYERS)}


def changed_layers(layers: dict[str, Any], arch: dict[str, Any]) -> dict[str, Any]:
    """The entries of `layers` that differ from the architecture `arch` builds fresh (all of them
    when it cannot be built here, e.g. a user's factory): what a file must store to rebuild."""
    if "zoo" not in arch:
        return layers
    from slimkit.nn import create

    try:
        fresh = describe(create(arch["zoo"], **arch.get("kwargs", {})))
    except (ConfigError, TypeError):
        return layers
    return {name: d for name, d in layers.items() if fresh.get(name) != d}


def read_description(
    path: Path,
    meta: dict[str, str],
    *,
    key: str,
    fmt: str,
    what: str,
    saver: str,
    dicts: tuple[str, ...] = ("arch", "layers"),
) -> dict[str, Any]:
    """The JSON description an artifact keeps under `key` in its safetensors header, checked:
    present, valid JSON, format `fmt`, and a dict for each of `dicts`. `what` names the kind
    of model ("pruned-model"), `saver` the function that writes it, for the messages."""
    if key not in meta:
        raise WeightsError(
            f"'{path.name}' has no {what} description: save it with {saver}, or load plain "
            "weights with slimkit.weights.load_weights"
        )
    try:
        desc = json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise WeightsError(f"'{path.name}' has a corrupt {what} description ({e})") from None
    if not isinstance(desc, dict) or desc.get("format") != fmt:
        found = desc.get("format") if isinstance(desc, dict) else None
        raise WeightsError(
            f"'{path.name}' holds format {found!r}, not {fmt}: its {what} description was "
            "written by another slimkit version, or is damaged"
        )
    for name in dicts:
        if not isinstance(desc.get(name), dict):
            raise WeightsError(f"'{path.name}': the {what} description lacks its {name!r} dict")
    return desc


def rebuild(
    arch: dict[str, Any],
    layers: dict[str, Any],
    factory: Callable[..., nn.Module] | None = None,
    *,
    where: str = "the description",
) -> nn.Module:
    """Build the model `arch` names (zoo, or `factory(**arch["kwargs"])`) with the described
    layer shapes; its tensors are uninitialized placeholders for the caller to load."""
    kwargs = arch.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise WeightsError(f"{where}: arch kwargs must be a dict, got {kwargs!r}")
    if factory is not None:
        model = factory(**kwargs)
    elif "zoo" in arch:
        from slimkit.nn import create

        model = create(arch["zoo"], **kwargs)
    else:
        raise ConfigError(f"{where} has no zoo model name in its arch: pass factory=")
    modules = dict(model.named_modules())
    for name, layer in layers.items():
        m = modules.get(name)
        if m is None or not isinstance(layer, dict):
            raise WeightsError(
                f"{where} describes layer {name!r} that {type(model).__name__} does not "
                "have: the description is for another architecture"
            )
        if layer.get("type") != layer_type(m) or not isinstance(m, LAYERS):
            raise WeightsError(
                f"{where} describes {name!r} as {layer.get('type')!r} but "
                f"{type(model).__name__} has a {type(m).__name__} there"
            )
        _resize(m, layer, f"{where}, layer {name!r}")
    return model


_FIELDS: list[tuple[Any, tuple[str, ...]]] = [
    (CONV, ("in_channels", "out_channels", "groups")),
    (nn.Linear, ("in_features", "out_features")),
    (CHANNEL_NORM, ("num_features",)),
    (nn.GroupNorm, ("num_groups", "num_channels")),
    (nn.LayerNorm, ("normalized_shape",)),
]


def _fields(m: nn.Module) -> tuple[str, ...]:
    return next(f for types, f in _FIELDS if isinstance(m, types))


def _describe(m: nn.Module) -> dict[str, Any]:
    desc: dict[str, Any] = {"type": layer_type(m)}
    for f in _fields(m):
        value = getattr(m, f)
        desc[f] = list(value) if isinstance(value, tuple) else value
    return desc


def _resize(m: nn.Module, layer: dict[str, Any], where: str) -> None:
    """Give `m` the described shape (empty weights of the new shape; loading fills them)."""
    fields = _fields(m)
    values = {}
    for f in fields:
        v = layer.get(f)
        ok = (
            isinstance(v, list) and all(isinstance(x, int) and x > 0 for x in v)
            if (f == "normalized_shape")
            else isinstance(v, int) and not isinstance(v, bool) and v > 0
        )
        if not ok:
            raise WeightsError(f"{where}: {f} must be positive integers, got {v!r}")
        values[f] = tuple(v) if isinstance(v, list) else v
    if all(values[f] == getattr(m, f) for f in fields):
        return
    shapes: dict[str, tuple[int, ...]] = {}
    if isinstance(m, CONV):
        cin, cout, groups = values["in_channels"], values["out_channels"], values["groups"]
        if cin % groups or cout % groups:
            raise WeightsError(f"{where}: channels {cin}, {cout} do not split into {groups} groups")
        shapes = {"weight": (cout, cin // groups, *m.kernel_size), "bias": (cout,)}
    elif isinstance(m, nn.Linear):
        shapes = {"weight": (values["out_features"], values["in_features"]),
                  "bias": (values["out_features"],)}  # fmt: skip
    elif isinstance(m, nn.GroupNorm):
        if values["num_channels"] % values["num_groups"]:
            raise WeightsError(f"{where}: channels do not split into {values['num_groups']} groups")
        shapes = dict.fromkeys(("weight", "bias"), (values["num_channels"],))
    elif isinstance(m, nn.LayerNorm):
        if len(values["normalized_shape"]) != len(m.normalized_shape):
            raise WeightsError(f"{where}: normalized_shape has the wrong number of dims")
        shapes = dict.fromkeys(("weight", "bias"), values["normalized_shape"])
    else:
        names = ("weight", "bias", "running_mean", "running_var")
        shapes = dict.fromkeys(names, (values["num_features"],))
    for name, shape in shapes.items():
        old = getattr(m, name, None)
        if old is not None:
            replace_tensor(m, name, torch.zeros(shape, dtype=old.dtype, device=old.device))
    for f, v in values.items():
        setattr(m, f, v)
