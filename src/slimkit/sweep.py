"""Sweep a zoo model over width multipliers and input resolutions: the speed / accuracy / size
trade-off of MobileNets (Howard et al. 2017, §3.3–3.4 and Tables 6–7).

Each point (α, ρ) is a fresh model with its width option at α and its input size at round(ρ·S),
S being the data's image size (else the model's default); the data is resampled to that size.
Optionally each point trains for a few epochs, then it is measured: accuracy, parameters, MACs,
NetScore, and batch-1 latency, timed for all points in interleaved rounds so that a slow spell of
a shared machine hits every point alike. Results: a text table, JSON and a self-contained HTML
page with accuracy-vs-MACs and accuracy-vs-latency charts.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import json
import logging
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.data import ArrayDataset, DataSplits, resized
from slimkit.errors import ConfigError, DataError
from slimkit.files import atomic_write_text
from slimkit.measure import count_macs, count_params, evaluate, netscore
from slimkit.measure.common import eval_mode, num_threads
from slimkit.measure.latency import LatencyStats, summarize, time_calls
from slimkit.nn import create, list_models, model_info
from slimkit.pipeline.report import Column, scatter
from slimkit.train import TrainConfig, fit

log = logging.getLogger("slimkit")

WIDTH_OPTIONS = ("alpha", "width_mult")  # the zoo factories' names for a width multiplier
RESOLUTION_OPTION = "input_size"


def _options(model: str) -> set[str]:
    return set(inspect.signature(model_info(model).factory).parameters)


def width_option(model: str) -> str | None:
    """The factory option of `model` that scales its width, or None."""
    return next((o for o in WIDTH_OPTIONS if o in _options(model)), None)


def sweepable_models() -> list[str]:
    """Zoo models with a width multiplier (those with `input_size` sweep resolution too)."""
    return [m for m in list_models() if width_option(m) is not None]


def _multipliers(name: str, values: Any) -> tuple[float, ...]:
    values = tuple(values)
    if not values:
        raise ConfigError(f"give at least one {name}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1:
            raise ConfigError(f"{name} must be in (0, 1], got {v!r}")
    values = tuple(float(v) for v in values)
    if len(set(values)) < len(values):
        raise ConfigError(f"each {name} once, please: got {', '.join(map(str, values))}")
    return values


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep: a zoo model, its width and resolution multipliers, optional training."""

    model: str = "mobilenet_v1"
    widths: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)  # α, each in (0, 1]
    resolutions: tuple[float, ...] = (1.0,)  # ρ, each in (0, 1]: input size round(ρ·S)
    train: TrainConfig | None = None  # None: measure the points untrained
    threads: int = 1  # torch threads for the latency timing
    latency_rounds: int = 10  # interleaved rounds over all points
    calls_per_round: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", _multipliers("width multiplier α", self.widths))
        object.__setattr__(
            self, "resolutions", _multipliers("resolution multiplier ρ", self.resolutions)
        )
        if width_option(self.model) is None:  # also rejects an unknown model, by name
            raise ConfigError(
                f"model {self.model!r} has no width multiplier to sweep; models that have one: "
                f"{', '.join(sweepable_models())}"
            )
        if self.resolutions != (1.0,) and RESOLUTION_OPTION not in _options(self.model):
            fixed = [m for m in sweepable_models() if RESOLUTION_OPTION in _options(m)]
            raise ConfigError(
                f"model {self.model!r} has a fixed input size: sweep resolutions other than 1 "
                f"with {', '.join(fixed)}"
            )
        for name in ("threads", "latency_rounds", "calls_per_round"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"sweep {name} must be an integer >= 1, got {value!r}")


@dataclass
class SweepPoint:
    width: float  # α
    resolution: float  # ρ
    input_size: int  # pixels per side
    params: int
    macs: int  # per sample, forward
    latency_p50_ms: float  # batch 1, interleaved with the other points
    latency_p90_ms: float
    top1: float | None  # %, on the test split; None without data
    top5: float | None
    netscore: float | None
    train_time_s: float | None

    @property
    def label(self) -> str:
        return f"α{self.width:g} ρ{self.resolution:g}"  # as in the log and the charts


@dataclass
class SweepResult:
    config: SweepConfig
    base_size: int  # S: input size at ρ = 1
    points: list[SweepPoint]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "base_size": self.base_size,
            "points": [asdict(p) for p in self.points],
        }


def sweep(
    config: SweepConfig, data: DataSplits | None = None, *, progress: bool | None = None
) -> SweepResult:
    """Build, optionally train (on data.train) and measure (on data.test) every (α, ρ) point."""
    if config.train is not None and data is None:
        raise ConfigError("training the sweep's points needs data")
    model_kwargs: dict[str, Any] = {}
    if data is not None:
        _, h, w = data.test.sample_shape
        if h != w:
            raise DataError(f"the sweep resamples square images; these are {h}×{w}")
        base = h
        model_kwargs["num_classes"] = len(data.test.classes)
    else:
        base = create(config.model).input_shape[1]
    option = width_option(config.model)
    sized = RESOLUTION_OPTION in _options(config.model)
    rows: list[dict[str, Any]] = []  # every field of a SweepPoint but its latency
    timed: dict[str, tuple[nn.Module, Tensor]] = {}
    for rho in config.resolutions:
        size = max(1, round(rho * base))
        train = resized(data.train, (size, size)) if config.train is not None else None
        test = resized(data.test, (size, size)) if data is not None else None
        for alpha in config.widths:
            torch.manual_seed(config.train.seed if config.train else 0)
            kwargs = {**model_kwargs, option: alpha, **({RESOLUTION_OPTION: size} if sized else {})}
            model = create(config.model, **kwargs)
            seconds = None
            if config.train is not None:
                seconds = fit(model, train, config.train, progress=progress).train_time_s
            example = (
                test.normalized(torch.arange(1)) if test else torch.randn(1, *model.input_shape)
            )
            row = dict(width=alpha, resolution=rho, input_size=size, train_time_s=seconds,
                       **_accuracy_and_cost(model, example, test))  # fmt: skip
            label = f"α{alpha:g} ρ{rho:g}"
            log.info("sweep %s: top-1 %s, %d MACs", label, _opt(row["top1"], ".2f"), row["macs"])
            rows.append(row)
            timed[label] = (model, example)
    latency = interleaved_latency(
        timed, threads=config.threads, rounds=config.latency_rounds, calls=config.calls_per_round
    )
    points = [
        SweepPoint(**row, latency_p50_ms=stats.p50_ms, latency_p90_ms=stats.p90_ms)
        for row, stats in zip(rows, latency.values(), strict=True)
    ]
    return SweepResult(config, base, points)


def _accuracy_and_cost(model: nn.Module, example: Tensor, test: ArrayDataset | None) -> dict:
    # Not `measure`: its training-MAC count runs BN in train mode at batch 1, which fails for a
    # low resolution whose last feature map is 1×1.
    params, macs = count_params(model).total, count_macs(model, example).dense
    result = evaluate(model, test) if test is not None else None
    top1 = result.top1 if result else None
    return {
        "params": params,
        "macs": macs,
        "top1": top1,
        "top5": result.top5 if result else None,
        "netscore": netscore(top1, params, macs) if top1 else None,
    }


def interleaved_latency(
    runs: dict[str, tuple[nn.Module, Tensor]], *, threads: int, rounds: int, calls: int
) -> dict[str, LatencyStats]:
    """Batch-1 latency of each `model(example)`, in rounds that visit every model in turn.

    Unlike `compare_latency`, every model has its own example (the points differ in input size).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    with num_threads(threads), torch.inference_mode(), contextlib.ExitStack() as stack:
        for model, _ in runs.values():
            stack.enter_context(eval_mode(model))
        for _ in range(rounds):
            for name, (model, x) in runs.items():
                times[name] += time_calls(lambda m=model, x=x: m(x), warmup=2, calls=calls)
    return {name: summarize(t, threads=threads, batch_size=1) for name, t in times.items()}


def _opt(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


# (header, cell) of the text and HTML tables
_COLUMNS = [
    ("α", lambda p: f"{p.width:g}"),
    ("ρ", lambda p: f"{p.resolution:g}"),
    ("input", lambda p: f"{p.input_size}²"),
    ("params", lambda p: f"{p.params:,}"),
    ("MACs", lambda p: f"{p.macs:,}"),
    ("p50 ms", lambda p: f"{p.latency_p50_ms:.3f}"),
    ("top-1 %", lambda p: _opt(p.top1, ".2f")),
    ("NetScore", lambda p: _opt(p.netscore, ".1f")),
    ("train s", lambda p: _opt(p.train_time_s, ".1f")),
]


def format_table(result: SweepResult) -> str:
    rows = [[h for h, _ in _COLUMNS]] + [[cell(p) for _, cell in _COLUMNS] for p in result.points]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def render_html(result: SweepResult) -> str:
    """One self-contained page: the table and two scatter charts (inline SVG, no scripts)."""
    # scatter reads a column's label and its record's macs, latency_p50_ms and top1; a
    # SweepPoint has those fields, so it stands in for a Metrics record.
    cols = [Column(p.label, p, {}) for p in result.points]
    charts = [
        ("acc-macs", "Accuracy vs MACs (millions)", scatter(cols, "macs", 1e-6, "M MACs")),
        ("acc-latency", "Accuracy vs batch-1 latency (ms)",
         scatter(cols, "latency_p50_ms", 1.0, "ms")),
    ]  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in _COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(p))}</td>" for _, cell in _COLUMNS) + "</tr>"
        for p in result.points
    )
    sections = "".join(
        f"<section><h2>{title}</h2>"
        + svg.replace("<svg ", f'<svg data-chart="{name}" ', 1)
        + "</section>"
        for name, title, svg in charts
    )
    cfg = result.config
    trained = f"{cfg.train.epochs} epoch(s) per point" if cfg.train else "untrained points"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slimkit sweep: {html.escape(cfg.model)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
section {{ display: inline-block; vertical-align: top; margin: 8px 16px 8px 0; }}
h2 {{ font-size: 15px; margin: 8px 0; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
</style></head><body>
<h1>slimkit sweep: {html.escape(cfg.model)}</h1>
<p>Width α × resolution ρ (input round(ρ·{result.base_size}) pixels); {trained}; batch-1 latency
p50 with {cfg.threads} thread(s), all points timed in {cfg.latency_rounds} interleaved rounds.</p>
<table id="points"><tr>{head}</tr>{body}</table>
{sections}
</body></html>
"""


def write_outputs(result: SweepResult, out: str | Path) -> tuple[Path, Path]:
    """Write `out`/sweep.json and `out`/sweep.html (each atomically)."""
    out = Path(out)
    json_path = atomic_write_text(out / "sweep.json", json.dumps(result.to_dict(), indent=1))
    return json_path, atomic_write_text(out / "sweep.html", render_html(result))
