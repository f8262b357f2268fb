"""The run report: one self-contained HTML file (inline CSS and SVG, no scripts, no network) and
a JSON file with the same numbers.

Charts: size, latency and accuracy step by step; accuracy against size and against latency for
every artifact; per-layer sparsity and bit width; per-layer latency of the final float model.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.files import atomic_write_text
from slimkit.measure import Metrics
from slimkit.pipeline.runner import RunResult

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")

# (label, Metrics field, formatter, smaller is better)
SUMMARY_ROWS = [
    ("parameters (non-zero)", "params_nonzero", lambda v: f"{v:,.0f}", True),
    ("file size (KiB)", "size_file_bytes", lambda v: f"{v / 1024:,.1f}", True),
    ("MACs / sample", "macs", lambda v: f"{v:,.0f}", True),
    ("effective MACs", "macs_effective", lambda v: f"{v:,.0f}", True),
    ("latency p50 (ms)", "latency_p50_ms", lambda v: f"{v:.3f}", True),
    ("latency p99 (ms)", "latency_p99_ms", lambda v: f"{v:.3f}", True),
    ("throughput (samples/s)", "throughput_per_s", lambda v: f"{v:,.0f}", False),
    ("peak memory, inference (KiB)", "memory_inference_bytes", lambda v: f"{v / 1024:,.0f}", True),
    ("top-1 accuracy (%)", "top1", lambda v: f"{v:.2f}", False),
    ("information density", "information_density", lambda v: f"{v:.1f}", False),
    ("NetScore", "netscore", lambda v: f"{v:.2f}", False),
]


@dataclass
class Column:
    label: str
    metrics: Metrics
    notes: dict[str, Any]


def columns(result: RunResult) -> list[Column]:
    cols = [Column("baseline", result.baseline, {})]
    for i, step in enumerate(result.steps):
        cols.append(Column(f"{i + 1}. {step.kind}", step.metrics, step.notes))
    return cols


def report_dict(result: RunResult) -> dict[str, Any]:
    return {
        "recipe": result.recipe.to_dict(),
        "wall_s": result.wall_s,
        "baseline": result.baseline.to_dict(),
        "steps": [
            {
                "kind": s.kind,
                "params": s.params,
                "artifact": s.artifact,
                "time_s": s.time_s,
                "reused": s.reused,
                "notes": s.notes,
                "metrics": s.metrics.to_dict(),
            }
            for s in result.steps
        ],
        "final": result.final.to_dict(),
    }


def write_report(result: RunResult) -> tuple[Path, Path]:
    """Write out/report.json and out/report.html; returns their paths."""
    out = result.out
    json_path = atomic_write_text(
        out / "report.json", json.dumps(report_dict(result), indent=1, default=str)
    )
    html_path = atomic_write_text(out / "report.html", render_html(result))
    return json_path, html_path


# --- HTML ---------------------------------------------------------------------------------------


def render_html(result: RunResult) -> str:
    cols = columns(result)
    weighted = [r for r in _final_layers(result) if r.params > 0]
    charts = [
        ("size", "File size by step (KiB)", _bars(cols, "size_file_bytes", 1 / 1024)),
        ("latency", "Batch-1 latency p50 by step (ms)", _bars(cols, "latency_p50_ms", 1.0)),
        ("accuracy", "Top-1 accuracy by step (%)", _bars(cols, "top1", 1.0)),
        ("acc-size", "Accuracy vs file size (every artifact)", scatter(cols, "size_file_bytes",
                                                                         1 / 1024, "KiB")),
        ("acc-latency", "Accuracy vs latency (every artifact)", scatter(cols, "latency_p50_ms",
                                                                           1.0, "ms")),
        ("sparsity", "Per-layer sparsity, final float model (%)", _layer_bars(
            weighted, lambda r: 100 * r.sparsity, "%.1f")),
        ("bits", "Per-layer weight bits, final artifact", _layer_bars(
            weighted, lambda r: _bits(result, r.name), "%.0f")),
        ("layer-latency", "Per-layer latency, final float model (ms)", _layer_bars(
            _final_layers(result), lambda r: r.time_ms, "%.3f")),
    ]  # fmt: skip
    sections = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>"
        + svg.replace("<svg ", f'<svg data-chart="{name}" ', 1)
        + "</section>"
        for name, title, svg in charts
    )
    steps = "".join(
        f"<li><b>{html.escape(s.kind)}</b> {html.escape(json.dumps(s.params))} — "
        f"{s.time_s:.1f} s{' (reused)' if s.reused else ''}"
        f"{', artifact ' + html.escape(s.artifact) if s.artifact else ''}</li>"
        for s in result.steps
    )
    recipe = html.escape(json.dumps(result.recipe.to_dict(), indent=1))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slimkit report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
td.better {{ background: #e6f4e6; }} td.worse {{ background: #fbe9e9; }}
section {{ display: inline-block; vertical-align: top; margin: 8px 16px 8px 0; }}
h2 {{ font-size: 15px; margin: 8px 0; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
pre {{ background: #f6f6f6; padding: 8px; }}
</style></head><body>
<h1>slimkit compression report</h1>
<p>Run time {result.wall_s:.1f} s; measured with {result.final.threads} thread(s), batch-1
latency, on this machine.</p>
{_summary_table(cols)}
<h2>Steps</h2><ol>{steps}</ol>
{sections}
<h2>Recipe</h2><pre>{recipe}</pre>
</body></html>
"""


def _summary_table(cols: list[Column]) -> str:
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in cols)
    rows = []
    base = cols[0].metrics
    for label, attr, fmt, smaller in SUMMARY_ROWS:
        cells = []
        for c in cols:
            v = getattr(c.metrics, attr)
            b = getattr(base, attr)
            cls = ""
            if c is not cols[0] and v is not None and b not in (None, 0) and v != b:
                cls = "better" if (v < b) == smaller else "worse"
            text = fmt(v) if v is not None else "—"
            cells.append(f'<td class="{cls}">{text}</td>')
        rows.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
    return f"<table id='summary'><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _final_layers(result: RunResult):
    for metrics in [s.metrics for s in reversed(result.steps)] + [result.baseline]:
        if metrics.layers:
            return [r for r in metrics.layers if r.params > 0 or r.time_ms > 0]
    return []


def _bits(result: RunResult, layer: str) -> float:
    """Weight bits of `layer` in the last artifact that set them (32 when none did)."""
    for step in reversed(result.steps):
        bits = step.notes.get("layer_bits")
        if bits:
            return float(bits.get(layer, 32))
        if step.notes.get("int8"):
            return 8.0
    return 32.0


def _bars(cols: list[Column], attr: str, scale: float) -> str:
    values = [(c.label, (getattr(c.metrics, attr) or 0) * scale) for c in cols]
    width, height, left, bottom = 420, 220, 46, 40
    top = max(v for _, v in values) or 1
    bar_w = (width - left - 10) / len(values)
    parts = [_axis(left, height - bottom, width - 10, 10, top)]
    for i, (label, v) in enumerate(values):
        h = (height - bottom - 10) * v / top
        x = left + i * bar_w + 4
        y = height - bottom - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 8:.1f}" height="{max(h, 0.5):.1f}" '
            f'fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{html.escape(label)}: {v:.4g}</title></rect>"
        )
        parts.append(f'<text x="{x:.1f}" y="{y - 3:.1f}">{v:.3g}</text>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - bottom + 14}">{html.escape(label[:14])}</text>'
        )
    return _svg(width, height, parts)


def scatter(cols: list[Column], attr: str, scale: float, unit: str) -> str:
    """Inline SVG of each column's top-1 against `attr` of its metrics (times `scale`, in
    `unit`), points labelled: the report's and the sweep's accuracy trade-off charts."""
    points = [
        (c.label, (getattr(c.metrics, attr) or 0) * scale, c.metrics.top1)
        for c in cols
        if c.metrics.top1 is not None
    ]
    width, height, left, bottom = 420, 220, 46, 40
    if not points:
        return _svg(width, height, ['<text x="20" y="40">no accuracy measured</text>'])
    xmax = max(p[1] for p in points) or 1
    ymin = min(p[2] for p in points)
    ymax = max(p[2] for p in points)
    pad = max(0.1 * (ymax - ymin), 0.5)
    ymin, ymax = ymin - pad, ymax + pad
    parts = [_axis(left, height - bottom, width - 10, 10, xmax, x_label=unit)]
    for i, (label, x, y) in enumerate(points):
        px = left + (width - left - 90) * x / xmax  # room for the label right of the point
        py = height - bottom - (height - bottom - 20) * (y - ymin) / (ymax - ymin)
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{html.escape(label)}: {x:.4g} {unit}, {y:.2f}%</title></circle>"
        )
        parts.append(f'<text x="{px + 7:.1f}" y="{py + 4:.1f}">{html.escape(label[:12])}</text>')
    parts.append(f'<text x="4" y="14">top-1 {ymin:.1f}–{ymax:.1f}%</text>')
    return _svg(width, height, parts)


def _layer_bars(rows, value, fmt: str) -> str:
    width, row_h, left = 420, 16, 130
    height = max(40, row_h * len(rows) + 20)
    if not rows:
        return _svg(width, 40, ['<text x="10" y="24">no per-layer profile measured</text>'])
    values = [value(r) for r in rows]
    top = max(values) or 1
    parts = []
    for i, (r, v) in enumerate(zip(rows, values, strict=True)):
        y = 10 + i * row_h
        w = (width - left - 60) * v / top
        parts.append(f'<text x="4" y="{y + 11}">{html.escape(r.name[:20])}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 2}" width="{max(w, 0.5):.1f}" height="{row_h - 4}" '
            f'fill="{PALETTE[0]}"><title>{html.escape(r.name)}: {fmt % v}</title></rect>'
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 11}">{fmt % v}</text>')
    return _svg(width, height, parts)


def _axis(x0: float, y0: float, x1: float, y1: float, top: float, x_label: str = "") -> str:
    return (
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#888"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#888"/>'
        f'<text x="2" y="{y1 + 10}">{top:.3g}</text><text x="{x1 - 30}" y="{y0 + 28}">'
        f"{html.escape(x_label)}</text>"
    )


def _svg(width: int, height: float, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}">{"".join(parts)}</svg>'
    )


def format_steps(result: RunResult) -> str:
    """The summary table as text: baseline, every step, and the final change."""
    cols = columns(result)
    width = max(12, *(len(c.label) + 1 for c in cols))
    lines = [f"  {'':<28}" + "".join(f"{c.label:>{width}}" for c in cols) + f"{'change':>10}"]
    for label, attr, fmt, _smaller in SUMMARY_ROWS:
        values = [getattr(c.metrics, attr) for c in cols]
        cells = "".join(f"{fmt(v) if v is not None else '—':>{width}}" for v in values)
        first, last = values[0], values[-1]
        if attr == "top1" and first is not None and last is not None:
            change = f"{last - first:+.2f}pt"
        elif first and last:
            change = f"{first / last:.2f}x" if _smaller else f"{last / first:.2f}x"
        else:
            change = "—"
        lines.append(f"  {label:<28}{cells}{change:>10}")
    return "\n".join(lines)
