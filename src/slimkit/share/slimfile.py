"""The `.slim` file: a pruned, weight-shared model entropy-coded, as in Deep Compression.

Han, Mao, Dally, ICLR 2016, §4: per layer a codebook, the positions of the surviving weights as
relative index gaps, and their cluster indices, both Huffman-coded. Here each symbol stream
is written with canonical Huffman, rANS (compact tables, bucketed tails, two contexts) or fixed
width, whichever is smallest (`slimkit.share.coding`), and gaps overflowing their width use
escapes instead of filler zeros.

Layout (integers little-endian; varint = unsigned LEB128):

    magic  b"\\x89SLM\\r\\n\\x1a\\n"   8 bytes (PNG-style: catches 7-bit and newline mangling)
    version                      1 byte (FORMAT_VERSION; 2: rANS streams as `slimkit.share.ans`)
    sections, each: kind (1 byte) · varint payload length · payload · CRC-32 of all three (4)
      "M" metadata: 1 byte method (0 JSON, 1 zlib JSON), then JSON {"arch", "layers" (shapes of
          every conv/linear/norm layer, `slimkit.arch.describe`), "shared": [[key, shape,
          bits]], "raw": [[key, dtype, shape]], "aliases": {key: key}}
      "S" one per shared tensor, in "shared" order:
          1 byte: gap width g in bits 0-4 (0: every entry kept, no gap stream), bit 5: scanned
              column-major (the transpose of (rows, rest)), bit 6: fp16 codebook, bit 7: the
              codebook delta-coded
          varint u, then the u centroids in increasing order (u = 0: the tensor is all zeros),
              raw fp16/fp32 or delta-coded (`slimkit.share.codebook`)
          gap stream (g > 0; alphabet 2^g implied; 0 = escape, r + 1 = an entry after r zeros),
          cluster-index stream (alphabet u, count the gap stream's entries or every entry, both
          implied). A stream (`coding.encode_stream`) is a coder byte, the varint counts it
          does not imply, then the coder's table and payload.
      "R" CRC-32 of all shared tensors as decoded (fp32, C order, in "shared" order): decoding
          is exact or it fails; then every other tensor (biases, norms, buffers) back to back:
          1 byte method (0 raw, 1 zlib), then their bytes in "raw" order

Nothing is pickled and loading executes nothing from the file: the model is built by
`slimkit.arch.rebuild` from the zoo name or a caller's factory, then filled. Every count read
from the file is bounded by the shapes the metadata declares (at most 2^31 entries a tensor)
before anything is allocated, and every fault —
truncation, a wrong magic number, a newer version, a failed checksum, metadata that does not fit
the architecture — is a one-line `SlimFileError`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.arch import check_arch, describe, rebuild
from slimkit.errors import ConfigError, SlimkitError, WeightsError
from slimkit.files import atomic_write
from slimkit.share.codebook import pack_codebook, raw_codebook, read_codebook
from slimkit.share.coding import (
    CODERS,
    CodingError,
    StreamInfo,
    decode_gaps,
    decode_stream,
    encode_gaps,
    encode_stream,
    estimate_bits,
    read_varint,
    varint,
)
from slimkit.share.kmeans import SharedWeight, shared_tensors
from slimkit.share.report import CompressionReport, TensorReport
from slimkit.weights import check_weights

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SlimFileError",
    "compressed_bytes",
    "compression_report",
    "is_slim_file",
    "load_compressed",
    "read_compressed",
    "save_compressed",
]

MAGIC = b"\x89SLM\r\n\x1a\n"
FORMAT_VERSION = 2
MAX_ELEMENTS = 1 << 31  # per tensor: a damaged count must not allocate without bound
_MAX_METADATA = 16 << 20
_MAX_WIDTH = 16
_TRANSPOSED, _HALF, _DELTA = 1 << 5, 1 << 6, 1 << 7
_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


class SlimFileError(WeightsError):
    """A `.slim` file that is damaged, truncated, of another version, or for another model."""


# --- writing -----------------------------------------------------------------------------------


def _section(kind: bytes, payload: bytes) -> bytes:
    head = kind + varint(len(payload))
    return head + payload + zlib.crc32(payload, zlib.crc32(head)).to_bytes(4, "little")


def _decoded_crc(tensors: list[Tensor]) -> bytes:
    """CRC-32 of the shared tensors as decoded (fp32, C order, one after another)."""
    crc = 0
    for t in tensors:
        crc = zlib.crc32(t.detach().cpu().contiguous().numpy().astype("<f4").tobytes(), crc)
    return crc.to_bytes(4, "little")


def _scan(numel: int, shape: tuple[int, ...], transposed: bool) -> np.ndarray | None:
    """Flat C-order index of each scan position (None: the scan is C order itself)."""
    if not transposed:
        return None
    rows = shape[0]
    return np.arange(numel, dtype=np.int64).reshape(rows, -1).T.reshape(-1)


def _best_gaps(
    kept: np.ndarray, shape: tuple[int, ...], coders: tuple[str, ...]
) -> tuple[bytes, StreamInfo, int, bool, np.ndarray]:
    """The smallest gap stream over widths and both scan orders: (stream, info, width,
    transposed, scan order of the kept entries as C-order indices)."""
    numel = kept.size
    orders = [False, True] if len(shape) >= 2 and shape[0] > 1 else [False]
    # The best width sits near log2 of the mean gap; a few either side cover real layers.
    mean = math.log2(numel / max(int(kept.sum()), 1))
    widths = range(max(1, round(mean) - 2), min(_MAX_WIDTH, round(mean) + 8) + 1)
    estimates = []
    for transposed in orders:
        scan = _scan(numel, shape, transposed)
        in_scan = kept if scan is None else kept[scan]
        positions = np.flatnonzero(in_scan)
        for width in widths:
            symbols = encode_gaps(positions, width)
            estimate = estimate_bits(symbols, 1 << width)
            estimates.append((estimate, width, transposed, symbols, positions, scan))
    estimates.sort(key=lambda e: e[0])
    best = None
    for _, width, transposed, symbols, positions, scan in estimates[:4]:
        data, info = encode_stream(symbols, 1 << width, coders, store_alphabet=False)
        if best is None or len(data) < len(best[0]):
            order = positions if scan is None else scan[positions]
            best = (data, info, width, transposed, order)
    return best


def _encode_shared(key: str, shared: SharedWeight, value: Tensor, coders: tuple[str, ...]):
    """The S-section payload of one shared tensor, and its report."""
    shape = tuple(value.shape)
    flat = value.detach().cpu().reshape(-1).numpy().astype(np.float32)
    indices = shared.indices.detach().cpu().reshape(-1).numpy().astype(np.int64)
    codebook = shared.codebook_values().cpu().numpy().astype(np.float32)
    k = len(codebook)
    kept = indices < k
    stored = np.where(kept, codebook[np.minimum(indices, max(k - 1, 0))], 0).astype(np.float32)
    if not np.array_equal(stored.view(np.int32), flat.view(np.int32)):
        raise WeightsError(f"{key}: its value is not codebook[indices]; was it changed in place?")
    # Only the centroids in use, and equal ones (bit for bit) once: a smaller alphabet; sorted
    # by value (-0.0 before 0.0), so the codebook delta-codes and near indices are near values.
    bits_of = codebook.view(np.int32)
    used_bits, remap = np.unique(bits_of[indices[kept]], return_inverse=True)
    by_value = np.lexsort((used_bits, used_bits.view(np.float32)))
    rank = np.empty_like(by_value)
    rank[by_value] = np.arange(len(by_value))
    used_bits, remap = used_bits[by_value], rank[remap]
    centroids = used_bits.view(np.float32)
    u = len(centroids)
    as_half = centroids.astype(np.float16).astype(np.float32)
    half = bool(np.array_equal(as_half.view(np.int32), used_bits))
    # With fixed width only (no coding at all, Han et al.'s eq. 1), the codebook stays raw too.
    book, delta = (
        pack_codebook(centroids, half)
        if set(coders) - {"fixed"}
        else (raw_codebook(centroids, half), False)
    )
    payload = bytearray()
    gaps_info = None
    width = 0
    transposed = False
    if u and not kept.all():
        gaps, gaps_info, width, transposed, order = _best_gaps(kept, shape, coders)
    else:
        order = np.flatnonzero(kept)
        gaps = b""
    flags = width | (_TRANSPOSED if transposed else 0) | (_HALF if half and u else 0)
    flags |= _DELTA if delta else 0
    payload += bytes([flags]) + varint(u) + (book if u else b"")
    index_info = None
    if u:
        # remap is in C order of the kept entries; the index stream follows the scan order.
        cluster = np.empty(flat.size, dtype=np.int64)
        cluster[np.flatnonzero(kept)] = remap.reshape(-1)
        # Its count is the gap stream's entries (or every entry), its alphabet the codebook.
        index_stream, index_info = encode_stream(
            cluster[order], u, coders, store_count=False, store_alphabet=False
        )
        payload += gaps + index_stream
    report = TensorReport(
        name=key,
        shape=list(shape),
        numel=flat.size,
        kept=int(kept.sum()),
        bits=shared.bits,
        clusters=u,
        codebook_bytes=len(book) if u else 0,
        codebook_dtype="float16" if half else "float32",
        gap_width=width,
        scan="column" if transposed else "row",
        gaps=gaps_info,
        index=index_info,
        section_bytes=len(_section(b"S", bytes(payload))),
    )
    return bytes(payload), report


def _raw_bytes(t: Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _storage_key(t: Tensor) -> tuple[int, int, tuple[int, ...]]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))


def _check_model(model: nn.Module) -> dict[str, SharedWeight]:
    shared = shared_tensors(model)
    if not shared:
        raise ConfigError(
            f"{type(model).__name__} has no shared weights to encode: share_weights it first "
            "(plain or pruned models save with save_weights or save_sparse)"
        )
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for tensor, stack in module.parametrizations.items():
                if not (len(stack) == 1 and isinstance(stack[0], SharedWeight)):
                    raise ConfigError(
                        f"{name}.{tensor} is parametrized by something other than weight "
                        "sharing (k-bit quantization?): freeze it before encoding"
                    )
    return shared


def save_compressed(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    arch: dict[str, Any],
    coders: tuple[str, ...] = CODERS,
) -> Path:
    """Write a `share_weights` model as a `.slim` file, atomically; returns the path.

    `arch` says how to build the unpruned float model: {"zoo": name, "kwargs": {...}}, or
    {"kwargs": {...}} for the `factory` given to `load_compressed`. `coders` limits the coders
    tried per stream ("fixed" is always among them); the smallest is kept.
    """
    data, _ = _encode(model, arch, coders)  # everything checked before the disk is touched
    return atomic_write(path, lambda f: f.write(data))


def _encode(
    model: nn.Module, arch: dict[str, Any], coders: tuple[str, ...]
) -> tuple[bytes, list[TensorReport]]:
    check_arch(arch)
    if "fixed" not in coders or any(c not in CODERS for c in coders):
        raise ConfigError(f"coders must include 'fixed' and be among {CODERS}, got {coders!r}")
    shared = _check_model(model)
    skip = set()
    for key in shared:
        module, _, tensor = key.rpartition(".")
        skip.add(
            f"{module}.parametrizations.{tensor}." if module else f"parametrizations.{tensor}."
        )
    sections, reports, values = [], [], []
    with torch.no_grad():
        for key, s in shared.items():
            module, _, tensor = key.rpartition(".")
            value = getattr(model.get_submodule(module), tensor).detach().float()
            payload, report = _encode_shared(key, s, value, coders)
            sections.append(_section(b"S", payload))
            reports.append(report)
            values.append(value)
    raw, aliases, blobs = [], {}, []
    first: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for key, t in model.state_dict().items():
        if any(key.startswith(p) for p in skip):
            continue
        storage = _storage_key(t)
        if storage in first and t.numel():
            aliases[key] = first[storage]
            continue
        first[storage] = key
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise ConfigError(f"tensor {key!r} is {t.dtype}, which .slim files do not store")
        raw.append([key, dtype, list(t.shape)])
        blobs.append(_raw_bytes(t))
    blob = b"".join(blobs)
    packed = zlib.compress(blob, 9)
    raw_payload = b"\x01" + packed if len(packed) < len(blob) else b"\x00" + blob
    raw_payload = _decoded_crc(values) + raw_payload
    meta = {
        "arch": arch,
        "layers": describe(model),
        "shared": [[r.name, r.shape, r.bits] for r in reports],
        "raw": raw,
        "aliases": aliases,
    }
    text = json.dumps(meta, separators=(",", ":")).encode()
    packed = zlib.compress(text, 9)
    meta_payload = b"\x01" + packed if len(packed) < len(text) else b"\x00" + text
    out = [MAGIC, bytes([FORMAT_VERSION]), _section(b"M", meta_payload), *sections]
    out.append(_section(b"R", raw_payload))
    return b"".join(out), reports


def compressed_bytes(model: nn.Module, arch: dict[str, Any] | None = None) -> int:
    """Size of the `.slim` file `save_compressed` writes for `model`, measured on disk."""
    with tempfile.TemporaryDirectory(prefix="slimkit-slim-") as d:
        path = save_compressed(model, Path(d) / "model.slim", arch=arch or {"kwargs": {}})
        return path.stat().st_size


# --- reading -----------------------------------------------------------------------------------


def is_slim_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a file that starts with the `.slim` magic number."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _sections(data: bytes, where: str) -> list[tuple[bytes, memoryview, int]]:
    """(kind, payload, size with framing) of every section, checksums verified."""
    if not data:
        raise SlimFileError(f"{where} is empty, not a .slim file")
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data[: len(MAGIC)]):
            raise SlimFileError(f"{where} is truncated: it ends inside the header")
        raise SlimFileError(
            f"{where} is not a .slim file (wrong magic number): write one with save_compressed"
        )
    version = data[len(MAGIC)]
    if version > FORMAT_VERSION:
        raise SlimFileError(
            f"{where} has format version {version}, newer than the {FORMAT_VERSION} this "
            "slimkit reads: upgrade slimkit"
        )
    if version < 1:
        raise SlimFileError(f"{where} has format version {version}, which never existed: damaged")
    if version < FORMAT_VERSION:
        raise SlimFileError(
            f"{where} has format version {version}, whose coded streams this slimkit no longer "
            "reads: encode the model again (slimkit encode)"
        )
    view = memoryview(data)
    offset = len(MAGIC) + 1
    out = []
    while offset < len(data):
        start = offset
        kind = bytes(view[offset : offset + 1])
        try:
            size, offset = read_varint(view, offset + 1, len(data))
        except CodingError:
            raise SlimFileError(
                f"{where} is truncated or damaged in section {len(out) + 1}"
            ) from None
        end = offset + size + 4
        if end > len(data):
            raise SlimFileError(
                f"{where} is truncated: section {len(out) + 1} needs {end - len(data)} more bytes"
            )
        crc = zlib.crc32(view[start : offset + size])
        if crc != int.from_bytes(view[offset + size : end], "little"):
            raise SlimFileError(
                f"{where}: section {len(out) + 1} fails its checksum: the file is damaged"
            )
        out.append((kind, view[offset : offset + size], end - start))
        offset = end
    return out


def _unzip(payload: memoryview, limit: int, what: str, where: str) -> bytes:
    if not len(payload) or payload[0] not in (0, 1):
        raise SlimFileError(f"{where}: the {what} has an unknown storage method")
    if payload[0] == 0:
        return bytes(payload[1:])
    z = zlib.decompressobj()
    out = z.decompress(payload[1:], limit + 1)
    if len(out) > limit or z.unconsumed_tail or not z.eof:
        raise SlimFileError(f"{where}: the {what} does not decompress to its expected size")
    return out


def _is_shape(shape: Any) -> bool:
    return (
        isinstance(shape, list)
        and len(shape) <= 8
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        and math.prod(shape) <= MAX_ELEMENTS
    )


def _metadata(payload: memoryview, where: str) -> dict[str, Any]:
    text = _unzip(payload, _MAX_METADATA, "metadata", where)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise SlimFileError(f"{where}: the metadata is not JSON: the file is damaged") from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("arch"), dict)
        and isinstance(meta.get("layers"), dict)
        and isinstance(meta.get("shared"), list)
        and isinstance(meta.get("raw"), list)
        and isinstance(meta.get("aliases"), dict)
    )
    if not ok:
        raise SlimFileError(f"{where}: the metadata lacks arch, layers, shared, raw or aliases")
    for entry in meta["shared"]:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and _is_shape(entry[1])
            and isinstance(entry[2], int)
            and 1 <= entry[2] <= 16
        ):
            raise SlimFileError(f"{where}: a shared-tensor entry {str(entry)[:60]} is malformed")
    for entry in meta["raw"]:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and entry[1] in _DTYPES
            and _is_shape(entry[2])
        ):
            raise SlimFileError(f"{where}: a raw-tensor entry {str(entry)[:60]} is malformed")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta["aliases"].items()):
        raise SlimFileError(f"{where}: the aliases are not names")
    return meta


def _decode_shared(
    payload: memoryview, key: str, shape: list[int], bits: int, where: str
) -> tuple[Tensor, TensorReport]:
    numel = math.prod(shape)
    if not payload:
        raise SlimFileError(f"{where}: the section of {key!r} is empty")
    flags = payload[0]
    width, transposed, half = flags & 31, bool(flags & _TRANSPOSED), bool(flags & _HALF)
    if width > _MAX_WIDTH or (transposed and len(shape) < 2):
        raise SlimFileError(f"{where}: {key!r} has unknown flags {flags:#04x}")
    u, start = read_varint(payload, 1, min(numel, 1 << bits))
    if flags & _DELTA and u < 2:
        raise SlimFileError(f"{where}: {key!r} has a delta-coded codebook of {u} centroids")
    delta = bool(flags & _DELTA)
    book, offset = read_codebook(payload, start, u, half, delta)
    book_bytes = offset - start
    flat = np.zeros(numel, dtype=np.float32)
    gaps = index = None
    kept = 0
    if u:
        if width:
            symbols, offset, gaps = decode_stream(
                payload, offset, max_count=numel, alphabet=1 << width
            )
            positions = decode_gaps(symbols, width, numel)
        else:
            positions = np.arange(numel, dtype=np.int64)
        clusters, offset, index = decode_stream(payload, offset, count=len(positions), alphabet=u)
        scan = _scan(numel, tuple(shape), transposed)
        flat[positions if scan is None else scan[positions]] = book[clusters]
        kept = len(positions)
    elif flags:
        raise SlimFileError(f"{where}: {key!r} has no codebook but flags {flags:#04x}")
    if offset != len(payload):
        raise SlimFileError(
            f"{where}: the section of {key!r} has {len(payload) - offset} bytes beyond its streams"
        )
    report = TensorReport(
        name=key,
        shape=list(shape),
        numel=numel,
        kept=kept,
        bits=bits,
        clusters=u,
        codebook_bytes=book_bytes,
        codebook_dtype="float16" if half else "float32",
        gap_width=width,
        scan="column" if transposed else "row",
        gaps=gaps,
        index=index,
        section_bytes=0,
    )
    return torch.from_numpy(flat).view(shape), report


def _decode_raw(payload: memoryview, raw: list, where: str) -> dict[str, Tensor]:
    sizes = [math.prod(shape) * _DTYPES[dtype].itemsize for _, dtype, shape in raw]
    blob = _unzip(payload, sum(sizes), "raw-tensor section", where)
    if len(blob) != sum(sizes):
        raise SlimFileError(
            f"{where}: the raw tensors take {len(blob)} bytes, their shapes {sum(sizes)}"
        )
    out, offset = {}, 0
    for (key, dtype, shape), size in zip(raw, sizes, strict=True):
        chunk = bytearray(blob[offset : offset + size])
        offset += size
        if dtype == "bool" and any(b > 1 for b in chunk):
            raise SlimFileError(f"{where}: bool tensor {key!r} holds bytes other than 0 and 1")
        t = torch.frombuffer(chunk, dtype=_DTYPES[dtype]) if size else torch.empty(0)
        out[key] = t.to(_DTYPES[dtype]).reshape(shape).clone()
    return out


def _read(
    path: Path,
) -> tuple[dict[str, Any], dict[str, Tensor], list[TensorReport], dict[str, int]]:
    where = f"'{path.name}'"
    if not path.is_file():
        raise SlimFileError(f".slim file '{path}' does not exist")
    data = path.read_bytes()
    sections = _sections(data, where)
    if not sections or sections[0][0] != b"M":
        raise SlimFileError(f"{where} does not start with its metadata section: damaged")
    meta = _metadata(sections[0][1], where)
    expected = [b"M"] + [b"S"] * len(meta["shared"]) + [b"R"]
    kinds = [kind for kind, _, _ in sections]
    if kinds != expected:
        if len(kinds) < len(expected) and kinds == expected[: len(kinds)]:
            raise SlimFileError(
                f"{where} is truncated: {len(expected) - len(kinds)} of its sections are missing"
            )
        raise SlimFileError(f"{where} holds sections {kinds[:8]}, expected {expected[:8]}…")
    state: dict[str, Tensor] = {}
    reports = []
    for (key, shape, bits), (_, payload, size) in zip(meta["shared"], sections[1:-1], strict=True):
        if key in state:
            raise SlimFileError(f"{where}: {key!r} is stored twice")
        try:
            state[key], report = _decode_shared(payload, key, shape, bits, where)
        except CodingError as e:
            raise SlimFileError(f"{where}: the streams of {key!r} are damaged ({e})") from None
        reports.append(_with_size(report, size))
    checksum, raw_payload = bytes(sections[-1][1][:4]), sections[-1][1][4:]
    if _decoded_crc(list(state.values())) != checksum:
        raise SlimFileError(
            f"{where}: the decoded weights fail their checksum (a coder that disagrees with the "
            "writer's, or a damaged file)"
        )
    raw = _decode_raw(raw_payload, meta["raw"], where)
    clash = next((k for k in raw if k in state), None)
    if clash is not None:
        raise SlimFileError(f"{where}: {clash!r} is stored both shared and raw")
    state.update(raw)
    for key, target in meta["aliases"].items():
        if target not in state or key in state:
            raise SlimFileError(f"{where}: alias {key!r} → {target!r} does not resolve")
        state[key] = state[target]
    sizes = {
        "file": len(data),
        "header": len(MAGIC) + 1,
        "metadata": sections[0][2],
        "raw": sections[-1][2],
    }
    return meta, state, reports, sizes


def _with_size(report: TensorReport, size: int) -> TensorReport:
    return replace(report, section_bytes=size)


def _guard(path: Path, action: Callable[[], Any]) -> Any:
    """Run `action`; any fault that is not already a slimkit error becomes a SlimFileError."""
    try:
        return action()
    except SlimkitError:
        raise
    except Exception as e:  # a damaged file must never surface as a stray exception
        text = (str(e).strip().splitlines() or [""])[0][:100]
        raise SlimFileError(f"'{path.name}' is damaged ({type(e).__name__}: {text})") from None


def read_compressed(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(metadata, state dict) of a `.slim` file, decoded and checked, without a model."""
    path = Path(path)
    meta, state, _, _ = _guard(path, lambda: _read(path))
    return meta, state


def load_compressed(
    path: str | os.PathLike, factory: Callable[..., nn.Module] | None = None
) -> nn.Module:
    """Rebuild a `save_compressed` model: the architecture from its `arch` (the zoo, or
    `factory(**arch["kwargs"])`), layers resized as described, weights decoded.

    The result is a plain model whose weights equal the shared model's bit for bit, so its
    outputs are identical.
    """
    path = Path(path)
    where = f"'{path.name}'"
    meta, state = read_compressed(path)

    if factory is None and "zoo" not in meta["arch"]:
        raise ConfigError(f"{where} has no zoo model name in its arch: pass factory=")

    def build() -> nn.Module:
        try:  # the zoo name, its options and the layer shapes all come from the file
            model = rebuild(meta["arch"], meta["layers"], factory, where=where)
            check_weights(model, state, source=f"the weights in {where}")
        except SlimkitError as e:
            raise SlimFileError(f"{where}: {e}" if where not in str(e) else str(e)) from None
        model.load_state_dict(state)
        return model

    return _guard(path, build)


# --- the report --------------------------------------------------------------------------------


def compression_report(path: str | os.PathLike) -> CompressionReport:
    """Read and decode a `.slim` file and report its sizes layer by layer; no model needed."""
    path = Path(path)
    t0 = time.perf_counter()
    meta, state, reports, sizes = _guard(path, lambda: _read(path))
    elapsed = time.perf_counter() - t0
    stored = [t for key, t in state.items() if key not in meta["aliases"]]
    dense = sum(t.numel() * 4 for t in stored if t.is_floating_point())
    return CompressionReport(
        path=str(path),
        file_bytes=sizes["file"],
        dense_bytes=dense,
        header_bytes=sizes["header"],
        metadata_bytes=sizes["metadata"],
        raw_bytes=sizes["raw"],
        tensors=reports,
        decode_s=elapsed,
    )
