"""Lossless coding of symbol streams: canonical Huffman, rANS, fixed width, and index gaps.

- Huffman, "A Method for the Construction of Minimum-Redundancy Codes", Proc. IRE 1952, in the
  canonical form (Schwartz & Kallick 1964) so that only the code lengths are stored; Deep
  Compression (Han, Mao, Dally, ICLR 2016) codes both its cluster indices and its index gaps so.
  Lengths are limited to 16 bits (frequencies halved until they fit, as zlib-style coders do).
- Asymmetric numeral systems (Duda 2013), through `constriction` (Bamler 2022): a range-style
  coder that gets within a fraction of a percent of the entropy where Huffman loses up to a bit
  per symbol. The frequency table is stored as integers summing to 2^P and handed to
  constriction as exactly representable probabilities with `perfect=True`, whose optimal
  fixed-point model is then the table itself: the coded bits depend on the stored integers, not
  on how a version of the library rounds floats.
- Relative index gaps with a fixed width g, as in Deep Compression, except that an overflowing
  gap is bridged by an escape symbol (0: "skip 2^g − 1 zeros") rather than a filler zero that
  also costs a cluster index. Escape 0 keeps the rare long gaps at the top of the alphabet,
  where the rANS coder may code them as a log2 bucket plus raw bits (a "tail") so that a
  layer's few thousand gaps do not need a table of hundreds of exact frequencies.

`encode_stream` writes a stream with each applicable coder and keeps the smallest; a stream is
self-delimiting (`decode_stream` returns where it ends). Every decoder checks what it reads and
raises `CodingError`, never anything else, on damaged input.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import constriction
import numpy as np

from slimkit.errors import ConfigError, WeightsError

__all__ = [
    "CODERS",
    "CodingError",
    "StreamInfo",
    "ans_decode",
    "ans_encode",
    "canonical_codes",
    "decode_gaps",
    "decode_stream",
    "encode_gaps",
    "encode_stream",
    "entropy_bits",
    "estimate_bits",
    "huffman_decode",
    "huffman_encode",
    "huffman_lengths",
    "pack_fixed",
    "read_varint",
    "unpack_fixed",
    "varint",
]

CODERS = ("constant", "fixed", "huffman", "ans")
MAX_HUFFMAN_BITS = 16  # decoding tables of 2^16 entries
MAX_ANS_SYMBOLS = 4096  # building a `perfect` model for more is slow (≈2 s for 65,536)
MAX_ALPHABET = 1 << 17
_ANS_PRECISION = 24  # constriction's default models
_MAX_GAP_WIDTH = 16


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


def _take(buf: bytes | memoryview, offset: int, size: int, what: str) -> tuple[bytes, int]:
    if size < 0 or offset + size > len(buf):
        raise CodingError(f"{what} needs {size} bytes but {len(buf) - offset} remain: truncated")
    return bytes(buf[offset : offset + size]), offset + size


class _BitWriter:
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


class _BitReader:
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


def _eg_bits(values: np.ndarray, k: int) -> int:
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


def _counts(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    return np.bincount(symbols, minlength=alphabet).astype(np.int64)


# --- fixed width -------------------------------------------------------------------------------


def _width(alphabet: int) -> int:
    return max(1, (alphabet - 1).bit_length())


def pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    """n symbols of `width` bits in ceil(n·width/8) bytes: the `slimkit.quant.pack` layout
    (code i at stream bits i·w … i·w + w − 1, LSB first), for any width up to 32."""
    symbols = np.asarray(symbols, dtype=np.uint64).reshape(-1)
    bits = (symbols[:, None] >> np.arange(width, dtype=np.uint64)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_fixed(data: bytes, width: int, n: int) -> np.ndarray:
    need = math.ceil(n * width / 8)
    if len(data) != need:
        raise CodingError(f"{n} codes of {width} bits take {need} bytes, found {len(data)}")
    bits = np.unpackbits(np.frombuffer(data, np.uint8), count=n * width, bitorder="little")
    weights = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
    return bits.reshape(n, width).astype(np.int64) @ weights


# --- canonical Huffman -------------------------------------------------------------------------


def huffman_lengths(counts: np.ndarray, max_bits: int = MAX_HUFFMAN_BITS) -> np.ndarray:
    """Code length of each symbol (0 for unused ones), at most `max_bits`.

    Plain Huffman; if the longest code is too long, the counts are halved (rounding up, so used
    symbols stay used) and the tree is built again.
    """
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) > 1 << max_bits:
        raise ConfigError(f"huffman: {len(used)} symbols do not fit codes of {max_bits} bits")
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    weights = counts[used]
    while True:
        depth = _huffman_depths(weights.tolist())
        if max(depth) <= max_bits:
            lengths[used] = depth
            return lengths
        weights = (weights + 1) // 2


def _huffman_depths(weights: list[int]) -> list[int]:
    # Ties broken by insertion order, so the lengths do not depend on heap internals.
    heap = [(w, i, [i]) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    depth = [0] * len(weights)
    order = len(weights)
    while len(heap) > 1:
        w1, _, a = heapq.heappop(heap)
        w2, _, b = heapq.heappop(heap)
        for s in a:
            depth[s] += 1
        for s in b:
            depth[s] += 1
        heapq.heappush(heap, (w1 + w2, order, a + b if len(a) >= len(b) else b + a))
        order += 1
    return depth


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes for the lengths: in (length, symbol) order, each code is the previous
    plus one, shifted left when the length grows. Unused symbols get 0."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code = prev = 0
    for s in sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        prev = int(lengths[s])
        codes[s] = code
        code += 1
    return codes


def _pack_varwidth(values: np.ndarray, widths: np.ndarray) -> bytes:
    """values[i] in widths[i] bits, MSB first, back to back, zero-padded to a whole byte."""
    starts = np.cumsum(widths) - widths
    bits = np.zeros(int(widths.sum()), dtype=np.uint8)
    for j in range(int(widths.max()) if widths.size else 0):  # one pass per bit position
        sel = widths > j
        bits[starts[sel] + j] = (values[sel] >> (widths[sel] - 1 - j)) & 1
    return np.packbits(bits).tobytes()


def _unpack_varwidth(data: bytes, widths: np.ndarray) -> np.ndarray:
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


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """The concatenated canonical codes, MSB first, zero-padded to a whole byte."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    lens = np.asarray(lengths, dtype=np.int64)[symbols]
    if lens.size and int(lens.min()) == 0:
        raise ConfigError("huffman_encode: a symbol has no code (its count was zero)")
    return _pack_varwidth(canonical_codes(lengths)[symbols], lens)


def huffman_decode(data: bytes, lengths: np.ndarray, n: int) -> np.ndarray:
    """Decode n symbols, vectorized: every bit offset is looked up as if a code started there,
    then the chain of real code starts from offset 0 is followed by pointer doubling."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if n == 0:
        if data:
            raise CodingError("an empty Huffman stream holds payload bytes")
        return np.zeros(0, dtype=np.int64)
    top = int(lengths.max())
    codes = canonical_codes(lengths)
    used = np.flatnonzero(lengths)
    span = np.left_shift(1, top - lengths[used])
    if int(span.sum()) != 1 << top:  # Kraft sum != 1 (the encoder always writes complete codes)
        raise CodingError("the Huffman code lengths do not form a complete prefix code")
    # Canonical codes of one length are consecutive, so sorting by code lays the table out.
    order = np.argsort(codes[used] << (top - lengths[used]), kind="stable")
    table_sym = np.repeat(used[order], span[order])
    table_len = np.repeat(lengths[used][order], span[order])
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    total = len(bits)
    if total < n:
        raise CodingError(f"{len(data)} bytes cannot hold {n} Huffman codes: truncated")
    padded = np.concatenate([bits, np.zeros(top, np.uint8)]).astype(np.int32)
    window = np.zeros(total, dtype=np.int32)
    for j in range(top):
        window = (window << 1) | padded[j : j + total]
    step = table_len[window]
    jump = np.minimum(np.arange(total, dtype=np.int64) + step, total)
    jump = np.append(jump, total)  # offset `total` is a sink
    starts = np.zeros(1, dtype=np.int64)
    while len(starts) < n:
        starts = np.concatenate([starts, jump[starts]])
        if len(starts) < n:
            jump = jump[jump]
    starts = starts[:n]
    end = int(starts[-1])
    if end >= total or end + int(step[end]) > total:
        raise CodingError(f"the Huffman payload ends before its {n} symbols: truncated")
    if (end + int(step[end]) + 7) // 8 != len(data):
        raise CodingError("the Huffman payload holds bytes after its last symbol: damaged")
    return table_sym[window[starts]]


def _huffman_table(lengths: np.ndarray) -> bytes:
    w = _BitWriter()
    used = np.flatnonzero(lengths)
    prev = -1
    for s in used.tolist():
        w.exp_golomb(s - prev - 1)
        w.write(int(lengths[s]) - 1, 4)
        prev = s
    return w.to_bytes()


def _read_huffman_table(buf, offset: int, used: int, alphabet: int) -> tuple[np.ndarray, int]:
    r = _BitReader(buf, offset)
    lengths = np.zeros(alphabet, dtype=np.int64)
    s = -1
    for _ in range(used):
        s += r.exp_golomb() + 1
        if s >= alphabet:
            raise CodingError(f"a Huffman table names symbol {s} of an alphabet of {alphabet}")
        lengths[s] = r.read(4) + 1
    return lengths, r.end()


# --- rANS (constriction) -----------------------------------------------------------------------


def _quantize(counts: np.ndarray, precision: int) -> np.ndarray:
    """Integer frequencies summing to 2^precision (>= the used symbols), each used one >= 1."""
    total = 1 << precision
    freq = np.maximum(counts * total // int(counts.sum()), 1) * (counts > 0)
    excess = int(freq.sum()) - total  # < 0: rounding down; > 0: the 1s given to rare symbols
    order = np.argsort(-freq, kind="stable")
    if excess < 0:
        freq[order[0]] -= excess
    while excess > 0:  # at most (used symbols) in all; taken from the largest, gently
        for s in order.tolist():
            take = max(min(excess, int(freq[s]) - 1, max(1, int(freq[s]) // 16)), 0)
            freq[s] -= take
            excess -= take
            if not excess:
                break
    return freq


def _ans_table_bits(freq: np.ndarray, used: np.ndarray) -> tuple[int, int]:
    """(bits, best k) of the table: symbol skips in exp-Golomb-0, frequencies − 1 in EG-k."""
    skips = np.diff(used, prepend=-1) - 1
    k = np.arange(_ANS_PRECISION, dtype=np.int64)
    x = (freq[used] - 1)[:, None] + (1 << k)[None]
    nb = np.floor(np.log2(x.astype(np.float64))).astype(np.int64) + 1
    costs = (2 * nb - 1 - k[None]).sum(0)
    best = int(np.argmin(costs))
    return _eg_bits(skips, 0) + 10 + int(costs[best]), best


def _ans_model(freq_used: np.ndarray, precision: int):
    probs = freq_used.astype(np.float64) / float(1 << precision)
    return constriction.stream.model.Categorical(probs, perfect=True)


def _classes(symbols: np.ndarray, tail: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, extra value, extra width) of each symbol: below `tail` a symbol is its own class;
    from `tail` on, offset o = s − tail falls in bucket b with o + 1 in [2^b, 2^(b+1)), class
    tail + b, and the b low bits of o + 1 follow raw."""
    offset = symbols - tail + 1
    inside = offset >= 1
    width = np.where(inside, np.floor(np.log2(np.maximum(offset, 1))).astype(np.int64), 0)
    classes = np.where(inside, tail + width, symbols)
    extra = np.where(inside, offset - (1 << width), 0)
    return classes, extra, width


def _tail_classes(alphabet: int, tail: int) -> int:
    return alphabet if tail >= alphabet else tail + (alphabet - tail).bit_length()


def _tail_estimate(symbols: np.ndarray, alphabet: int) -> tuple[float, int]:
    """(estimated bits, tail start) of the cheapest tail: entropy of the classes, their extra
    bits and ~12 bits of table per class used; a tail at `alphabet` means none."""
    best = (math.inf, alphabet)
    for tail in [alphabet] + [1 << j for j in range(max(alphabet - 1, 1).bit_length())]:
        if tail > alphabet or (tail < alphabet and alphabet <= 16):
            continue
        classes, _, width = _classes(symbols, tail)
        used = int(np.count_nonzero(np.bincount(classes)))
        cost = entropy_bits(classes) + float(width.sum()) + 12 * used
        best = min(best, (cost, tail))
    return best


def _best_tail(symbols: np.ndarray, alphabet: int) -> int:
    return _tail_estimate(symbols, alphabet)[1]


def estimate_bits(symbols: np.ndarray, alphabet: int) -> float:
    """A quick estimate of the coded size of a stream (rANS with its best tail), in bits."""
    return _tail_estimate(np.asarray(symbols, dtype=np.int64).reshape(-1), alphabet)[0]


def ans_encode(
    symbols: np.ndarray, alphabet: int, tail: int | None = None
) -> tuple[bytes, bytes, bytes]:
    """(table, payload, extra bits) of a rANS-coded stream.

    With a `tail` below the alphabet, rare large symbols are coded as their log2 bucket plus raw
    bits (as DEFLATE codes distances), which keeps the table small when a stream of a few
    thousand symbols uses hundreds of values; None picks it by estimated size. The frequency
    precision is then chosen by total size.
    """
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    tail = _best_tail(symbols, alphabet) if tail is None else tail
    classes, extra, width = _classes(symbols, tail)
    counts = np.bincount(classes, minlength=_tail_classes(alphabet, tail)).astype(np.int64)
    used = np.flatnonzero(counts)
    if not 2 <= len(used) <= MAX_ANS_SYMBOLS:
        raise ConfigError(f"ans_encode: needs 2..{MAX_ANS_SYMBOLS} used classes, got {len(used)}")
    best = None
    low = max(len(used) - 1, 1).bit_length()
    for p in range(low, _ANS_PRECISION + 1):
        freq = _quantize(counts, p)
        coded = float((counts[used] * (p - np.log2(freq[used]))).sum())
        table, k = _ans_table_bits(freq, used)
        if best is None or coded + table < best[0]:
            best = (coded + table, p, k, freq)
    _, precision, k, freq = best
    w = _BitWriter()
    w.write(precision, 5)
    w.write(k, 5)
    prev = -1
    for c in used.tolist():
        w.exp_golomb(c - prev - 1)
        w.exp_golomb(int(freq[c]) - 1, k)
        prev = c
    dense = np.full(len(counts), -1, dtype=np.int64)
    dense[used] = np.arange(len(used))
    coder = constriction.stream.stack.AnsCoder()
    model = _ans_model(freq[used] << (_ANS_PRECISION - precision), _ANS_PRECISION)
    coder.encode_reverse(dense[classes].astype(np.int32), model)
    payload = coder.get_compressed().astype("<u4").tobytes()
    # The top word's high bytes are often zero: drop them (the decoder pads back to 4).
    payload = payload[: max(len(payload) - 3, 0)] + payload[-3:].rstrip(b"\0") if payload else b""
    extras = _pack_varwidth(extra, width) if tail < alphabet else b""
    return varint(tail) + w.to_bytes(), payload, extras


def _read_ans_table(buf, offset: int, used: int, alphabet: int):
    r = _BitReader(buf, offset)
    precision = r.read(5)
    k = r.read(5)
    if not 1 <= precision <= _ANS_PRECISION or k >= _ANS_PRECISION:
        raise CodingError(f"an ANS table has precision {precision} and order {k}: damaged")
    symbols = np.zeros(used, dtype=np.int64)
    freq = np.zeros(used, dtype=np.int64)
    s = -1
    for i in range(used):
        s += r.exp_golomb() + 1
        if s >= alphabet:
            raise CodingError(f"an ANS table names symbol {s} of an alphabet of {alphabet}")
        symbols[i] = s
        freq[i] = r.exp_golomb(k) + 1
    if int(freq.sum()) != 1 << precision:
        raise CodingError("the ANS frequencies do not add up to their precision: damaged")
    return symbols, freq, precision, r.end()


def ans_decode(payload: bytes, symbols: np.ndarray, freq: np.ndarray, precision: int, n: int):
    """Decode n symbols of a rANS stream whose used symbols and frequencies are given."""
    padded = payload + b"\0" * (-len(payload) % 4)
    words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
    model = _ans_model(freq << (_ANS_PRECISION - precision), _ANS_PRECISION)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        dense = coder.decode(model, n)
        empty = coder.is_empty()
    except BaseException as e:  # constriction raises, or panics (pyo3 PanicException)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise CodingError(f"the ANS payload does not decode ({type(e).__name__})") from None
    if not empty:
        raise CodingError("the ANS payload holds more data than its symbols: damaged")
    return symbols[np.asarray(dense, dtype=np.int64)]


# --- streams -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamInfo:
    """What one coded stream holds and costs."""

    coder: str
    count: int  # symbols
    alphabet: int
    used: int  # distinct symbols
    nbytes: int  # the whole stream: coder byte, counts, table and payload
    table_bytes: int  # the coding table (a constant stream: its value)
    payload_bytes: int  # the coded symbols alone
    entropy_bits: float  # Shannon bound of its symbols (order 0)

    @property
    def bits(self) -> int:
        return 8 * self.nbytes


def encode_stream(
    symbols: np.ndarray,
    alphabet: int,
    coders: tuple[str, ...] = CODERS,
    *,
    store_count: bool = True,
    store_alphabet: bool = True,
) -> tuple[bytes, StreamInfo]:
    """Code `symbols` (ints in [0, alphabet)) with every allowed coder that applies and keep
    the smallest. "constant" applies when at most one symbol value is used, "fixed" always.

    A stream starts with its coder, then its symbol count and alphabet size unless the reader
    knows them (store_count/store_alphabet=False: pass count=/alphabet= to `decode_stream`).
    """

    def _stream(coder: str, n: int, alphabet: int, body: bytes) -> bytes:
        count = varint(n) if store_count else b""
        size = varint(alphabet) if store_alphabet else b""
        return bytes([CODERS.index(coder)]) + count + size + body

    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if not 1 <= alphabet <= MAX_ALPHABET:
        raise ConfigError(f"encode_stream: alphabet must be in 1..{MAX_ALPHABET}, got {alphabet}")
    if symbols.size and (int(symbols.min()) < 0 or int(symbols.max()) >= alphabet):
        raise ConfigError(f"encode_stream: symbols must be in [0, {alphabet})")
    unknown = [c for c in coders if c not in CODERS]
    if unknown or "fixed" not in coders:
        raise ConfigError(f"coders must include 'fixed' and be among {CODERS}, got {coders}")
    n = len(symbols)
    counts = _counts(symbols, alphabet)
    used = np.flatnonzero(counts)
    candidates: list[tuple[bytes, str, int, int]] = []  # (stream, coder, table, payload)
    if "constant" in coders and len(used) <= 1:
        value = varint(int(used[0]) if len(used) else 0)
        candidates.append((_stream("constant", n, alphabet, value), "constant", len(value), 0))
    payload = pack_fixed(symbols, _width(alphabet))
    candidates.append((_stream("fixed", n, alphabet, payload), "fixed", 0, len(payload)))
    if "huffman" in coders and 2 <= len(used) <= 1 << MAX_HUFFMAN_BITS:
        lengths = huffman_lengths(counts)
        table, payload = _huffman_table(lengths), huffman_encode(symbols, lengths)
        body = varint(len(used)) + table + varint(len(payload)) + payload
        candidates.append(
            (_stream("huffman", n, alphabet, body), "huffman", len(table), len(payload))
        )
    if "ans" in coders and len(used) >= 2:
        tail = _best_tail(symbols, alphabet)
        classes = _classes(symbols, tail)[0]
        used_classes = int(np.count_nonzero(np.bincount(classes)))
        if 2 <= used_classes <= MAX_ANS_SYMBOLS:
            table, payload, extras = ans_encode(symbols, alphabet, tail)
            body = varint(used_classes) + table + varint(len(payload)) + payload + extras
            stream = _stream("ans", n, alphabet, body)
            candidates.append((stream, "ans", len(table), len(payload) + len(extras)))
    data, coder, table_bytes, payload_bytes = min(candidates, key=lambda c: len(c[0]))
    info = StreamInfo(
        coder, n, alphabet, len(used), len(data), table_bytes, payload_bytes, entropy_bits(symbols)
    )
    return data, info


def decode_stream(
    buf: bytes | memoryview,
    offset: int = 0,
    *,
    max_count: int = 1 << 31,
    count: int | None = None,
    alphabet: int | None = None,
) -> tuple[np.ndarray, int, StreamInfo]:
    """(symbols int64, offset after the stream, its StreamInfo). `max_count` bounds the symbol
    count a damaged stream could claim; `count` and `alphabet`, when given, are the ones the
    writer left out (`encode_stream(store_count=False, store_alphabet=False)`)."""
    start = offset
    if offset >= len(buf):
        raise CodingError("data ends where a coded stream should start: truncated")
    coder_id = buf[offset]
    if coder_id >= len(CODERS):
        raise CodingError(f"unknown coder {coder_id} (this slimkit knows 0..{len(CODERS) - 1})")
    coder = CODERS[coder_id]
    offset += 1
    if count is None:
        n, offset = read_varint(buf, offset, max_count)
    else:
        n = count
    if alphabet is None:
        size, offset = read_varint(buf, offset, MAX_ALPHABET)
    else:
        size = alphabet
    if not 1 <= size <= MAX_ALPHABET:
        raise CodingError(f"a stream's alphabet is {size}, not in 1..{MAX_ALPHABET}")
    table_bytes = payload_bytes = 0
    if coder == "constant":
        value, end = read_varint(buf, offset, size - 1)
        table_bytes = end - offset
        symbols, offset = np.full(n, value, dtype=np.int64), end
    elif coder == "fixed":
        width = _width(size)
        data, offset = _take(buf, offset, math.ceil(n * width / 8), "a fixed-width stream")
        payload_bytes = len(data)
        symbols = unpack_fixed(data, width, n)
        if n and int(symbols.max()) >= size:
            raise CodingError(f"a fixed-width stream holds a symbol beyond its alphabet {size}")
    else:
        used, offset = read_varint(buf, offset, min(size, 1 << MAX_HUFFMAN_BITS))
        if used < 2:
            raise CodingError(f"a {coder} stream claims {used} used symbols: damaged")
        table_start = offset
        if coder == "huffman":
            lengths, offset = _read_huffman_table(buf, offset, used, size)
        else:
            if used > MAX_ANS_SYMBOLS:
                raise CodingError(f"an ANS stream claims {used} used symbols: damaged")
            tail, offset = read_varint(buf, offset, size)
            if tail < 1:
                raise CodingError("an ANS stream has a tail at 0: damaged")
            classes = _tail_classes(size, tail)
            syms, freq, precision, offset = _read_ans_table(buf, offset, used, classes)
        table_bytes = offset - table_start
        length, offset = read_varint(buf, offset, len(buf))
        data, offset = _take(buf, offset, length, f"a {coder} payload")
        payload_bytes = len(data)
        if coder == "huffman":
            symbols = huffman_decode(data, lengths, n)
        else:
            symbols = ans_decode(data, syms, freq, precision, n)
            if tail < size:
                width = np.maximum(symbols - tail, 0)
                need = (int(width.sum()) + 7) // 8
                extras, offset = _take(buf, offset, need, "the extra bits of an ANS stream")
                payload_bytes += need
                extra = _unpack_varwidth(extras, width)
                symbols = np.where(symbols >= tail, tail - 1 + (1 << width) + extra, symbols)
                if n and int(symbols.max()) >= size:
                    raise CodingError(f"an ANS stream decodes beyond its alphabet {size}")
    info = StreamInfo(
        coder,
        n,
        size,
        int(np.count_nonzero(np.bincount(symbols))) if n else 0,
        offset - start,
        table_bytes,
        payload_bytes,
        entropy_bits(symbols),
    )
    return symbols, offset, info


# --- index gaps --------------------------------------------------------------------------------


def encode_gaps(positions: np.ndarray, width: int) -> np.ndarray:
    """Symbols in [0, 2^width) for sorted, distinct flat positions: each entry is r + 1, r the
    zeros skipped since the previous entry (r < 2^width − 1), preceded by one escape 0 per
    2^width − 1 zeros that do not fit. Zeros after the last entry are not coded."""
    if not 1 <= width <= _MAX_GAP_WIDTH:
        raise ConfigError(f"encode_gaps: width must be in 1..{_MAX_GAP_WIDTH}, got {width}")
    positions = np.asarray(positions, dtype=np.int64)
    run = (1 << width) - 1
    gaps = np.diff(positions, prepend=-1) - 1
    escapes, rest = np.divmod(gaps, run)
    out = np.zeros(len(positions) + int(escapes.sum()), dtype=np.int64)
    out[np.cumsum(escapes + 1) - 1] = rest + 1
    return out


def decode_gaps(symbols: np.ndarray, width: int, numel: int) -> np.ndarray:
    """Flat positions from `encode_gaps` symbols, checked to lie in [0, numel)."""
    if not 1 <= width <= _MAX_GAP_WIDTH:
        raise CodingError(f"gap width {width} is not in 1..{_MAX_GAP_WIDTH}: damaged")
    symbols = np.asarray(symbols, dtype=np.int64)
    run = (1 << width) - 1
    if len(symbols) and (int(symbols.min()) < 0 or int(symbols.max()) > run):
        raise CodingError(f"gap symbols beyond {width} bits: damaged")
    entry = symbols != 0
    if len(symbols) and not entry[-1]:
        raise CodingError("the gap stream ends in an escape: damaged")
    ends = np.cumsum(np.where(entry, symbols, run)) - 1
    positions = ends[entry]
    if len(positions) and int(positions[-1]) >= numel:
        raise CodingError(f"index gaps run past the tensor's {numel} entries: damaged")
    return positions
