"""Entropy coding for the .slim format: canonical Huffman, rANS, fixed width, index gaps."""

import contextlib
import itertools
import math

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.quant.pack import pack_bits
from slimkit.share.ans import (
    AnsPlan,
    _quantize,
    _raw_width,
    _read_table,
    ans_encode,
    best_plan,
    class_count,
    from_classes,
    to_classes,
)
from slimkit.share.bitio import BitReader
from slimkit.share.coding import (
    CODERS,
    MAX_HUFFMAN_BITS,
    CodingError,
    canonical_codes,
    decode_gaps,
    decode_stream,
    encode_gaps,
    encode_stream,
    entropy_bits,
    huffman_decode,
    huffman_encode,
    huffman_lengths,
    pack_fixed,
    read_varint,
    unpack_fixed,
    varint,
)


def skewed(n: int, alphabet: int, seed: int = 0, concentration: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(alphabet, concentration))
    return rng.choice(alphabet, size=n, p=p)


def counts(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    return np.bincount(symbols, minlength=alphabet)


# --- varints and fixed width ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**62 - 1])
def test_varint_round_trip(value):
    data = varint(value)
    assert read_varint(data, 0) == (value, len(data))
    assert len(data) == max(1, math.ceil(value.bit_length() / 7))


def test_varint_errors():
    with pytest.raises(CodingError, match="truncated"):
        read_varint(b"\x80\x80", 0)
    with pytest.raises(CodingError, match="exceeds the limit 10"):
        read_varint(varint(11), 0, limit=10)
    with pytest.raises(CodingError, match="9 bytes"):
        read_varint(b"\xff" * 12, 0)


@pytest.mark.parametrize("width", [1, 3, 5, 8])
def test_fixed_width_is_the_pack_layout(width):
    symbols = np.random.default_rng(width).integers(0, 1 << width, 101)
    assert pack_fixed(symbols, width) == pack_bits(symbols, width).tobytes()


@pytest.mark.parametrize("width", [9, 13, 17, 24])
def test_fixed_width_round_trip_beyond_8_bits(width):
    symbols = np.random.default_rng(width).integers(0, 1 << width, 77)
    data = pack_fixed(symbols, width)
    assert len(data) == math.ceil(77 * width / 8)
    assert np.array_equal(unpack_fixed(data, width, 77), symbols)


# --- Huffman -------------------------------------------------------------------------------------


def is_prefix_free(codes: np.ndarray, lengths: np.ndarray) -> bool:
    words = sorted(format(int(codes[s]), f"0{int(lengths[s])}b") for s in np.flatnonzero(lengths))
    # In sorted order, a word that is a prefix of another sorts right before one it prefixes.
    return all(not b.startswith(a) for a, b in itertools.pairwise(words))


@pytest.mark.parametrize(("alphabet", "seed"), [(2, 0), (5, 1), (33, 2), (256, 3), (1000, 4)])
def test_huffman_is_prefix_free_complete_and_within_one_bit_of_entropy(alphabet, seed):
    symbols = skewed(20_000, alphabet, seed)
    c = counts(symbols, alphabet)
    lengths = huffman_lengths(c)
    codes = canonical_codes(lengths)
    used = np.flatnonzero(c)
    assert np.array_equal(np.flatnonzero(lengths), used)
    assert is_prefix_free(codes, lengths)
    assert sum(2.0 ** -int(lengths[s]) for s in used) == 1.0  # Kraft: a complete code
    h = entropy_bits(symbols) / len(symbols)
    mean = float((c * lengths).sum()) / len(symbols)
    assert h <= mean < h + 1
    data = huffman_encode(symbols, lengths)
    assert len(data) == math.ceil(float((c * lengths).sum()) / 8)
    assert np.array_equal(huffman_decode(data, lengths, len(symbols)), symbols)


def test_huffman_lengths_are_limited_and_codes_canonical():
    fibonacci = [1, 1]
    while len(fibonacci) < 30:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    assert huffman_lengths(np.array(fibonacci), max_bits=64).max() == 29  # unlimited: deep
    lengths = huffman_lengths(np.array(fibonacci))
    assert lengths.max() <= MAX_HUFFMAN_BITS
    assert sum(2.0 ** -int(n) for n in lengths) == 1.0
    assert is_prefix_free(canonical_codes(lengths), lengths)
    # Canonical: ordered by (length, symbol), consecutive values.
    assert canonical_codes(np.array([2, 1, 3, 3])).tolist() == [0b10, 0b0, 0b110, 0b111]


def test_huffman_decode_rejects_damage():
    symbols = skewed(500, 20)
    lengths = huffman_lengths(counts(symbols, 20))
    data = huffman_encode(symbols, lengths)
    with pytest.raises(CodingError, match="truncated"):
        huffman_decode(data[: len(data) // 2], lengths, len(symbols))
    with pytest.raises(CodingError, match="after its last symbol"):
        huffman_decode(data + b"\0", lengths, len(symbols))
    incomplete = lengths.copy()
    incomplete[np.flatnonzero(lengths)[0]] += 1
    with pytest.raises(CodingError, match="complete prefix code"):
        huffman_decode(data, incomplete, len(symbols))


# --- streams and the coder choice ----------------------------------------------------------------


def test_ans_is_within_one_percent_of_entropy():
    symbols = skewed(100_000, 256, seed=5)
    data, info = encode_stream(symbols, 256, ("fixed", "ans"))
    assert info.coder == "ans"
    assert info.bits <= 1.01 * info.entropy_bits  # table and stream header included
    huffman = encode_stream(symbols, 256, ("fixed", "huffman"))[1]
    assert info.bits < huffman.bits
    out, end, _ = decode_stream(data)
    assert end == len(data) and np.array_equal(out, symbols)


def test_ans_codes_the_stored_integer_table_exactly():
    """The model constriction builds is the stored table itself (not a float re-rounding): the
    payload is the stored table's ideal cross-entropy plus the coder's final state, no more."""
    symbols = skewed(50_000, 40, seed=6)
    c = counts(symbols, 40)
    table, payload, raw = ans_encode(symbols, 40, AnsPlan(tail=40))  # one class per symbol
    assert raw == b""
    reader = BitReader(table, 0)
    assert (reader.exp_golomb(), reader.exp_golomb()) == (0, 0)  # no tail, no split
    stored = _read_table(reader, 40)
    freq = _quantize(stored)
    used = np.flatnonzero(c)
    assert np.array_equal(np.flatnonzero(freq), used) and freq.sum() == 1 << 24
    ideal = float((c[used] * (24 - np.log2(freq[used]))).sum())
    assert ideal <= 8 * len(payload) <= ideal + 40
    assert ideal <= 1.001 * entropy_bits(symbols)  # the rounded counts cost under 0.1%


def test_ans_tables_are_compact():
    """A table stores each count to about ½·log2(count) bits, not the 24-bit frequencies it
    stands for, so it shrinks with the stream."""
    symbols = skewed(100_000, 16, seed=3)
    sizes = [len(ans_encode(symbols[:n], 16, AnsPlan(tail=16))[0]) for n in (100_000, 2_000)]
    assert sizes[0] <= 16 * 10 / 8 and sizes[1] <= 16 * 7 / 8


@pytest.mark.parametrize("msb", [0, 1, 2])
@pytest.mark.parametrize("tail", [1, 2, 8, 64])
def test_bit_length_classes_invert_exactly(tail, msb):
    alphabet = 3000
    symbols = np.arange(alphabet)
    classes, raw, width = to_classes(symbols, tail, msb)
    assert np.all(np.diff(classes) >= 0) and classes[-1] == class_count(alphabet, tail, msb) - 1
    assert np.array_equal(classes[:tail], symbols[:tail])  # below the tail a symbol is its class
    assert np.all(raw < np.left_shift(1, width))
    back_width, top = _raw_width(classes, tail, msb)
    assert np.array_equal(back_width, width)
    assert np.array_equal(from_classes(classes, raw, width, top, tail), symbols)


def markov(n: int, seed: int = 0) -> np.ndarray:
    """Symbols whose distribution depends on whether the previous one is >= 8 (as the cluster
    indices of neighbouring kernel taps do)."""
    rng = np.random.default_rng(seed)
    low, high = rng.dirichlet(np.full(16, 0.5)), rng.dirichlet(np.full(16, 0.5))
    out = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        out[i] = rng.choice(16, p=high if out[i - 1] >= 8 else low)
    return out


def test_two_contexts_code_below_the_order0_entropy():
    symbols = markov(20_000)
    assert best_plan(symbols, 16).split == 8
    data, info = encode_stream(symbols, 16, ("fixed", "ans"))
    assert info.coder == "ans" and info.bits < 0.97 * info.entropy_bits
    out, end, _ = decode_stream(data)
    assert end == len(data) and np.array_equal(out, symbols)


@pytest.mark.parametrize("coder", ["fixed", "huffman", "ans"])
@pytest.mark.parametrize(("n", "alphabet"), [(1, 2), (2, 3), (1000, 2), (3000, 17), (5000, 300)])
def test_every_coder_round_trips(coder, n, alphabet):
    symbols = skewed(n, alphabet, seed=n)
    symbols[:2] = [0, alphabet - 1][: min(n, 2)]  # at least two symbols in use
    data, info = encode_stream(symbols, alphabet, (coder, "fixed"))
    assert info.coder in (coder, "fixed")
    assert info.nbytes == len(data)
    out, end, back = decode_stream(data + b"tail")
    assert end == len(data) and np.array_equal(out, symbols)
    assert (back.coder, back.count, back.alphabet) == (info.coder, n, alphabet)


def test_count_and_alphabet_can_be_left_to_the_reader():
    symbols = skewed(3000, 40, seed=8)
    full, _ = encode_stream(symbols, 40)
    bare, info = encode_stream(symbols, 40, store_count=False, store_alphabet=False)
    assert len(bare) == len(full) - len(varint(3000)) - len(varint(40))
    out, end, back = decode_stream(bare, count=3000, alphabet=40)
    assert end == len(bare) and np.array_equal(out, symbols)
    assert (back.coder, back.count, back.alphabet) == (info.coder, 3000, 40)


def test_smallest_coder_wins_and_constant_streams_cost_no_payload():
    flat = np.random.default_rng(0).integers(0, 16, 4000)  # uniform: nothing beats 4 bits
    assert encode_stream(flat, 16)[1].coder == "fixed"
    skew = skewed(4000, 16, seed=1, concentration=0.1)
    assert encode_stream(skew, 16)[1].coder in ("huffman", "ans")
    data, info = encode_stream(np.full(10_000, 7), 9)
    assert info.coder == "constant" and len(data) < 8
    assert np.array_equal(decode_stream(data)[0], np.full(10_000, 7))
    data, info = encode_stream(np.zeros(0, dtype=np.int64), 4)
    assert decode_stream(data)[0].size == 0


def test_encode_stream_rejects_bad_input():
    with pytest.raises(ConfigError, match=r"symbols must be in \[0, 4\)"):
        encode_stream(np.array([0, 4]), 4)
    with pytest.raises(ConfigError, match="must include 'fixed'"):
        encode_stream(np.array([0, 1]), 2, ("huffman",))
    with pytest.raises(ConfigError, match="must include 'fixed'"):
        encode_stream(np.array([0, 1]), 2, ("fixed", "lzw"))


def test_ans_tail_codes_rare_large_symbols_as_buckets_plus_bits():
    """Gap-like streams: a few thousand symbols, hundreds of distinct rare large values."""
    rng = np.random.default_rng(7)
    symbols = np.minimum(rng.geometric(0.03, 5000), 1023)
    data, info = encode_stream(symbols, 1024, ("fixed", "ans"))
    out, end, _ = decode_stream(data)
    assert end == len(data) and np.array_equal(out, symbols)
    plan = best_plan(symbols, 1024)
    table, payload, raw = ans_encode(symbols, 1024, plan)
    exact = ans_encode(symbols, 1024, AnsPlan(tail=1024))
    assert plan.tail < 1024 and raw and len(table) < len(exact[0]) / 3
    assert len(table + payload + raw) < sum(map(len, exact))
    assert info.bits < 1.03 * info.entropy_bits


def test_damaged_streams_raise_coding_error_only():
    """Streams on their own have no checksum: any damage must still end in CodingError (or, at
    worst, other symbols), never in another exception."""
    rng = np.random.default_rng(0)
    streams = [
        encode_stream(skewed(2000, a, seed=a), a, (c, "fixed"))[0]
        for a in (2, 12, 200)
        for c in CODERS[1:]
    ]
    streams.append(encode_stream(markov(2000), 16, ("fixed", "ans"))[0])  # two contexts
    for i in range(600):
        data = bytearray(streams[i % len(streams)])
        if i % 3 == 0:
            data = data[: rng.integers(0, len(data))]
        else:
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(0, len(data))] ^= 1 << rng.integers(0, 8)
        with contextlib.suppress(CodingError):
            decode_stream(bytes(data), max_count=4000)


# --- gaps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 8, 16])
def test_gaps_round_trip_with_escapes(width):
    rng = np.random.default_rng(width)
    numel = 200_000
    positions = np.sort(rng.choice(numel, 900, replace=False))
    positions[-1] = numel - 1
    symbols = encode_gaps(positions, width)
    run = (1 << width) - 1
    gaps = np.diff(positions, prepend=-1) - 1
    assert int((symbols == 0).sum()) == int((gaps // run).sum())
    assert np.array_equal(decode_gaps(symbols, width, numel), positions)


def test_gaps_of_a_dense_run_and_of_nothing():
    assert encode_gaps(np.arange(5), 3).tolist() == [1, 1, 1, 1, 1]
    assert encode_gaps(np.array([9]), 2).tolist() == [0, 0, 0, 1]  # 9 zeros = 3 escapes of 3
    assert decode_gaps(np.zeros(0, dtype=np.int64), 4, 10).size == 0


def test_decode_gaps_rejects_damage():
    with pytest.raises(CodingError, match="run past"):
        decode_gaps(np.array([6, 6]), 4, 10)
    with pytest.raises(CodingError, match="ends in an escape"):
        decode_gaps(np.array([1, 0]), 4, 100)
    with pytest.raises(CodingError, match="beyond 4 bits"):
        decode_gaps(np.array([16]), 4, 100)
    with pytest.raises(ConfigError, match=r"width must be in 1\.\.16"):
        encode_gaps(np.array([1]), 17)
