"""Saving and loading factorized (or converted) models without pickle: each replacement block
is described as JSON (its method, rank and layer shapes) in the safetensors header beside the
weights, and `load_factorized` rebuilds the architecture, swaps the blocks back in and checks
the weights before loading them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.arch import check_arch, describe, read_description, rebuild
from slimkit.errors import ConfigError, WeightsError
from slimkit.lowrank.config import TAG, is_int
from slimkit.lowrank.decompose import block
from slimkit.weights import check_weights, read_safetensors, save_weights

METADATA_KEY = "slimkit.factorized"
FORMAT = "slimkit.factorized/1"


def factorized_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """name -> {"method", "rank"} of every replacement block (factorized or converted)."""
    return {name: dict(vars(m)[TAG]) for name, m in model.named_modules() if TAG in vars(m)}


_CONV_FIELDS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
)


def _layer_spec(name: str, m: nn.Module) -> dict[str, Any]:
    if type(m) is nn.Conv2d:
        spec = {f: list(v) if isinstance(v := getattr(m, f), tuple) else v for f in _CONV_FIELDS}
        return {"name": name, "type": "Conv2d", **spec, "bias": m.bias is not None}
    if type(m) is nn.Linear:
        return {
            "name": name,
            "type": "Linear",
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
        }
    raise ConfigError(
        f"block part {name!r} is a {type(m).__name__}: save_factorized stores Conv2d and Linear"
    )


def _spec(seq: nn.Module) -> dict[str, Any]:
    return {**vars(seq)[TAG], "layers": [_layer_spec(n, m) for n, m in seq.named_children()]}


def describe_blocks(model: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shapes of the layers outside replacement blocks, each block's JSON spec): with `arch`,
    what rebuilds the model — `rebuild(arch, layers)` then `insert_blocks(model, blocks)`."""
    replaced = factorized_layers(model)
    inside = tuple(f"{n}." for n in replaced)
    layers = {n: d for n, d in describe(model).items() if not n.startswith(inside)}
    return layers, {n: _spec(model.get_submodule(n)) for n in replaced}


def insert_blocks(model: nn.Module, blocks: dict[str, Any], where: str) -> None:
    """Swap the blocks `describe_blocks` wrote into a rebuilt model (weights uninitialized)."""
    for name in sorted(blocks, key=lambda n: n.count(".")):
        made = _build_block(blocks[name], f"{where}, block {name!r}")
        try:
            model.get_submodule(name)
        except AttributeError:
            raise WeightsError(
                f"{where} replaces layer {name!r} that {type(model).__name__} does not have: "
                "the file is for another architecture"
            ) from None
        model.set_submodule(name, made)


def save_factorized(model: nn.Module, path: str | os.PathLike, *, arch: dict[str, Any]) -> Path:
    """Write weights + a JSON description as one safetensors file (atomically); no pickle.

    `arch` says how to build the model before factorization: {"zoo": name, "kwargs": {...}}, or
    {"kwargs": {...}} for the `factory` given to `load_factorized`. The header holds the shapes
    of the other layers (so pruned models load too) and every replacement block's layers.
    """
    replaced = factorized_layers(model)
    if not replaced:
        raise ConfigError(
            f"{type(model).__name__} has no factorized or converted layers: factorize or convert "
            "it first, or save it with save_pruned / save_weights"
        )
    layers, blocks = describe_blocks(model)
    text = json.dumps(
        {"format": FORMAT, "arch": check_arch(arch), "layers": layers, "factorized": blocks},
        separators=(",", ":"),
    )
    return save_weights(model, path, metadata={METADATA_KEY: text})


def load_factorized(
    path: str | os.PathLike, factory: Callable[..., nn.Module] | None = None
) -> nn.Module:
    """Rebuild a model saved by `save_factorized`: the architecture from `arch` (the zoo, or
    `factory(**arch["kwargs"])`), its layers resized, the blocks swapped in, then the weights
    checked and loaded."""
    path = Path(path)
    tensors, meta = read_safetensors(path)
    desc = read_description(
        path,
        meta,
        key=METADATA_KEY,
        fmt=FORMAT,
        what="factorized-model",
        saver="save_factorized",
        dicts=("arch", "layers", "factorized"),
    )
    where = f"'{path.name}'"
    model = rebuild(desc["arch"], desc["layers"], factory, where=where)
    insert_blocks(model, desc["factorized"], where)
    check_weights(model, tensors, source=f"weights {where}")
    model.load_state_dict(tensors)
    return model


def _int(v: Any, low: int = 1) -> bool:
    return is_int(v) and v >= low


def _pair(v: Any, low: int = 1) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_int(x, low) for x in v)


def _build_layer(spec: Any, where: str) -> tuple[str, nn.Module]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise WeightsError(f"{where}: each layer must be a dict with a name, got {spec!r}")
    kind = spec.get("type")
    w = f"{where}, layer {spec['name']!r}"
    if not isinstance(spec.get("bias"), bool):
        raise WeightsError(f"{w}: bias must be true or false, got {spec.get('bias')!r}")
    if kind == "Linear":
        i, o = spec.get("in_features"), spec.get("out_features")
        if not (_int(i) and _int(o)):
            raise WeightsError(f"{w}: features must be positive integers, got {i!r}, {o!r}")
        return spec["name"], nn.Linear(i, o, bias=spec["bias"])
    if kind != "Conv2d":
        raise WeightsError(f"{w}: type must be Conv2d or Linear, got {kind!r}")
    args = {f: spec.get(f) for f in _CONV_FIELDS}
    pad = args["padding"]
    checks = [
        all(_int(args[f]) for f in ("in_channels", "out_channels", "groups")),
        all(_pair(args[f]) for f in ("kernel_size", "stride", "dilation")),
        pad in ("same", "valid") or _pair(pad, 0),
        args["padding_mode"] in ("zeros", "reflect", "replicate", "circular"),
    ]
    if not all(checks):
        raise WeightsError(f"{w}: invalid Conv2d fields {args}")
    if args["in_channels"] % args["groups"] or args["out_channels"] % args["groups"]:
        raise WeightsError(f"{w}: channels do not split into {args['groups']} groups")
    for f in ("kernel_size", "stride", "dilation") + (
        ("padding",) if isinstance(pad, list) else ()
    ):
        args[f] = tuple(args[f])
    return spec["name"], nn.Conv2d(**args, bias=spec["bias"])


def _build_block(spec: Any, where: str) -> nn.Sequential:
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise WeightsError(f"{where}: a block needs a non-empty list of layers")
    parts = [_build_layer(s, where) for s in spec["layers"]]
    if len({n for n, _ in parts}) != len(parts):
        raise WeightsError(f"{where}: layer names repeat")
    rank = spec.get("rank")
    return block(str(spec.get("method")), tuple(rank) if isinstance(rank, list) else rank, parts)
