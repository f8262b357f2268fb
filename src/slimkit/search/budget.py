"""Budgets: "latency<2ms,size<50KB", or relative to the input model: "latency<0.5x,macs<0.4x".

A budget caps one or more resources of the compressed model. Absolute limits carry units (ms/us/s
for latency; B/KB/MB/KiB/MiB for size and memory; plain, K, M or G for MACs); `0.5x` is a fraction
of the input model's own figure, resolved once that is measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slimkit.errors import ConfigError

RESOURCES = ("latency", "size", "macs", "memory")

_UNITS: dict[str, dict[str, float]] = {
    "latency": {"ms": 1.0, "us": 1e-3, "s": 1e3},  # → milliseconds
    "size": {"b": 1, "kb": 1e3, "mb": 1e6, "kib": 1024, "mib": 1024**2},  # → bytes
    "memory": {"b": 1, "kb": 1e3, "mb": 1e6, "kib": 1024, "mib": 1024**2},
    "macs": {"": 1, "k": 1e3, "m": 1e6, "g": 1e9},
}
UNIT_NAMES = {"latency": "ms", "size": "B", "memory": "B", "macs": "MACs"}
_TERM = re.compile(r"^\s*([a-z]+)\s*(<=|<)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True)
class Limit:
    resource: str
    value: float  # in the resource's base unit, or a fraction of the input model when relative
    relative: bool = False

    def __str__(self) -> str:
        if self.relative:
            return f"{self.resource}<{self.value:g}x"
        return f"{self.resource}<{format_value(self.resource, self.value)}"


@dataclass(frozen=True)
class Budget:
    limits: tuple[Limit, ...]

    @classmethod
    def parse(cls, text: str) -> Budget:
        """'latency<2ms,size<50KB' → Budget; one clear error per malformed term."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                "budget is empty: give e.g. 'latency<2ms,size<50KB' or 'macs<0.5x' "
                f"(resources: {', '.join(RESOURCES)})"
            )
        limits: dict[str, Limit] = {}
        for term in text.split(","):
            limit = _parse_term(term)
            if limit.resource in limits:
                raise ConfigError(f"budget names {limit.resource} twice: {text!r}")
            limits[limit.resource] = limit
        return cls(tuple(limits.values()))

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(limit.resource for limit in self.limits)

    def resolve(self, baseline: dict[str, float]) -> dict[str, float]:
        """Absolute caps: relative limits times the input model's `baseline` figures."""
        return {
            lim.resource: lim.value * baseline[lim.resource] if lim.relative else lim.value
            for lim in self.limits
        }

    def __str__(self) -> str:
        return ",".join(map(str, self.limits))


def _parse_term(term: str) -> Limit:
    m = _TERM.match(term.strip().lower())
    if not m:
        raise ConfigError(
            f"budget term {term.strip()!r} is not RESOURCE<VALUE[UNIT]: e.g. latency<2ms, "
            "size<50KB, macs<1.5M, memory<20MB, or latency<0.5x (a fraction of the input model)"
        )
    resource, _, number, unit = m.groups()
    if resource not in RESOURCES:
        raise ConfigError(f"budget resource {resource!r} is unknown; use one of {RESOURCES}")
    value = float(number)
    if value <= 0:
        raise ConfigError(f"budget {resource} limit must be > 0, got {term.strip()!r}")
    if unit == "x":
        return Limit(resource, value, relative=True)
    units = _UNITS[resource]
    if unit not in units:
        shown = ", ".join(u or "(none)" for u in units)
        raise ConfigError(
            f"budget {resource} has unknown unit {unit!r} in {term.strip()!r}; use {shown}, "
            "or x for a fraction of the input model"
        )
    return Limit(resource, value * units[unit])


def format_value(resource: str, value: float) -> str:
    """A resource figure for people: 1.23ms, 48.2KB, 2.31M MACs."""
    if resource == "latency":
        return f"{value:.3g}ms"
    if resource in ("size", "memory"):
        for unit, scale in (("MB", 1e6), ("KB", 1e3)):
            if value >= scale:
                return f"{value / scale:.3g}{unit}"
        return f"{value:.0f}B"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"
