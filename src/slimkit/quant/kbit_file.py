"""Storing k-bit models for real: bit-packed codes + fp16 scales in one safetensors file.

For each quantized layer the file holds `<layer>.weight::codes`, a uint8 tensor of exactly
ceil(n·k/8) bytes (`slimkit.quant.pack` layout: n codes of k bits, binary 1 bit, ternary 2), and
`<layer>.weight::scales`, fp16 (out, groups). Every other tensor of the state dict (biases,
norms, float layers, activation clips) is stored as it is. Nothing is pickled: the header entry
"slimkit.kbit" is JSON — format and version, `arch` (how to build the model, as for
`save_pruned`), the shape of every conv/linear/norm layer (`slimkit.arch.describe`, so pruned
models rebuild) and per quantized layer its scheme, bits, shape and group size.

Scales are fp16 rather than fp32: with groups of 32-128 weights they are a visible share of a
3- or 4-bit file (16 bits per group instead of 32), and the quantizer already computes with the
fp16 values, so the loaded weights equal the in-memory fake-quantized ones bit for bit.
The latent float weights are not stored: `load_kbit` returns a plain model whose weights are the
dequantized values (like `freeze_kbit`); quantize it again to fine-tune further.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.arch import check_arch, describe, read_description, rebuild
from slimkit.errors import ConfigError, WeightsError
from slimkit.quant.kbit import (
    ACT,
    SCHEMES,
    TYPES,
    ActQuantizer,
    attach_act_quantizer,
    check_weight,
    dequantize,
    kbit_layers,
)
from slimkit.quant.pack import pack_bits, packed_size, unpack_bits
from slimkit.weights import check_weights, read_safetensors, save_weights

__all__ = ["FORMAT", "METADATA_KEY", "kbit_bytes", "load_kbit", "save_kbit"]

METADATA_KEY = "slimkit.kbit"
FORMAT = "slimkit.kbit/1"
CODES, SCALES = "::codes", "::scales"
_STORAGE_BITS = {"binary": 1, "ternary": 2}


def _prefix(name: str) -> str:
    return f"{name}." if name else ""


def save_kbit(model: nn.Module, path: str | os.PathLike, *, arch: dict[str, Any]) -> Path:
    """Write a `quantize_kbit` model as packed codes + fp16 scales + the rest, atomically.

    `arch` says how to build the unquantized, unpruned model: {"zoo": name, "kwargs": {...}}, or
    {"kwargs": {...}} for the `factory` given to `load_kbit`. It must be JSON.
    """
    check_arch(arch)
    layers = kbit_layers(model)
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no k-bit layers to save: quantize_kbit it first (a "
            "frozen model no longer knows its codes; save it with save_weights)"
        )
    tensors: dict[str, Tensor] = {}
    quantized: dict[str, dict[str, Any]] = {}
    owned: set[str] = set()
    for name, quantizer in layers.items():
        module = model.get_submodule(name)
        latent = module.parametrizations.weight.original
        check_weight(name, latent)
        codes, scales = quantizer.encode(latent)
        if not bool(torch.isfinite(scales).all()):
            raise WeightsError(f"layer {name!r} has scales beyond fp16: its weights blew up")
        key = f"{_prefix(name)}weight"
        tensors[key + CODES] = torch.from_numpy(pack_bits(codes, quantizer.bits))
        tensors[key + SCALES] = scales.cpu().contiguous()
        quantized[name] = {
            "scheme": quantizer.scheme,
            "bits": quantizer.bits,
            "shape": list(codes.shape),
            "group_size": quantizer.group_size,
        }
        owned.update(
            f"{_prefix(name)}parametrizations.weight.{k}"
            for k in module.parametrizations.weight.state_dict()
        )
    for key, t in model.state_dict().items():
        if key not in owned:
            tensors[key] = t
    acts = {
        name: m._modules[ACT].bits
        for name, m in model.named_modules()
        if isinstance(m._modules.get(ACT), ActQuantizer)
    }
    shapes = describe(model)
    meta = {
        "format": FORMAT,
        "arch": arch,
        "layers": shapes,
        "quantized": quantized,
        "activations": acts,
    }
    header = {METADATA_KEY: json.dumps(meta, separators=(",", ":"))}
    return save_weights(tensors, path, metadata=header)


def _weight(
    name: str, info: Any, module: nn.Module | None, tensors: dict[str, Tensor], where: str
) -> Tensor:
    """Unpack and dequantize one layer, checking enough that a damaged file names it."""
    key = f"{_prefix(name)}weight"
    packed, scales = tensors.pop(key + CODES, None), tensors.pop(key + SCALES, None)
    if not isinstance(module, TYPES):
        found = type(module).__name__ if module is not None else "no such module"
        raise WeightsError(f"{where}: quantized layer {name!r} is {found} in the rebuilt model")
    if packed is None or scales is None:
        raise WeightsError(f"{where}: layer {name!r} lacks its codes or scales")
    bad = None
    if not isinstance(info, dict) or info.get("scheme") not in SCHEMES:
        bad = f"unknown scheme in {info!r}"
    elif not (isinstance(info.get("bits"), int) and 1 <= info["bits"] <= 8):
        bad = f"bits {info.get('bits')!r} is not in 1..8"
    elif info["scheme"] in _STORAGE_BITS and info["bits"] != _STORAGE_BITS[info["scheme"]]:
        bad = f"{info['scheme']} weights stored with {info['bits']} bits"
    elif info.get("shape") != list(module.weight.shape):
        bad = f"shape {info.get('shape')!r} but the model's weight is {list(module.weight.shape)}"
    elif not (isinstance(info.get("group_size"), int) and info["group_size"] >= 1):
        bad = f"group_size {info.get('group_size')!r} is not an int >= 1"
    if bad is not None:
        raise WeightsError(f"{where}: layer {name!r}: {bad}")
    shape, bits, group = tuple(info["shape"]), info["bits"], info["group_size"]
    n = math.prod(shape)
    if packed.dtype != torch.uint8 or packed.dim() != 1 or len(packed) != packed_size(n, bits):
        raise WeightsError(
            f"{where}: layer {name!r} codes are {packed.dtype} ({packed.numel()}), not the "
            f"{packed_size(n, bits)} bytes {n} codes of {bits} bits take"
        )
    expected = (shape[0], -(-math.prod(shape[1:]) // group))
    if scales.dtype != torch.float16 or tuple(scales.shape) != expected:
        raise WeightsError(
            f"{where}: layer {name!r} scales are {scales.dtype} {tuple(scales.shape)}, "
            f"expected float16 {expected}"
        )
    codes = torch.from_numpy(unpack_bits(packed.numpy(), bits, n)).view(shape)
    if info["scheme"] == "ternary" and bool((codes > 2).any()):
        raise WeightsError(f"{where}: layer {name!r} has ternary codes above 2: damaged file")
    return dequantize(codes, scales, info["scheme"], bits, group)


def load_kbit(
    path: str | os.PathLike, factory: Callable[..., nn.Module] | None = None
) -> nn.Module:
    """Rebuild a `save_kbit` model: the architecture from its `arch` (the zoo, or
    `factory(**arch["kwargs"])`), layers resized as described, weights dequantized.

    The result is a plain model (plus activation quantizers if it had them) whose outputs equal
    the saved fake-quantized model's bit for bit.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"k-bit model file '{path}' does not exist")
    tensors, meta = read_safetensors(path)
    desc = read_description(
        path,
        meta,
        key=METADATA_KEY,
        fmt=FORMAT,
        what="k-bit model",
        saver="save_kbit",
        dicts=("arch", "layers", "quantized", "activations"),
    )
    where = f"'{path.name}'"
    model = rebuild(desc["arch"], desc["layers"], factory, where=where)
    modules = dict(model.named_modules())
    state = {
        f"{_prefix(name)}weight": _weight(name, info, modules.get(name), tensors, where)
        for name, info in desc["quantized"].items()
    }
    stray = next((k for k in tensors if "::" in k), None)
    if stray is not None:
        raise WeightsError(f"{where}: '{stray}' belongs to no quantized layer in the description")
    for name, bits in desc["activations"].items():
        if not isinstance(modules.get(name), TYPES) or bits not in range(1, 9):
            raise WeightsError(f"{where}: activation quantizer on {name!r} does not fit the model")
        attach_act_quantizer(modules[name], bits, name)
    state.update(tensors)
    check_weights(model, state, source=f"k-bit weights {where}")
    model.load_state_dict(state)
    return model


def kbit_bytes(model: nn.Module, arch: dict[str, Any] | None = None) -> int:
    """Size on disk of the file `save_kbit` writes for `model` (header included)."""
    with tempfile.TemporaryDirectory(prefix="slimkit-kbit-") as d:
        path = save_kbit(model, Path(d) / "model.safetensors", arch=arch or {"kwargs": {}})
        return path.stat().st_size
