"""Saving and loading weights without pickle: safetensors, or torch's weights-only loader.

Loading checks the file against the model before touching it, so a mismatch names the first
offending key and both shapes instead of failing deep inside `load_state_dict`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from slimkit.errors import WeightsError
from slimkit.files import atomic_write


def save_weights(
    model: nn.Module | dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a model's state dict as safetensors, atomically. Tied tensors are stored once;
    `metadata` (str → str) goes into the file's header."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_name: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in first_name and t.numel():
            aliases[name] = first_name[key]
            continue
        first_name[key] = name
        tensors[name] = t.detach().contiguous().clone()
    header = dict(metadata or {})
    header.update({f"alias:{k}": v for k, v in aliases.items()})
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=header)))


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file or a weights-only torch file into a flat name → tensor dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    try:
        if path.suffix == ".safetensors" or not head.startswith(b"PK"):
            return read_safetensors(path)[0]
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            f"'{path}' is not a weights file: it holds pickled Python objects (a whole model?) "
            "that slimkit will not unpickle; save model.state_dict() or safetensors instead"
        ) from None
    except (SafetensorError, RuntimeError, ValueError, OSError, EOFError) as e:
        raise WeightsError(
            f"'{path}' is not a weights file ({_first_line(e)}): pass a .safetensors file or a "
            "torch state dict saved with torch.save(model.state_dict(), ...)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"'{path}' holds a {type(state).__name__}, not a state dict of tensors: save "
            "model.state_dict(), not the model object"
        )
    return state


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (tied aliases restored) and header metadata of a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"file '{path}' does not exist")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"'{path}' is not a safetensors file ({_first_line(e)})") from None
    for key, target in meta.items():
        if key.startswith("alias:") and target in tensors:
            tensors[key.removeprefix("alias:")] = tensors[target]
    return tensors, meta


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:120] if text else type(e).__name__


def check_weights(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights"
) -> None:
    """Raise WeightsError naming the first key or shape that does not fit the model."""
    expected = model.state_dict()
    for name, t in expected.items():
        if name not in state:
            raise WeightsError(
                f"{source} lack '{name}' (shape {tuple(t.shape)}) that "
                f"{type(model).__name__} needs: are they for another model?"
            )
        if tuple(state[name].shape) != tuple(t.shape):
            raise WeightsError(
                f"{source} do not match {type(model).__name__}: '{name}' has shape "
                f"{tuple(state[name].shape)} in the file but {tuple(t.shape)} in the model"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise WeightsError(
            f"{source} hold '{extra[0]}' (and {len(extra) - 1} more keys) that "
            f"{type(model).__name__} does not have: are they for another model?"
        )


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights from `path` into `model` after checking every key and shape."""
    state = read_weights(path)
    check_weights(model, state, source=f"weights '{Path(path).name}'")
    model.load_state_dict(state)
    return model
