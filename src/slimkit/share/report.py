"""What a `.slim` file spends, tensor by tensor, in the terms of Deep Compression's Table 2 —
and what its Shannon bound covers and what the file spends beyond it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from slimkit.share.coding import StreamInfo

__all__ = ["CompressionReport", "TensorReport"]


@dataclass(frozen=True)
class TensorReport:
    """One shared tensor of a `.slim` file, in the terms of Deep Compression's Table 2."""

    name: str
    shape: list[int]
    numel: int
    kept: int
    bits: int  # b: 2^b clusters were trained
    clusters: int  # distinct centroids stored (used ones)
    codebook_bytes: int
    codebook_dtype: str
    gap_width: int  # 0: all entries kept, no positions stored
    scan: str  # "row" or "column"
    gaps: StreamInfo | None
    index: StreamInfo | None
    section_bytes: int  # the whole section: framing, codebook, streams, checksums

    @property
    def kept_percent(self) -> float:
        return 100.0 * self.kept / self.numel if self.numel else 0.0

    @property
    def weight_bits_shared(self) -> float:
        """Bits of a kept weight's cluster index before coding (log2 of the clusters)."""
        return float(max(self.clusters - 1, 1).bit_length()) if self.clusters else 0.0

    @property
    def weight_bits_coded(self) -> float:
        return self.index.bits / self.kept if self.index and self.kept else 0.0

    @property
    def weight_bits_bound(self) -> float:
        return self.index.entropy_bits / self.kept if self.index and self.kept else 0.0

    @property
    def index_bits_fixed(self) -> float:
        """Bits of position per kept weight with fixed-width gaps (escapes included)."""
        return self.gaps.count * self.gap_width / self.kept if self.gaps and self.kept else 0.0

    @property
    def index_bits_coded(self) -> float:
        return self.gaps.bits / self.kept if self.gaps and self.kept else 0.0

    @property
    def index_bits_bound(self) -> float:
        return self.gaps.entropy_bits / self.kept if self.gaps and self.kept else 0.0

    @property
    def rate_shared(self) -> float:
        """Compression of the tensor before coding: 32·n over fixed-width indices, gaps and the
        codebook."""
        bits = self.kept * (self.weight_bits_shared + self.index_bits_fixed)
        return 32 * self.numel / (bits + 8 * self.codebook_bytes) if self.numel else 0.0

    @property
    def rate_coded(self) -> float:
        """Compression of the tensor as stored: 32·n over its whole section."""
        return 32 * self.numel / (8 * self.section_bytes) if self.section_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in (
            "kept_percent",
            "weight_bits_shared",
            "weight_bits_coded",
            "weight_bits_bound",
            "index_bits_fixed",
            "index_bits_coded",
            "index_bits_bound",
            "rate_shared",
            "rate_coded",
        ):
            d[name] = getattr(self, name)
        return d


@dataclass(frozen=True)
class CompressionReport:
    """A `.slim` file's sizes: per shared tensor, then header, metadata and raw tensors."""

    path: str
    file_bytes: int
    dense_bytes: int  # every float tensor of the model as fp32
    header_bytes: int
    metadata_bytes: int
    raw_bytes: int
    tensors: list[TensorReport] = field(default_factory=list)
    decode_s: float = 0.0  # time to read and decode the file (no model built)

    @property
    def compression(self) -> float:
        return self.dense_bytes / self.file_bytes if self.file_bytes else 0.0

    def _streams(self) -> list[StreamInfo]:
        return [s for t in self.tensors for s in (t.gaps, t.index) if s is not None]

    @property
    def coded_bits(self) -> int:
        """Bits of all coded streams (gaps and indices), tables and stream headers included."""
        return sum(s.bits for s in self._streams())

    @property
    def payload_bits(self) -> int:
        """Bits of the coded symbols alone (rANS raw tail bits included): `coded_bits` less
        tables and stream headers."""
        return sum(8 * s.payload_bytes for s in self._streams())

    @property
    def table_bits(self) -> int:
        """Bits of the streams' coding tables (Huffman code lengths, rANS frequencies)."""
        return sum(8 * s.table_bytes for s in self._streams())

    @property
    def bound_bits(self) -> float:
        """The Shannon bound: the order-0 entropy of every gap and cluster-index stream's
        symbols, i.e. n·H of each stream's own symbol frequencies, summed. It covers those
        symbols only — not the tables that describe the frequencies, nor anything else in the
        file — and a coder with contexts can go below it."""
        return sum(s.entropy_bits for s in self._streams())

    @property
    def codebook_bytes(self) -> int:
        return sum(t.codebook_bytes for t in self.tensors)

    @property
    def framing_bytes(self) -> int:
        """Section kind, length, CRC-32, flags and codebook size of every shared tensor."""
        return sum(t.section_bytes - t.codebook_bytes for t in self.tensors) - self.coded_bits // 8

    @property
    def decode_mb_per_s(self) -> float:
        """Restored fp32 weights (MB = 10^6 bytes) per second of decoding."""
        return self.dense_bytes / 1e6 / self.decode_s if self.decode_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tensors"] = [t.to_dict() for t in self.tensors]
        for name in (
            "compression",
            "coded_bits",
            "payload_bits",
            "table_bits",
            "bound_bits",
            "codebook_bytes",
            "framing_bytes",
            "decode_mb_per_s",
        ):
            d[name] = getattr(self, name)
        return d

    def format(self, title: str = "slim file") -> str:
        """The per-layer table of Deep Compression (Table 2 style) with Shannon bounds."""
        head = (
            f"  {'tensor':<16} {'weights':>9} {'kept':>7} {'w bits':>6} {'coded':>6} "
            f"{'bound':>6} {'idx bits':>8} {'coded':>6} {'bound':>6} {'rate P+Q':>8} "
            f"{'rate all':>8}  coders"
        )
        lines = [f"{title}: {self.path}", "", head]
        for t in self.tensors:
            coders = "/".join(s.coder for s in (t.gaps, t.index) if s is not None) or "—"
            lines.append(
                f"  {t.name[:16]:<16} {t.numel:>9,} {t.kept_percent:>6.2f}% "
                f"{t.weight_bits_shared:>6.0f} {t.weight_bits_coded:>6.2f} "
                f"{t.weight_bits_bound:>6.2f} {t.gap_width:>8} {t.index_bits_coded:>6.2f} "
                f"{t.index_bits_bound:>6.2f} {t.rate_shared:>7.1f}x {t.rate_coded:>7.1f}x  {coders}"
            )
        bound = self.bound_bits or 1.0
        coded, payload, tables = self.coded_bits // 8, self.payload_bits // 8, self.table_bits // 8
        lines += [
            "",
            "  w bits: cluster-index bits per kept weight (fixed, coded, Shannon bound); idx "
            "bits: gap width, then coded and bound bits of position per kept weight",
            f"  file {self.file_bytes:,} B for {self.dense_bytes:,} B of fp32: "
            f"{self.compression:.1f}x",
            f"  Shannon bound (order-0 entropy of the gap and cluster-index symbols) "
            f"{bound / 8:,.0f} B; coded streams {coded:,} B ({(8 * coded / bound - 1) * 100:+.2f}%"
            f": payloads {payload:,} B ({(8 * payload / bound - 1) * 100:+.2f}%), tables "
            f"{tables:,} B, stream headers {coded - payload - tables:,} B)",
            f"  beyond the streams: codebooks {self.codebook_bytes:,} B, section framing and "
            f"CRCs {self.framing_bytes:,} B, metadata {self.metadata_bytes:,} B, raw tensors "
            f"{self.raw_bytes:,} B, magic and version {self.header_bytes} B; whole file "
            f"{(8 * self.file_bytes / bound - 1) * 100:+.2f}% over the bound",
        ]
        if self.decode_s:
            lines.append(
                f"  decode {self.decode_s * 1e3:.1f} ms: {self.decode_mb_per_s:.1f} MB/s of fp32"
            )
        return "\n".join(lines)
