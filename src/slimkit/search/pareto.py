"""The Pareto front: points no other point beats on every objective."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is at least as good as `b` everywhere and better somewhere (all objectives minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (minimized objectives), duplicates kept once."""
    front: list[int] = []
    seen: set[tuple[float, ...]] = set()
    for i, p in enumerate(points):
        key = tuple(p)
        if key in seen or any(dominates(q, p) for q in points):
            continue
        seen.add(key)
        front.append(i)
    return front
