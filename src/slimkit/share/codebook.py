"""A `.slim` codebook: the centroids of one shared tensor, stored in increasing order.

Either raw fp16/fp32 values, or delta-coded when that is smaller: each value's bit pattern
mapped to an increasing integer (sign-magnitude to two's complement), the first in 16/32 bits
plus 2^15 or 2^31, an exp-Golomb order k in 5 bits, then each step − 1 in EG-k, padded to a
byte. Centroids that are not increasing (NaNs) stay raw. Damaged input raises `CodingError`.
"""

from __future__ import annotations

import numpy as np

from slimkit.share.bitio import BitReader, BitWriter, CodingError, eg_bits

__all__ = ["pack_codebook", "raw_codebook", "read_codebook"]


def raw_codebook(centroids: np.ndarray, half: bool) -> bytes:
    """The centroids as little-endian fp16 or fp32 values."""
    return centroids.astype("<f2" if half else "<f4").tobytes()


def pack_codebook(centroids: np.ndarray, half: bool) -> tuple[bytes, bool]:
    """(bytes, delta-coded) of increasing centroids: delta-coded (see the layout above) when
    that is smaller than the raw fp16/fp32 values."""
    raw = raw_codebook(centroids, half)
    bits = 16 if half else 32
    sign = 1 << (bits - 1)
    pattern = np.frombuffer(raw, "<u2" if half else "<u4").astype(np.int64)
    rising = np.where(pattern & sign, -(pattern & (sign - 1)) - 1, pattern)
    steps = np.diff(rising) - 1
    if len(rising) < 2 or int(steps.min()) < 0:  # NaNs break the order: keep the raw values
        return raw, False
    k = min(range(bits), key=lambda k: eg_bits(steps, k))
    w = BitWriter()
    w.write(int(rising[0]) + sign, bits)
    w.write(k, 5)
    for step in steps.tolist():
        w.exp_golomb(step, k)
    coded = w.to_bytes()
    return (coded, True) if len(coded) < len(raw) else (raw, False)


def read_codebook(
    payload: memoryview, offset: int, u: int, half: bool, delta: bool
) -> tuple[np.ndarray, int]:
    """(u centroids as fp32, offset after them), read from `payload` at `offset`."""
    if not delta:
        end = offset + u * (2 if half else 4)
        if end > len(payload):
            raise CodingError("the codebook is cut short")
        return np.frombuffer(payload[offset:end], "<f2" if half else "<f4").astype(np.float32), end
    bits = 16 if half else 32
    sign = 1 << (bits - 1)
    r = BitReader(payload, offset)
    rising = [r.read(bits) - sign]
    k = r.read(5)
    if k >= bits:
        raise CodingError(f"the codebook has exp-Golomb order {k}")
    for _ in range(u - 1):
        rising.append(rising[-1] + r.exp_golomb(k) + 1)
    if rising[-1] >= sign:
        raise CodingError("the codebook runs past the largest float")
    values = np.array(rising, dtype=np.int64)
    pattern = np.where(values < 0, (-values - 1) | sign, values)
    book = pattern.astype("<u2" if half else "<u4").view("<f2" if half else "<f4")
    return book.astype(np.float32), r.end()
