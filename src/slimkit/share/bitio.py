"""Bit- and byte-level pieces shared by the coders of `slimkit.share`: LEB128 varints, MSB-first
bit I/O with exp-Golomb codes, variable-width bit fields, and the order-0 Shannon bound."""

from __future__ import annotations

import numpy as np

from slimkit.errors import ConfigError, WeightsError

__all__ = [
    "BitReader",
    "BitWriter",
    "CodingError",
    "eg_bits",
    "entropy_bits",
    "pack_varwidth",
    "read_varint",
    "take",
    "unpack_varwidth",
    "varint",
]


class CodingError(WeightsError):
    """A coded stream that does not decode: truncated, damaged, or not a stream at all."""


# --- byte-level helpers ------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, low group first, high bit = more follow."""
    if value < 0:
        raise ConfigError(f"varint: value must be >= 0, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf: bytes | memoryview, offset: int, limit: int = 1 << 62) -> tuple[int, int]:
    """(value, offset after it); at most 9 bytes, and the value at most `limit`."""
    value = shift = 0
    for i in range(9):
        if offset + i >= len(buf):
            raise CodingError("data ends inside a varint: truncated")
        byte = buf[offset + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if value > limit:
                raise CodingError(f"a stored count {value} exceeds the limit {limit}")
            return value, offset + i + 1
    raise CodingError("a varint runs past 9 bytes: damaged data")


def take(buf: bytes | memoryview, offset: int, size: int, what: str) -> tuple[bytes, int]:
    if size < 0 or offset + size > len(buf):
        raise CodingError(f"{what} needs {size} bytes but {len(buf) - offset} remain: truncated")
    return bytes(buf[offset : offset + size]), offset + size


class BitWriter:
    """MSB-first bit writer for small tables."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, width: int) -> None:
        self.bits.extend((value >> (width - 1 - j)) & 1 for j in range(width))

    def exp_golomb(self, value: int, k: int = 0) -> None:
        """Exp-Golomb of order k: (nb − 1 − k) zeros, then value + 2^k in nb bits."""
        x = value + (1 << k)
        nb = x.bit_length()
        self.bits.extend([0] * (nb - 1 - k))
        self.write(x, nb)

    def to_bytes(self) -> bytes:
        return np.packbits(np.array(self.bits, dtype=np.uint8)).tobytes()


class BitReader:
    def __init__(self, buf: bytes | memoryview, offset: int) -> None:
        self.buf = buf
        self.start = offset
        self.pos = 0  # bits read
        self._cache: list[int] = []

    def _bit(self) -> int:
        byte, bit = divmod(self.pos, 8)
        if self.start + byte >= len(self.buf):
            raise CodingError("data ends inside a coding table: truncated")
        self.pos += 1
        return (self.buf[self.start + byte] >> (7 - bit)) & 1

    def read(self, width: int) -> int:
        value = 0
        for _ in range(width):
            value = (value << 1) | self._bit()
        return value

    def exp_golomb(self, k: int = 0) -> int:
        zeros = 0
        while not self._bit():
            zeros += 1
            if zeros > 40:
                raise CodingError("an exp-Golomb code runs past 40 zeros: damaged table")
        x = (1 << (zeros + k)) | self.read(zeros + k)
        return x - (1 << k)

    def end(self) -> int:
        """Byte offset after the table (tables are padded to whole bytes)."""
        return self.start + (self.pos + 7) // 8


def eg_bits(values: np.ndarray, k: int) -> int:
    """Total exp-Golomb-k length of `values` (int64 >= 0)."""
    x = values + (1 << k)
    nb = np.floor(np.log2(x.astype(np.float64))).astype(np.int64) + 1
    return int((2 * nb - 1 - k).sum())


# --- entropy -----------------------------------------------------------------------------------


def entropy_bits(symbols: np.ndarray) -> float:
    """Shannon bound of the stream: n · H of its empirical (order-0) distribution, in bits."""
    symbols = np.asarray(symbols).reshape(-1)
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols.astype(np.int64))
    counts = counts[counts > 0].astype(np.float64)
    return float(-(counts * np.log2(counts / symbols.size)).sum())


def pack_varwidth(values: np.ndarray, widths: np.ndarray) -> bytes:
    """values[i] in widths[i] bits, MSB first, back to back, zero-padded to a whole byte."""
    starts = np.cumsum(widths) - widths
    bits = np.zeros(int(widths.sum()), dtype=np.uint8)
    for j in range(int(widths.max()) if widths.size else 0):  # one pass per bit position
        sel = widths > j
        bits[starts[sel] + j] = (values[sel] >> (widths[sel] - 1 - j)) & 1
    return np.packbits(bits).tobytes()


def unpack_varwidth(data: bytes, widths: np.ndarray) -> np.ndarray:
    total = int(widths.sum())
    if len(data) != (total + 7) // 8:
        raise CodingError(f"{total} extra bits take {(total + 7) // 8} bytes, found {len(data)}")
    bits = np.unpackbits(np.frombuffer(data, np.uint8), count=total).astype(np.int64)
    starts = np.cumsum(widths) - widths
    values = np.zeros(len(widths), dtype=np.int64)
    for j in range(int(widths.max()) if widths.size else 0):
        sel = widths > j
        values[sel] = (values[sel] << 1) | bits[starts[sel] + j]
    return values
