"""Bit packing: n codes of k bits in exactly ceil(n·k/8) bytes, for any k in 1..8.

Layout (little-endian bit stream, the order numpy calls bitorder="little"): code i occupies bits
i·k … i·k + k − 1 of the stream, least significant bit first, and stream bit j is bit j % 8 of
byte j // 8. Codes therefore straddle byte boundaries when k does not divide 8, and the unused
high bits of the last byte are zero. This is the whole format, so a reader in any language can
decode it; both directions are vectorized with numpy (no per-element Python loop).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from slimkit.errors import ConfigError

__all__ = ["pack_bits", "packed_size", "unpack_bits"]


def _check_k(k: object, verb: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 8:
        raise ConfigError(f"{verb}: k must be an int number of bits in 1..8, got {k!r}")
    return int(k)


def packed_size(n: int, k: int) -> int:
    """Bytes that n codes of k bits take: ceil(n·k / 8)."""
    return math.ceil(n * _check_k(k, "packed_size") / 8)


def _as_array(codes: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(codes, Tensor):
        codes = codes.detach().cpu()
        if codes.dtype == torch.bool:
            codes = codes.to(torch.uint8)
        codes = codes.numpy()
    return np.asarray(codes)


def pack_bits(codes: np.ndarray | Tensor, k: int) -> np.ndarray:
    """Pack integer `codes` in [0, 2^k) (any shape, read in C order) into a uint8 array of
    exactly ceil(n·k/8) bytes."""
    k = _check_k(k, "pack_bits")
    codes = _as_array(codes)
    if codes.dtype != np.bool_ and not np.issubdtype(codes.dtype, np.integer):
        raise ConfigError(f"pack_bits: codes must be integers, got dtype {codes.dtype}")
    flat = codes.reshape(-1)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= 1 << k):
        bad = flat[(flat < 0) | (flat >= 1 << k)][0]
        raise ConfigError(
            f"pack_bits: code {int(bad)} does not fit in {k} bits; codes must be in [0, {1 << k})"
        )
    flat = flat.astype(np.uint8)
    if k == 8:
        return flat.copy()
    # (n, k) matrix of bits, LSB first, read row by row: exactly the stream the layout describes.
    bits = (flat[:, None] >> np.arange(k, dtype=np.uint8)) & 1
    return np.packbits(bits.reshape(-1), bitorder="little")


def unpack_bits(buf: np.ndarray | Tensor | bytes | bytearray, k: int, n: int) -> np.ndarray:
    """The n codes of k bits packed in `buf` (ceil(n·k/8) bytes), as a uint8 array."""
    k = _check_k(k, "unpack_bits")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"unpack_bits: n must be an int count >= 0, got {n!r}")
    if isinstance(buf, (bytes, bytearray, memoryview)):
        data = np.frombuffer(buf, dtype=np.uint8)
    else:
        data = _as_array(buf)
        if data.dtype != np.uint8:
            raise ConfigError(f"unpack_bits: buf must hold uint8 bytes, got dtype {data.dtype}")
        data = data.reshape(-1)
    need = math.ceil(n * k / 8)
    if data.size != need:
        raise ConfigError(
            f"unpack_bits: {n} codes of {k} bits take {need} bytes, but the buffer holds "
            f"{data.size}; it is truncated or for other codes"
        )
    if k == 8:
        return data.copy()
    bits = np.unpackbits(data, count=n * k, bitorder="little").reshape(n, k)
    return (bits << np.arange(k, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)
