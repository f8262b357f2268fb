"""Sparse storage of pruned weights: index + value form in one safetensors file, no pickle.

A tensor is stored as the flat positions of its non-zero entries plus their values, in the
cheaper of two encodings, measured per tensor:

- "flat": int32 positions.
- "delta": the gaps between successive positions in the smallest unsigned int (uint8 or uint16)
  that, counting filler entries, gives the fewest bytes. A gap wider than the int can hold is
  bridged by filler entries that store the zero at an intermediate position, as in the relative
  index coding of Han, Mao, Dally, "Deep Compression", ICLR 2016.

"Non-zero" means any bit set, so -0.0 is kept as a value and a round trip is bit-identical.
`save_sparse` stores each tensor of the state dict sparse only where that is smaller than dense.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor, nn

from slimkit.errors import ConfigError, WeightsError
from slimkit.files import atomic_write
from slimkit.weights import check_weights

__all__ = [
    "SparseTensor",
    "from_sparse",
    "load_sparse",
    "save_sparse",
    "sparse_bytes",
    "to_sparse",
]

ENCODINGS = ("flat", "delta")
_DELTA_DTYPES = (torch.uint8, torch.uint16)
_META_KEY = "slimkit.sparse"
_FORMAT_VERSION = 1
# Extra safetensors header + metadata bytes a sparse entry costs over a dense one (measured
# ~130-170 for typical names); a tensor goes sparse only if it saves more than this.
_SPARSE_OVERHEAD_BYTES = 192


@dataclass(frozen=True)
class SparseTensor:
    """Index + value form of a tensor: `values` at the flat positions `indices` encode."""

    indices: Tensor  # "flat": int32 positions; "delta": uint8/uint16 gaps (first from 0)
    values: Tensor  # the entries at those positions, dtype of the dense tensor
    shape: tuple[int, ...]
    encoding: str  # one of ENCODINGS

    @property
    def nbytes(self) -> int:
        return _nbytes(self.indices) + _nbytes(self.values)

    @property
    def positions(self) -> Tensor:
        """Flat int64 positions of the stored values, decoded."""
        if self.encoding == "flat":
            return self.indices.to(torch.int64)
        return torch.cumsum(self.indices.to(torch.int64), 0)


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _nonzero_positions(flat: Tensor) -> Tensor:
    """Positions of entries with any bit set (so -0.0 counts as non-zero)."""
    as_bytes = flat.contiguous().view(torch.uint8).view(flat.numel(), flat.element_size())
    return torch.nonzero(as_bytes.any(dim=1)).flatten()


def _fillers_needed(positions: Tensor, max_gap: int) -> Tensor:
    """Filler entries each gap needs so that no gap exceeds `max_gap` (first gap from 0)."""
    gaps = torch.diff(positions, prepend=positions.new_zeros(1))
    return ((gaps - 1) // max_gap).clamp_(min=0)


def _with_fillers(positions: Tensor, max_gap: int) -> Tensor:
    fill = _fillers_needed(positions, max_gap)
    if not int(fill.sum()):
        return positions
    previous = torch.cat([positions.new_zeros(1), positions[:-1]])
    starts = torch.repeat_interleave(previous, fill)
    # j = 1, 2, … within each gap's run of fillers: positions previous + j × max_gap.
    offsets = torch.cumsum(fill, 0) - fill
    j = torch.arange(len(starts)) - torch.repeat_interleave(offsets, fill) + 1
    return torch.sort(torch.cat([positions, starts + j * max_gap])).values


def _delta_cost(positions: Tensor, dtype: torch.dtype, value_bytes: int) -> int:
    max_gap = torch.iinfo(dtype).max
    entries = len(positions) + int(_fillers_needed(positions, max_gap).sum())
    return entries * (torch.empty((), dtype=dtype).element_size() + value_bytes)


def to_sparse(weight: Tensor, encoding: str | None = None) -> SparseTensor:
    """Index + value form of `weight`; `encoding=None` picks the smallest (flat on ties)."""
    if encoding is not None and encoding not in ENCODINGS:
        raise ConfigError(
            f"to_sparse: encoding must be one of {ENCODINGS} or None, got {encoding!r}"
        )
    flat = weight.detach().cpu().flatten()
    if flat.numel() >= 2**31:
        raise ConfigError(f"to_sparse: {flat.numel()} entries exceed int32 positions")
    positions = _nonzero_positions(flat)
    value_bytes = flat.element_size()
    flat_cost = len(positions) * (4 + value_bytes)
    costs = {dtype: _delta_cost(positions, dtype, value_bytes) for dtype in _DELTA_DTYPES}
    delta_dtype = min(costs, key=costs.__getitem__)
    if encoding == "flat" or (encoding is None and flat_cost <= costs[delta_dtype]):
        indices = positions.to(torch.int32)
        encoding = "flat"
    else:
        positions = _with_fillers(positions, torch.iinfo(delta_dtype).max)
        indices = torch.diff(positions, prepend=positions.new_zeros(1)).to(delta_dtype)
        encoding = "delta"
    # Values straight from the dense tensor: fillers read its zeros, every bit is preserved.
    return SparseTensor(indices, flat[positions].clone(), tuple(weight.shape), encoding)


def from_sparse(sparse: SparseTensor) -> Tensor:
    """The dense tensor back, bit for bit."""
    dense = torch.zeros(math.prod(sparse.shape), dtype=sparse.values.dtype)
    dense[sparse.positions] = sparse.values
    return dense.view(sparse.shape)


# --- files ---------------------------------------------------------------------------------------


def _storage_key(t: Tensor) -> tuple[int, int, tuple[int, ...]]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))


def save_sparse(model: nn.Module | dict[str, Tensor], path: str | os.PathLike) -> Path:
    """Write the state dict to one safetensors file, each tensor sparse where that is smaller.

    Sparse tensors are stored as `<key>::indices` and `<key>::values`; the JSON metadata entry
    "slimkit.sparse" names them with their shape and encoding, and tied tensors are kept once.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors: dict[str, Tensor] = {}
    sparse: dict[str, dict[str, object]] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for key, t in state.items():
        storage = _storage_key(t)
        if storage in first and t.numel():
            aliases[key] = first[storage]
            continue
        first[storage] = key
        packed = to_sparse(t)
        if packed.nbytes + _SPARSE_OVERHEAD_BYTES < _nbytes(t):
            tensors[f"{key}::indices"] = packed.indices
            tensors[f"{key}::values"] = packed.values
            sparse[key] = {"shape": list(packed.shape), "encoding": packed.encoding}
        else:
            tensors[key] = t.detach().cpu().contiguous().clone()
    clash = next((k for k in sparse if k in tensors or k in aliases), None)
    if clash is not None:
        raise WeightsError(f"state dict key {clash!r} clashes with a sparse entry name")
    meta = {"version": _FORMAT_VERSION, "sparse": sparse, "aliases": aliases}
    data = save(tensors, metadata={_META_KEY: json.dumps(meta, separators=(",", ":"))})
    return atomic_write(path, lambda f: f.write(data))


def _read(path: Path) -> tuple[dict[str, Tensor], dict]:
    if not path.is_file():
        raise WeightsError(f"sparse weights file '{path}' does not exist")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(_META_KEY)
        meta = json.loads(header) if header is not None else {"sparse": {}, "aliases": {}}
    except (SafetensorError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise WeightsError(f"'{path}' is not a safetensors weights file ({first})") from None
    if (
        not isinstance(meta, dict)
        or meta.get("version", _FORMAT_VERSION) != _FORMAT_VERSION
        or not isinstance(meta.get("sparse", {}), dict)
        or not isinstance(meta.get("aliases", {}), dict)
    ):
        raise WeightsError(f"'{path}' has sparse metadata of an unknown form: {header[:80]}")
    return tensors, meta


def _is_shape(shape: object) -> bool:
    return isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)


def _unpack(key: str, info: object, tensors: dict[str, Tensor], source: str) -> Tensor:
    """Decode one sparse entry, checking it enough that a damaged file names the key."""
    indices = tensors.pop(f"{key}::indices", None)
    values = tensors.pop(f"{key}::values", None)
    bad = None
    if indices is None or values is None:
        bad = "its indices or values are missing"
    elif not isinstance(info, dict) or info.get("encoding") not in ENCODINGS:
        bad = f"unknown sparse encoding in {info!r}"
    elif not _is_shape(info.get("shape")):
        bad = f"its shape {info.get('shape')!r} is not a list of sizes"
    elif indices.dtype not in (torch.int32, *_DELTA_DTYPES) or len(indices) != len(values):
        bad = f"indices ({indices.dtype}, {len(indices)}) do not fit values ({len(values)})"
    if bad is None:
        packed = SparseTensor(indices, values, tuple(info["shape"]), info["encoding"])
        positions = packed.positions
        if len(positions) and (
            int(positions.min()) < 0 or int(positions.max()) >= math.prod(packed.shape)
        ):
            bad = f"positions fall outside its shape {packed.shape}"
        else:
            return from_sparse(packed)
    raise WeightsError(f"{source}: sparse entry '{key}' is damaged: {bad}")


def load_sparse(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a `save_sparse` file (or a plain safetensors one) into `model`, bit-identical."""
    path = Path(path)
    source = f"sparse weights '{path.name}'"
    tensors, meta = _read(path)
    sparse = meta.get("sparse", {})
    state = {key: _unpack(key, info, tensors, source) for key, info in sparse.items()}
    stray = next((k for k in tensors if "::" in k), None)
    if stray is not None:
        raise WeightsError(f"{source}: '{stray}' belongs to no sparse entry in the metadata")
    state.update(tensors)
    for key, target in meta.get("aliases", {}).items():
        if target not in state:
            raise WeightsError(f"{source}: '{key}' is tied to '{target}', which is missing")
        state[key] = state[target]
    check_weights(model, state, source=source)
    model.load_state_dict(state)
    return model


def sparse_bytes(model: nn.Module) -> int:
    """Size on disk of the file `save_sparse` writes for `model` (header included)."""
    with tempfile.TemporaryDirectory(prefix="slimkit-sparse-") as d:
        return save_sparse(model, Path(d) / "model.safetensors").stat().st_size
