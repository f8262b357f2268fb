"""Lossless coding of symbol streams: canonical Huffman, rANS, fixed width, and index gaps.

- Huffman, "A Method for the Construction of Minimum-Redundancy Codes", Proc. IRE 1952, in the
  canonical form (Schwartz & Kallick 1964) so that only the code lengths are stored; Deep
  Compression (Han, Mao, Dally, ICLR 2016) codes both its cluster indices and its index gaps so.
  Lengths are limited to 16 bits (frequencies halved until they fit, as zlib-style coders do).
- Asymmetric numeral systems (Duda 2013), through `constriction` (Bamler 2022): a range-style
  coder that gets within a fraction of a percent of the entropy where Huffman loses up to a bit
  per symbol, with compact tables, bucketed tails and two contexts (`slimkit.share.ans`).
- Relative index gaps with a fixed width g, as in Deep Compression, except that an overflowing
  gap is bridged by an escape symbol (0: "skip 2^g − 1 zeros") rather than a filler zero that
  also costs a cluster index. Escape 0 keeps the rare long gaps at the top of the alphabet,
  where the rANS coder may code them as a bit-length class plus raw bits (a "tail") so that a
  layer's few thousand gaps do not need a table of hundreds of exact frequencies.

`encode_stream` writes a stream with each applicable coder and keeps the smallest; a stream is
self-delimiting (`decode_stream` returns where it ends). Every decoder checks what it reads and
raises `CodingError`, never anything else, on damaged input.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from slimkit.errors import ConfigError
from slimkit.share.ans import ans_body, ans_estimate, read_ans
from slimkit.share.bitio import (
    BitReader,
    BitWriter,
    CodingError,
    entropy_bits,
    pack_varwidth,
    read_varint,
    take,
    varint,
)

__all__ = [
    "CODERS",
    "CodingError",
    "StreamInfo",
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
MAX_ALPHABET = 1 << 17
_MAX_GAP_WIDTH = 16


def estimate_bits(symbols: np.ndarray, alphabet: int) -> float:
    """A quick estimate of the coded size of a stream (rANS with its best model), in bits."""
    return ans_estimate(symbols, alphabet)[0]


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


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """The concatenated canonical codes, MSB first, zero-padded to a whole byte."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    lens = np.asarray(lengths, dtype=np.int64)[symbols]
    if lens.size and int(lens.min()) == 0:
        raise ConfigError("huffman_encode: a symbol has no code (its count was zero)")
    return pack_varwidth(canonical_codes(lengths)[symbols], lens)


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
    w = BitWriter()
    used = np.flatnonzero(lengths)
    prev = -1
    for s in used.tolist():
        w.exp_golomb(s - prev - 1)
        w.write(int(lengths[s]) - 1, 4)
        prev = s
    return w.to_bytes()


def _read_huffman_table(buf, offset: int, used: int, alphabet: int) -> tuple[np.ndarray, int]:
    r = BitReader(buf, offset)
    lengths = np.zeros(alphabet, dtype=np.int64)
    s = -1
    for _ in range(used):
        s += r.exp_golomb() + 1
        if s >= alphabet:
            raise CodingError(f"a Huffman table names symbol {s} of an alphabet of {alphabet}")
        lengths[s] = r.read(4) + 1
    return lengths, r.end()


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
        body, table_bytes, payload_bytes = ans_body(symbols, alphabet)
        candidates.append((_stream("ans", n, alphabet, body), "ans", table_bytes, payload_bytes))
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
        data, offset = take(buf, offset, math.ceil(n * width / 8), "a fixed-width stream")
        payload_bytes = len(data)
        symbols = unpack_fixed(data, width, n)
        if n and int(symbols.max()) >= size:
            raise CodingError(f"a fixed-width stream holds a symbol beyond its alphabet {size}")
    elif coder == "huffman":
        used, offset = read_varint(buf, offset, min(size, 1 << MAX_HUFFMAN_BITS))
        if used < 2:
            raise CodingError(f"a Huffman stream claims {used} used symbols: damaged")
        table_start = offset
        lengths, offset = _read_huffman_table(buf, offset, used, size)
        table_bytes = offset - table_start
        length, offset = read_varint(buf, offset, len(buf))
        data, offset = take(buf, offset, length, "a Huffman payload")
        payload_bytes = len(data)
        symbols = huffman_decode(data, lengths, n)
    else:
        symbols, offset, table_bytes, payload_bytes = read_ans(buf, offset, n, size)
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
