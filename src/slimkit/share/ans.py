"""rANS coding of a symbol stream (Duda 2013) through `constriction` (Bamler 2022), with a model
cheap enough to pay for itself on streams of a few thousand symbols.

Three choices, made per stream by estimated size and stored in the stream's table:

- tail, as JPEG XL's hybrid integers (and DEFLATE's distance codes before them): a symbol
  s >= t is coded as a class — the bit length of o = s − t + 1 and the `msb` bits after its
  leading one — and the remaining low bits of o follow raw. A gap stream uses hundreds of
  values a few times each; exact frequencies for all of them cost more than the raw bits.
- two contexts: each class is coded with one of two tables, picked by whether the previous
  class is >= `split`. Neighbouring kernel taps and the weights of one input share magnitudes,
  so consecutive cluster indices are correlated, and gaps come in runs: this can code a stream
  below its order-0 entropy.
- compact tables: a count c of bit length e + 1 is stored as e (exp-Golomb of e_max − e) and
  its top m = ⌈(e + 1 − q) / 2⌉ bits after the leading one, q chosen per table: a probability
  needs a relative precision of about 1/√c, not every bit of c (the two-part MDL cost of a
  parameter is ½·log2 n). Reader and writer turn these approximate counts into integers summing
  to 2^24 by the same integer arithmetic, and constriction gets them as exactly representable
  probabilities with `perfect=True`, so the coded bits depend on stored integers only, not on
  how a version of the library rounds floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

from slimkit.errors import ConfigError
from slimkit.share.bitio import (
    BitReader,
    BitWriter,
    CodingError,
    eg_bits,
    entropy_bits,
    pack_varwidth,
    read_varint,
    take,
    unpack_varwidth,
    varint,
)

__all__ = [
    "MAX_SYMBOLS",
    "AnsPlan",
    "ans_body",
    "ans_encode",
    "ans_estimate",
    "best_plan",
    "read_ans",
]

PRECISION = 24  # frequencies sum to 2^24, as constriction's default models
MAX_SYMBOLS = 4096  # used classes per table: a `perfect` model of more is slow to build
_MSBS = (0, 1, 2)
_Q_BITS, _E_BITS = 4, 5  # count quantization q in 0..15; bit length − 1 of a count, 0..30
_E_MAX = 30
# _BASES[msb][e]: the first class (past the tail) of bit length e + 1, 2^min(e, msb) per length
_BASES = np.array([[0, *np.cumsum([1 << min(e, m) for e in range(40)])] for m in _MSBS])


@dataclass(frozen=True)
class AnsPlan:
    """How a stream is modelled: symbols >= `tail` become a class plus raw bits (a tail at the
    alphabet size: none), keeping `msb` bits of each in the class; two tables split on whether
    the previous class is >= `split` (0: one table)."""

    tail: int
    msb: int = 0
    split: int = 0


# --- classes ------------------------------------------------------------------------------------


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of positive int64s (frexp is exact for them up to 2^53)."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64)


def to_classes(symbols: np.ndarray, tail: int, msb: int) -> tuple[np.ndarray, ...]:
    """(class, raw value, raw width) of each symbol."""
    o = symbols - tail + 1
    inside = o >= 1
    e = np.where(inside, _bit_length(np.maximum(o, 1)) - 1, 0)
    kept = np.minimum(e, msb)
    width = np.where(inside, e - kept, 0)
    top = np.right_shift(o, width)  # the leading one and `kept` bits after it
    classes = np.where(inside, tail + _BASES[msb][e] + top - np.left_shift(1, kept), symbols)
    return classes, np.where(inside, o & (np.left_shift(1, width) - 1), 0), width


def _raw_width(classes: np.ndarray, tail: int, msb: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw width, top bits of o) of each class; both 0 below the tail."""
    r = np.maximum(classes - tail, 0)
    e = np.searchsorted(_BASES[msb], r, side="right") - 1
    kept = np.minimum(e, msb)
    top = np.left_shift(1, kept) + r - _BASES[msb][e]
    inside = classes >= tail
    return np.where(inside, e - kept, 0), np.where(inside, top, 0)


def from_classes(
    classes: np.ndarray, raw: np.ndarray, width: np.ndarray, top: np.ndarray, tail: int
) -> np.ndarray:
    o = np.left_shift(top, width) | raw
    return np.where(classes >= tail, o + tail - 1, classes)


def class_count(alphabet: int, tail: int, msb: int) -> int:
    if tail >= alphabet:
        return alphabet
    return int(to_classes(np.array([alphabet - 1]), tail, msb)[0][0]) + 1


def _contexts(classes: np.ndarray, split: int) -> np.ndarray:
    """True where the previous class is >= split (the first symbol: context 0)."""
    ctx = np.zeros(len(classes), dtype=bool)
    if split:
        ctx[1:] = classes[:-1] >= split
    return ctx


# --- tables -------------------------------------------------------------------------------------


def _quantize(counts: np.ndarray) -> np.ndarray:
    """Integer frequencies summing to 2^PRECISION, each used symbol's >= 1."""
    total = 1 << PRECISION
    freq = np.maximum(counts * total // int(counts.sum()), 1) * (counts > 0)
    excess = int(freq.sum()) - total  # < 0: rounding down; > 0: the 1s given to rare symbols
    order = np.argsort(-freq, kind="stable")
    if excess < 0:
        freq[order[0]] -= excess
    while excess > 0:  # at most (used symbols) in all; taken from the largest, gently
        for s in order.tolist():
            take_ = max(min(excess, int(freq[s]) - 1, max(1, int(freq[s]) // 16)), 0)
            freq[s] -= take_
            excess -= take_
            if not excess:
                break
    return freq


def _approx(counts: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(approximate counts, e, m): bit length e + 1 and the top m bits after the leading one
    kept, the dropped bits replaced by the middle of their range."""
    e = _bit_length(counts) - 1
    m = np.clip((e + 1 - q) // 2, 0, e)
    drop = e - m
    return np.left_shift(np.right_shift(counts, drop), drop) + (np.left_shift(1, drop) >> 1), e, m


def _presence_bits(used: np.ndarray, n_classes: int) -> int:
    bits = eg_bits(np.array([len(used)]), 0)
    if 0 < len(used) < n_classes:
        bits += eg_bits(np.diff(used, prepend=-1) - 1, 0)
    return bits


def _exponents(e: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(mode, reference, codes) of the counts' bit lengths, the smaller of: 0, e_max − e
    (few large counts); 1, e_0 then the zigzagged steps e_i − e_(i−1) (a smooth histogram)."""
    d = np.diff(e)
    steps = np.concatenate([[0], np.where(d >= 0, 2 * d, -2 * d - 1)])
    below = int(e.max()) - e
    if eg_bits(steps[1:], 0) < eg_bits(below, 0):
        return 1, int(e[0]), steps
    return 0, int(e.max()), below


def _best_table(counts: np.ndarray) -> tuple[float, int]:
    """(table + coded bits, q) of one context's counts (over all classes) at its best q."""
    used = np.flatnonzero(counts)
    bits = _presence_bits(used, len(counts))
    if len(used) < 2:
        return float(bits), 0
    c = counts[used]
    best = (math.inf, 0)
    for q in range(1 << _Q_BITS):
        approx, e, m = _approx(c, q)
        full = np.zeros(len(counts), dtype=np.int64)
        full[used] = approx
        freq = _quantize(full)[used]
        coded = float((c * (PRECISION - np.log2(freq))).sum())
        mode, _, codes = _exponents(e)
        table = _Q_BITS + 1 + _E_BITS + eg_bits(codes[mode:], 0) + int(m.sum())
        best = min(best, (bits + table + coded, q))
    return best


def _write_table(w: BitWriter, counts: np.ndarray, q: int) -> np.ndarray | int | None:
    """Write one context's table; returns what `_model` needs (see `_read_table`)."""
    used = np.flatnonzero(counts)
    w.exp_golomb(len(used))
    if 0 < len(used) < len(counts):
        for skip in (np.diff(used, prepend=-1) - 1).tolist():
            w.exp_golomb(skip)
    if len(used) < 2:
        return int(used[0]) if len(used) else None
    approx, e, m = _approx(counts[used], q)
    mode, ref, codes = _exponents(e)
    w.write(q, _Q_BITS)
    w.write(mode, 1)
    w.write(ref, _E_BITS)
    for i, (ei, mi, ci) in enumerate(
        zip(e.tolist(), m.tolist(), counts[used].tolist(), strict=True)
    ):
        if i or not mode:  # the first step is the reference itself
            w.exp_golomb(int(codes[i]))
        w.write((ci >> (ei - mi)) & ((1 << mi) - 1), mi)
    full = np.zeros(len(counts), dtype=np.int64)
    full[used] = approx
    return full


def _read_table(r: BitReader, n_classes: int) -> np.ndarray | int | None:
    """One context's table: approximate counts over all classes (two or more used), the one
    class used, or None (an empty context)."""
    n_used = r.exp_golomb()
    if n_used > min(n_classes, MAX_SYMBOLS):
        raise CodingError(f"an ANS table claims {n_used} used classes of {n_classes}: damaged")
    if 0 < n_used < n_classes:
        used = np.cumsum([r.exp_golomb() + 1 for _ in range(n_used)]) - 1
        if int(used[-1]) >= n_classes:
            raise CodingError(f"an ANS table names class {used[-1]} of {n_classes}: damaged")
    else:
        used = np.arange(n_used)
    if n_used < 2:
        return int(used[0]) if n_used else None
    q, mode, ref = r.read(_Q_BITS), r.read(1), r.read(_E_BITS)
    full = np.zeros(n_classes, dtype=np.int64)
    e = ref
    for i, s in enumerate(used.tolist()):
        if not mode:
            e = ref - r.exp_golomb()
        elif i:
            z = r.exp_golomb()
            e += z // 2 if z % 2 == 0 else -(z + 1) // 2
        if not 0 <= e <= _E_MAX:
            raise CodingError(f"an ANS table has a count of {e + 1} bits: damaged")
        m = min(max((e + 1 - q) // 2, 0), e)
        drop = e - m
        full[s] = (((1 << m) | r.read(m)) << drop) + ((1 << drop) >> 1)
    return full


def _model(table: np.ndarray | int | None):
    """(constriction model, class of each model index), (None, the class) or (None, None)."""
    if not isinstance(table, np.ndarray):
        return None, table
    used = np.flatnonzero(table)
    freq = _quantize(table)[used]
    probs = freq.astype(np.float64) / float(1 << PRECISION)
    return constriction.stream.model.Categorical(probs, perfect=True), used


# --- planning -----------------------------------------------------------------------------------


def _estimate(classes: np.ndarray, width: np.ndarray, split: int) -> float:
    """Quick size estimate: entropy per context, ~3 + ½·log2(count) table bits per used class."""
    bits = float(width.sum())
    ctx = _contexts(classes, split)
    for part in (classes[~ctx], classes[ctx]) if split else (classes,):
        counts = np.bincount(part)
        counts = counts[counts > 0]
        bits += entropy_bits(part) + float((3 + 0.5 * np.log2(counts)).sum())
    return bits


def _candidates(symbols: np.ndarray, alphabet: int, keep: int) -> list[tuple[float, AnsPlan]]:
    """Plans by estimated bits: every tail and msb, then splits of the `keep` best of those."""
    tails = [alphabet] + (
        [1 << j for j in range((alphabet - 1).bit_length())] if alphabet > 16 else []
    )
    plans = []
    for tail in tails:
        for msb in _MSBS if tail < alphabet else (0,):
            classes, _, width = to_classes(symbols, tail, msb)
            if np.count_nonzero(np.bincount(classes)) <= MAX_SYMBOLS:
                plans.append((_estimate(classes, width, 0), AnsPlan(tail, msb)))
    plans.sort(key=lambda p: p[0])
    # No tail is always among them: small alphabets (cluster indices) split well without.
    for plan in {p for _, p in plans[:keep]} | ({AnsPlan(alphabet)} if keep else set()):
        classes, _, width = to_classes(symbols, plan.tail, plan.msb)
        n_classes = class_count(alphabet, plan.tail, plan.msb)
        splits = (
            range(1, n_classes)
            if n_classes <= 64
            else [1 << j for j in range(n_classes.bit_length() - 1)]
        )
        for split in splits:
            plans.append((_estimate(classes, width, split), AnsPlan(plan.tail, plan.msb, split)))
    return sorted(plans, key=lambda p: p[0])


def _exact_bits(symbols: np.ndarray, alphabet: int, plan: AnsPlan) -> float:
    """Table and ideal coded bits of a plan, raw bits included (the payload's end not)."""
    classes, _, width = to_classes(symbols, plan.tail, plan.msb)
    n_classes = class_count(alphabet, plan.tail, plan.msb)
    ctx = _contexts(classes, plan.split)
    bits = float(width.sum())
    for c in (False, True) if plan.split else (False,):
        bits += _best_table(np.bincount(classes[ctx == c], minlength=n_classes))[0]
    return bits


def ans_estimate(symbols: np.ndarray, alphabet: int) -> tuple[float, AnsPlan]:
    """(estimated bits, plan) of the best one-table model, quickly (to rank alternatives)."""
    return _candidates(np.asarray(symbols, dtype=np.int64).reshape(-1), alphabet, keep=0)[0]


def best_plan(symbols: np.ndarray, alphabet: int) -> AnsPlan:
    """The plan of the smallest stream among the best estimated ones, by its exact table."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    plans = [plan for _, plan in _candidates(symbols, alphabet, keep=4)[:8]]
    return min(plans, key=lambda plan: _exact_bits(symbols, alphabet, plan))


# --- the stream body ----------------------------------------------------------------------------


def ans_encode(
    symbols: np.ndarray, alphabet: int, plan: AnsPlan | None = None
) -> tuple[bytes, bytes, bytes]:
    """(table, payload, raw bits) of a rANS-coded stream of ints in [0, alphabet); the plan is
    chosen by estimated size unless given."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    plan = plan or best_plan(symbols, alphabet)
    if not (plan.tail >= 1 and plan.msb in _MSBS):
        raise ConfigError(f"ans_encode: bad plan {plan}")
    tail = min(plan.tail, alphabet)
    n_classes = class_count(alphabet, tail, plan.msb)
    if not 0 <= plan.split < n_classes:
        raise ConfigError(f"ans_encode: split {plan.split} is not below {n_classes} classes")
    classes, raw, width = to_classes(symbols, tail, plan.msb)
    ctx = _contexts(classes, plan.split)
    if tail & (tail - 1) and tail < alphabet:
        raise ConfigError(f"ans_encode: a tail must be a power of two, got {tail}")
    w = BitWriter()
    w.exp_golomb(0 if tail >= alphabet else tail.bit_length())
    if tail < alphabet:
        w.write(plan.msb, 2)
    w.exp_golomb(plan.split)
    models = []
    for c in (False, True) if plan.split else (False,):
        counts = np.bincount(classes[ctx == c], minlength=n_classes)
        if np.count_nonzero(counts) > MAX_SYMBOLS:
            raise ConfigError(f"ans_encode: more than {MAX_SYMBOLS} classes in one table")
        models.append(_model(_write_table(w, counts, _best_table(counts)[1])))
    coder = constriction.stream.stack.AnsCoder()
    dense = [np.full(n_classes, -1, np.int64) for _ in models]
    for d, (_, used) in zip(dense, models, strict=True):
        if isinstance(used, np.ndarray):
            d[used] = np.arange(len(used))
    if len(models) == 1 and models[0][0] is not None:
        coder.encode_reverse(dense[0][classes].astype(np.int32), models[0][0])
    elif len(models) == 2:
        index = np.where(ctx, dense[1][classes], dense[0][classes]).astype(np.int32)
        for i in range(len(classes) - 1, -1, -1):  # a stack: the last symbol goes in first
            model = models[int(ctx[i])][0]
            if model is not None:
                coder.encode_reverse(index[i : i + 1], model)
    payload = coder.get_compressed().astype("<u4").tobytes()
    # The top word's high bytes are often zero: drop them (the reader pads back to 4).
    payload = payload[: max(len(payload) - 3, 0)] + payload[-3:].rstrip(b"\0")
    return w.to_bytes(), payload, pack_varwidth(raw, width)


def ans_body(symbols: np.ndarray, alphabet: int) -> tuple[bytes, int, int]:
    """(stream body, table bytes, payload bytes): table, payload length, payload, raw bits."""
    table, payload, raw = ans_encode(symbols, alphabet)
    return table + varint(len(payload)) + payload + raw, len(table), len(payload) + len(raw)


def read_ans(buf, offset: int, n: int, alphabet: int) -> tuple[np.ndarray, int, int, int]:
    """Decode an `ans_body` of n symbols: (symbols, offset after it, table bytes, payload
    bytes)."""
    r = BitReader(buf, offset)
    tail_bits = r.exp_golomb()
    tail = alphabet if tail_bits == 0 else 1 << (tail_bits - 1)
    if tail_bits > 17 or (tail_bits and tail >= alphabet):
        raise CodingError(f"an ANS stream has a tail {tail} in an alphabet of {alphabet}: damaged")
    msb = r.read(2) if tail < alphabet else 0
    if msb not in _MSBS:
        raise CodingError(f"an ANS stream keeps {msb} bits per class: damaged")
    n_classes = class_count(alphabet, tail, msb)
    split = r.exp_golomb()
    if split >= n_classes:
        raise CodingError(f"an ANS stream splits at class {split} of {n_classes}: damaged")
    models = [_model(_read_table(r, n_classes)) for _ in range(2 if split else 1)]
    table_end = r.end()
    length, at = read_varint(buf, table_end, len(buf))
    payload, at = take(buf, at, length, "an ANS payload")
    classes = _decode(payload, models, split, n)
    width, top = _raw_width(classes, tail, msb)
    raw, end = take(buf, at, (int(width.sum()) + 7) // 8, "the raw bits of an ANS stream")
    symbols = from_classes(classes, unpack_varwidth(raw, width), width, top, tail)
    if n and int(symbols.max()) >= alphabet:
        raise CodingError(f"an ANS stream decodes beyond its alphabet {alphabet}")
    return symbols, end, table_end - offset, end - at + length


def _decode(payload: bytes, models: list, split: int, n: int) -> np.ndarray:
    words = np.frombuffer(payload + b"\0" * (-len(payload) % 4), dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        if len(models) == 1:
            model, used = models[0]
            if used is None and n:
                raise CodingError("an ANS stream has symbols but an empty table: damaged")
            classes = used[coder.decode(model, n)] if model is not None else np.full(n, used)
        else:
            classes = np.empty(n, dtype=np.int64)
            prev = 0
            tables = [(m, u.tolist() if isinstance(u, np.ndarray) else u) for m, u in models]
            for i in range(n):  # sequential: each symbol's table depends on the one before
                model, used = tables[prev >= split]
                if model is not None:
                    prev = used[coder.decode(model)]
                elif used is not None:
                    prev = used
                else:
                    raise CodingError("an ANS stream enters a context with no table: damaged")
                classes[i] = prev
        empty = coder.is_empty()
    except CodingError:
        raise
    except BaseException as e:  # constriction raises, or panics (pyo3 PanicException)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise CodingError(f"the ANS payload does not decode ({type(e).__name__})") from None
    if not empty:
        raise CodingError("the ANS payload holds more data than its symbols: damaged")
    return np.asarray(classes, dtype=np.int64)
