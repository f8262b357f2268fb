"""The search report: search.json (every trial, the front, the finalists) and search.html (one
self-contained page: proxy accuracy against each budgeted resource, the cap drawn, the Pareto
front marked; the front and the finalists as tables)."""

from __future__ import annotations

import html
import json
from typing import Any

from slimkit.files import atomic_write_text
from slimkit.search.budget import format_value

COLORS = {"front": "#e15759", "within": "#4e79a7", "over": "#bab0ac"}


def report_dict(result) -> dict[str, Any]:
    def point(rec) -> dict[str, Any]:
        return {
            "trial": rec.number,
            "policy": result.space.policy(list(rec.indices)),
            "proxy_top1": rec.evaluation.accuracy,
            "resources": rec.evaluation.resources,
            "within_budget": result.feasible(rec),
            "cached": rec.cached,  # a repeat of an evaluated policy, not evaluated again
        }

    finalists = [
        {
            "trial": f.record.number,
            "val_top1": f.val_top1,
            "test_top1": f.run.final.top1,
            "metrics": f.run.final.to_dict(),
            "recipe": f.recipe.to_dict(),
            "artifact": str(f.run.out / _last_folder(f) / f.run.steps[-1].artifact)
            if f.run.steps and f.run.steps[-1].artifact
            else None,
        }
        for f in result.finalists
    ]
    best = result.best
    return {
        "caps": result.caps,
        "space": [[d.name, list(d.choices)] for d in result.space.dims],
        "baseline": {
            "proxy_top1": result.baseline.accuracy,
            "resources": result.baseline.resources,
        },
        "input_test_top1": best.run.baseline.top1 if best else None,
        "trials": [point(r) for r in result.records],
        "front": [r.number for r in result.front],
        "finalists": finalists,
        "best_trial": best.record.number if best else None,
        "evaluated_here": result.evaluated,
        "trial_states": result.states,
        "wall_s": result.wall_s,
    }


def _last_folder(f) -> str:
    return f"{len(f.run.steps):02d}-{f.run.steps[-1].kind}"


def write_report(result) -> None:
    data = report_dict(result)
    atomic_write_text(result.out / "search.json", json.dumps(data, indent=1, default=str))
    atomic_write_text(result.out / "search.html", render_html(result, data))


def render_html(result, data: dict[str, Any]) -> str:
    charts = "".join(
        f"<figure>{_scatter(result, r)}<figcaption>proxy top-1 vs {r}</figcaption></figure>"
        for r in result.caps
    )
    front_rows = "".join(
        f"<tr><td>{r.number}</td><td>{r.evaluation.accuracy:.2f}</td>"
        + "".join(f"<td>{format_value(c, r.evaluation.resources[c])}</td>" for c in result.caps)
        + f"<td>{'yes' if result.feasible(r) else 'no'}</td></tr>"
        for r in result.front
    )
    fin_rows = "".join(
        f"<tr><td>{f['trial']}</td><td>{f['val_top1']:.2f}</td><td>{f['test_top1']:.2f}</td>"
        f"<td>{html.escape(str(f['artifact']))}</td></tr>"
        for f in data["finalists"]
    )
    heads = "".join(f"<th>{html.escape(c)}</th>" for c in result.caps)
    caps = ", ".join(f"{r} &lt; {format_value(r, v)}" for r, v in result.caps.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>slimkit search</title>
<style>body{{font:14px sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}figure{{display:inline-block}}
.chart text{{font:11px sans-serif}}</style></head><body>
<h1>slimkit search</h1>
<p>Budget: {caps}. {len(result.records)} trials ({result.evaluated} evaluated by this process),
{sum(result.feasible(r) for r in result.records)} within budget, {len(result.front)} on the Pareto
front; {result.wall_s:.0f} s. Proxy accuracy: held-out training images after BatchNorm
re-estimation, before fine-tuning.</p>
{charts}
<h2>Pareto front</h2><table><tr><th>trial</th><th>proxy top-1 %</th>{heads}<th>within budget</th>
</tr>{front_rows}</table>
<h2>Finalists (fine-tuned)</h2><table><tr><th>trial</th><th>val top-1 %</th><th>test top-1 %</th>
<th>artifact</th></tr>{fin_rows}</table>
</body></html>
"""


def _scatter(result, resource: str) -> str:
    width, height, left, bottom = 460, 260, 50, 36
    front = {r.number for r in result.front}
    pts = [(r.evaluation.resources[resource], r.evaluation.accuracy, r) for r in result.records]
    if not pts:
        return '<svg class="chart" width="460" height="40"><text x="9" y="24">-</text></svg>'
    cap = result.caps[resource]
    xmax = max(max(p[0] for p in pts), cap) * 1.05
    ymin, ymax = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = max(0.05 * (ymax - ymin), 0.5)
    ymin, ymax = ymin - pad, ymax + pad

    def xy(x: float, y: float) -> tuple[float, float]:
        px = left + (width - left - 10) * x / xmax
        py = height - bottom - (height - bottom - 10) * (y - ymin) / (ymax - ymin)
        return px, py

    parts = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#888"/>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{left}" y2="10" stroke="#888"/>',
        f'<text x="{left}" y="{height - 8}">0</text>'
        f'<text x="{width - 80}" y="{height - 8}">{format_value(resource, xmax)}</text>',
        f'<text x="2" y="18">{ymax:.1f}%</text>',
        f'<text x="2" y="{height - bottom}">{ymin:.1f}%</text>',
    ]
    cx, _ = xy(cap, ymin)
    parts.append(
        f'<line x1="{cx:.1f}" y1="10" x2="{cx:.1f}" y2="{height - bottom}" stroke="#59a14f" '
        f'stroke-dasharray="4 3"><title>cap {format_value(resource, cap)}</title></line>'
    )
    for x, y, rec in sorted(pts, key=lambda p: p[2].number in front):
        kind = "front" if rec.number in front else ("within" if result.feasible(rec) else "over")
        px, py = xy(x, y)
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{4 if kind == "front" else 3}" '
            f'fill="{COLORS[kind]}"><title>trial {rec.number}: {y:.2f}%, '
            f"{format_value(resource, x)} ({kind})</title></circle>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
    )
