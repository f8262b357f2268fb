"""From united channel ids to `Group`s: units, checks of equal-count partitions, and the layer
sides (`Member`s) each group touches."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from slimkit.graph.labels import FIXED
from slimkit.graph.propagation import Dependency, Propagator


@dataclass(eq=False)
class Member:
    """A layer side inside a group: unit `units[i]` owns channels `channels[i]` of it."""

    name: str
    module: nn.Module
    role: str
    units: Tensor  # (m,) positions in Group.units
    channels: Tensor  # (m, k) channel indices on this side of the layer
    axis: int = 0  # LayerNorm: axis of the weight the channels run along


@dataclass(eq=False)
class Group:
    """Prunable units (channels pruned together) and every layer side they touch."""

    index: int
    units: Tensor  # (n,) root channel id of each unit
    members: list[Member]
    partitions: list[Tensor] = field(default_factory=list)  # (n,) part per unit, -1: not in it

    @property
    def size(self) -> int:
        return len(self.units)

    @property
    def names(self) -> list[str]:
        """Modules whose output (or norm) channels this group prunes."""
        return sorted({m.name for m in self.members if m.role != "in"})

    def __repr__(self) -> str:
        return f"Group({self.index}, size={self.size}, layers={self.names})"


def channel_groups(p: Propagator) -> tuple[Tensor, list[Group]]:
    while True:
        roots = p.uf.roots()
        if not _fix_bad_partitions(p, roots):  # fixing units may unbalance other partitions
            return roots, _group(p, roots)


def _fix_bad_partitions(p: Propagator, roots: Tensor) -> bool:
    """Check each partition against the units: a unit must sit in one part (with as many
    channels as every other such unit) or spread evenly over all parts (then it does not
    change the balance and leaves the partition). Anything else fixes the units."""
    changed = False
    for i, (ids, parts) in enumerate(p.partitions):
        r = roots[ids]
        if len(r) == 0 or bool((r == FIXED).all()):
            continue
        n_parts = int(parts.max()) + 1
        keys, counts = torch.unique(r * n_parts + parts, return_counts=True)
        per_unit: dict[int, list[int]] = {}
        for k, n in zip(keys.tolist(), counts.tolist(), strict=True):
            per_unit.setdefault(k // n_parts, []).append(n)
        single = {u for u, ns in per_unit.items() if len(ns) == 1}
        even = {u for u, ns in per_unit.items() if len(ns) == n_parts and len(set(ns)) == 1}
        if (
            FIXED in per_unit
            or len(single) + len(even - single) < len(per_unit)
            or len({per_unit[u][0] for u in single}) > 1
        ):
            p.uf.fix(ids)
            p.deps.append(Dependency("", "fix", "units split unevenly by a partition"))
            changed = True
        elif even - single:
            keep = torch.isin(r, torch.tensor(sorted(single), dtype=torch.long))
            p.partitions[i] = (ids[keep], parts[keep])
    return changed


def _group(p: Propagator, roots: Tensor) -> list[Group]:
    signature: dict[int, list[tuple[str, int]]] = {}
    port_roots = {key: roots[p.labels] for key, p in p.ports.items()}
    for key, r in port_roots.items():
        values, counts = r.unique(return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            if v != FIXED:
                signature.setdefault(v, []).append((key, n))
    by_sig: dict[tuple, list[int]] = {}
    for unit, sig in signature.items():
        by_sig.setdefault(tuple(sig), []).append(unit)
    subs = list(by_sig.values())
    sub_of = {u: i for i, units in enumerate(subs) for u in units}
    link = list(range(len(subs)))

    def top(i: int) -> int:
        while link[i] != i:
            i = link[i]
        return i

    unit_parts: list[dict[int, int]] = []
    for ids, parts in p.partitions:
        r = roots[ids]
        keep = r != FIXED
        if not bool(keep.any()):
            continue
        mapping = dict(torch.stack([r[keep], parts[keep]], 1).unique(dim=0).tolist())
        touched = sorted({top(sub_of[u]) for u in mapping})
        for t in touched[1:]:
            link[t] = touched[0]
        unit_parts.append(mapping)
    merged: dict[int, list[int]] = {}
    for i, units in enumerate(subs):
        merged.setdefault(top(i), []).extend(units)

    groups = []
    for units in sorted(merged.values(), key=min):
        units.sort()
        pos = {u: i for i, u in enumerate(units)}
        partitions: list[Tensor] = []
        for mapping in unit_parts:
            if next(iter(mapping)) not in pos:
                continue
            part = torch.full((len(units),), -1, dtype=torch.long)
            relabel: dict[int, int] = {}
            for u in units:  # canonical part numbers, so equal partitions compare equal
                if u in mapping:
                    part[pos[u]] = relabel.setdefault(mapping[u], len(relabel))
            if len(relabel) > 1 and not any(torch.equal(part, p) for p in partitions):
                partitions.append(part)
        groups.append(Group(len(groups), torch.tensor(units), [], partitions))
    _members(p, port_roots, groups)
    return groups


def _members(p: Propagator, port_roots: dict[str, Tensor], groups: list[Group]) -> None:
    where = {u: (g.index, i) for g in groups for i, u in enumerate(g.units.tolist())}
    for key, r in port_roots.items():
        found: dict[int, dict[int, list[int]]] = {}  # group -> unit position -> channels
        for ch, u in enumerate(r.tolist()):
            if u in where:
                g, i = where[u]
                found.setdefault(g, {}).setdefault(i, []).append(ch)
        port = p.ports[key]
        for g, units in found.items():
            by_count: dict[int, list[int]] = {}
            for i, chans in units.items():
                by_count.setdefault(len(chans), []).append(i)
            for sel in by_count.values():
                groups[g].members.append(
                    Member(
                        port.module,
                        p.modules[port.module],
                        port.role,
                        torch.tensor(sel),
                        torch.tensor([units[i] for i in sel]),
                        port.axis,
                    )
                )
