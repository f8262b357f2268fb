"""Channel-coupling graph: which channels of which layers must be pruned together.

Removing channel c of a conv is only possible if every tensor that channel flows into shrinks with
it: the BatchNorm after the conv, the other side of a residual add, one slice of a concat, the H·W
features a flattened channel feeds to a Linear, the gate of a squeeze-and-excitation block. This
module finds those couplings once per model:

1. `torch.fx` traces the model (torch.nn layers are leaves; modules named in `leaves` are kept
   whole as opaque boundaries).
2. `slimkit.graph_rules` runs the traced graph on one real sample and on *label tensors* holding
   the channel id of every activation position; layers make fresh ids, shape ops move them,
   elementwise ops unite them, unknown ops fix them.
3. The union-find over ids yields *units*: sets of channels that live or die together. Units that
   touch the input, the output or a boundary are fixed. Units that touch the same layer sides form
   a `Group`. Equal-count constraints (grouped convs, GroupNorm, chunk) become per-unit
   `partitions` and merge the groups they link.

Three nouns: `Node` (one per traced op: the rule that moved its channels), `Dependency` (one
coupling or fixing event, to explain results) and `Group` (what a pruner ranks and cuts).

Choices: `nn.MultiheadAttention` is a boundary — its q/k/v width and its output width are both
embed_dim, so it cannot lose a head and stay a standard module; the MLP around it prunes, and
`slimkit.prune.split_attention` swaps it for `HeadAttention` (q/k/v Linear layers, head count read
from their width), whose heads `scaled_dot_product_attention` ties into one unit each: a head's
q/k/v rows and out_proj columns go together. A channel shuffle (view with a literal group count +
transpose, or nn.ChannelShuffle) keeps the same offsets in every group, so channels keep their
order through the permutation.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, fx, nn

from slimkit.errors import ConfigError, ShapeError
from slimkit.graph_rules import (
    CHANNEL_NORM,
    CONV,
    FIXED,
    NONE,
    Dependency,
    Node,
    Port,
    Propagator,
)
from slimkit.measure.common import num_threads

__all__ = [
    "CHANNEL_NORM",
    "CONV",
    "FIXED",
    "LAYERS",
    "NONE",
    "ChannelGraph",
    "Dependency",
    "Group",
    "Member",
    "Node",
    "Port",
    "build_graph",
]

LAYERS = (*CONV, nn.Linear, *CHANNEL_NORM, nn.GroupNorm, nn.LayerNorm)  # what surgery resizes


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


@dataclass(eq=False)
class ChannelGraph:
    model: nn.Module
    nodes: list[Node]
    dependencies: list[Dependency]
    groups: list[Group]
    ports: dict[str, Port]  # "module:role" -> port
    roots: Tensor  # channel id -> id of its unit (0: fixed)
    output_shape: tuple[int, ...]  # of the first output, for one sample

    def keep_masks(self, removed: Tensor) -> dict[str, dict[str, Tensor]]:
        """module -> role -> bool mask of kept channels, for every layer side that loses some."""
        masks: dict[str, dict[str, Tensor]] = {}
        for port in self.ports.values():
            keep = ~torch.isin(self.roots[port.labels], removed)
            if not bool(keep.all()):
                masks.setdefault(port.module, {})[port.role] = keep
        return masks


def build_graph(model: nn.Module, example: Tensor, *, leaves: Collection[str] = ()) -> ChannelGraph:
    """Trace `model`, run it on `example[:1]` and return its channel groups.

    `leaves` names modules to keep whole: they are not traced into and their channels are fixed.
    """
    if not isinstance(example, Tensor) or example.dim() < 1 or len(example) == 0:
        raise ShapeError("example must be a non-empty batch tensor, e.g. torch.randn(1, 3, 32, 32)")
    names = dict(model.named_modules())
    unknown = [n for n in leaves if n not in names or n == ""]
    if unknown:
        valid = [n for n in names if n]
        shown = ", ".join(valid[:40]) + (f", … ({len(valid) - 40} more)" if len(valid) > 40 else "")
        raise ConfigError(
            f"no module named {unknown[0]!r} in {type(model).__name__}; valid: {shown}"
        )
    builder = Propagator(model, names, set(leaves))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # traced and run as in inference; one sample needs BN's running statistics
    try:
        graph = trace(model, set(leaves))
        with torch.no_grad(), num_threads(1):  # one sample: threads would only contend
            out_shape = builder.run(graph, example[:1].clone())
    finally:
        for m, mode in modes:
            m.training = mode
    roots, groups = _groups(builder)
    return ChannelGraph(model, builder.nodes, builder.deps, groups, builder.ports, roots, out_shape)


# --- tracing ---------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """fx tracer that keeps `leaves` opaque and remembers where tracing failed."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves
        self.path: list[str] = []
        self.failed_at: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        self.path.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = self.path[-1]
            raise
        finally:
            self.path.pop()


def trace(model: nn.Module, leaves: Collection[str] = ()) -> fx.Graph:
    """The torch.fx graph of `model` (torch.nn layers and `leaves` kept whole), or a one-line
    ConfigError naming the module where tracing failed."""
    tracer = _Tracer(set(leaves))
    try:
        return tracer.trace(model)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        where = tracer.failed_at
        if where:
            kind = type(model.get_submodule(where)).__name__
            raise ConfigError(
                f"cannot trace {type(model).__name__} in module {where!r} ({kind}): {reason}; "
                f"add {where!r} to ChannelPruning(exclude=...) to keep it whole as a leaf, or "
                "rewrite its forward without data-dependent control flow"
            ) from None
        raise ConfigError(
            f"cannot trace {type(model).__name__}.forward: {reason}; move the untraceable part "
            "into a submodule and exclude it, or remove data-dependent control flow"
        ) from None


# --- groups ----------------------------------------------------------------------------------


def _groups(p: Propagator) -> tuple[Tensor, list[Group]]:
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
