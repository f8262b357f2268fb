"""How the traced graph carries channel labels: the propagation half of `slimkit.graph`.

The traced graph runs once on one real sample (for shapes) and once on *label tensors*: every
position of every activation holds the id of the channel it belongs to (NONE = -1: no channel;
FIXED = 0: must not change). Layers create fresh ids for their output channels. Shape ops (view,
transpose, cat, chunk, flatten, channel shuffle, pad) run on the labels themselves, so their index
mapping comes for free; elementwise ops (residual add, multiplication by a gate) unite the ids
they combine in a union-find; an op without a rule (`slimkit.graph.op_rules`) is a boundary that
fixes what it touches.

The rules also record what a pruner must respect beyond plain couplings: the channels on each
side of a layer (`Port`), and equal-count constraints (grouped convs, GroupNorm, chunk).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from slimkit.errors import ConfigError, ShapeError
from slimkit.graph.labels import FIXED, Call, same_shapes, shaped_like, target_name, tensors_of
from slimkit.graph.op_rules import FUNCTION_RULES, METHOD_RULES, MODULE_RULES


@dataclass(frozen=True)
class Node:
    """One traced op and the rule that carried channels through it."""

    name: str
    op: str  # fx op: placeholder, call_module, call_function, call_method, get_attr, output
    target: str
    rule: str  # input/output, conv, linear, norm, layer_norm, elementwise, identity, move,
    # reshape, chunk, slice, pad, shuffle, reduce, pool, attention, value (no tensor), boundary


@dataclass(frozen=True)
class Dependency:
    """One event: channels coupled ("couple"), split into equal-count parts ("equal") or fixed
    ("fix"), by `node`, for the reason in `detail`."""

    node: str
    kind: str
    detail: str


@dataclass(eq=False)
class Port:
    """One side of a layer: `labels` holds the channel id of each of its channels."""

    module: str
    role: str  # "in" (weight columns), "out" (weight rows) or "norm" (per-channel params)
    labels: Tensor  # (C,) int64
    axis: int = 0  # LayerNorm: axis of normalized_shape the channels run along


class UnionFind:
    """Channel ids; the smaller of two united roots wins, so FIXED (0) stays its set's root."""

    def __init__(self) -> None:
        self.parent = [FIXED]

    def new(self, n: int) -> Tensor:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return torch.arange(start, start + n)

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True

    def union_pairs(self, a: Tensor, b: Tensor) -> bool:
        """Unite a[i] with b[i] wherever both are channels; True if any set grew."""
        a, b = a.reshape(-1), b.reshape(-1)
        both = (a >= 0) & (b >= 0) & (a != b)
        if not bool(both.any()):
            return False
        size = len(self.parent)
        pairs = (a[both] * size + b[both]).unique()  # one int per pair: 1-D unique is fast
        return any([self.union(p // size, p % size) for p in pairs.tolist()])

    def find_all(self, labels: Tensor) -> Tensor:
        """Labels replaced by the root of their set (NONE stays NONE)."""
        uniq, inverse = labels.unique(return_inverse=True)
        roots = [self.find(u) if u >= 0 else u for u in uniq.tolist()]
        return torch.tensor(roots, dtype=torch.long)[inverse]

    def fix(self, labels: Tensor) -> None:
        for x in labels[labels > 0].unique().tolist():
            self.union(x, FIXED)

    def roots(self) -> Tensor:
        root = list(self.parent)  # parent[i] <= i, so one ascending pass resolves every chain
        for i, p in enumerate(root):
            root[i] = root[p]
        return torch.tensor(root)


class Propagator:
    """Runs the traced graph on real values and labels; records ports, partitions, events."""

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module], leaves: set[str]) -> None:
        self.model = model
        self.modules = modules
        self.leaves = leaves
        self.uf = UnionFind()
        self.ports: dict[str, Port] = {}
        self.partitions: list[tuple[Tensor, Tensor]] = []  # (channel ids, part of each)
        self.nodes: list[Node] = []
        self.deps: list[Dependency] = []

    # -- events
    def fix(self, node: fx.Node, labels: Any, why: str) -> None:
        for t in tensors_of(labels):
            if bool((t > 0).any()):
                self.uf.fix(t)
                self.deps.append(Dependency(node.name, "fix", why))

    def couple(self, node: fx.Node, a: Tensor, b: Tensor, why: str) -> None:
        if self.uf.union_pairs(a, b):
            self.deps.append(Dependency(node.name, "couple", why))

    def partition(self, node: fx.Node, labels: Tensor, parts: Tensor, why: str) -> None:
        keep = labels >= 0
        if bool(keep.any()):
            self.partitions.append((labels[keep].reshape(-1), parts[keep].reshape(-1)))
            self.deps.append(Dependency(node.name, "equal", why))

    def port(self, name: str, role: str, labels: Tensor, axis: int = 0) -> None:
        key = f"{name}:{role}"
        if key in self.ports:  # a module called twice: both calls must keep the same channels
            self.uf.union_pairs(self.ports[key].labels, labels)
        else:
            self.ports[key] = Port(name, role, labels, axis)

    # -- running
    def run(self, graph: fx.Graph, example: Tensor) -> tuple[int, ...]:
        real: dict[fx.Node, Any] = {}
        lab: dict[fx.Node, Any] = {}
        last_use: dict[fx.Node, fx.Node] = {}
        for node in graph.nodes:
            for used in node.all_input_nodes:
                last_use[used] = node
        out_shape: tuple[int, ...] = ()
        first_input = True
        for node in graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: real[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: real[n])
            if node.op == "placeholder":
                if first_input:
                    real[node], first_input = example, False
                elif node.args:
                    real[node] = node.args[0]  # default value of an extra forward argument
                else:
                    raise ConfigError(
                        f"forward takes a second input {node.name!r}: pass one tensor"
                    )
                lab[node] = shaped_like(real[node], FIXED)
                rule = "input"
            elif node.op == "output":
                self.fix(node, fx.node.map_arg(node.args, lambda n: lab[n]), "model output")
                outs = tensors_of(args)
                out_shape = tuple(outs[0].shape[1:]) if outs else ()
                rule = "output"
            else:
                try:
                    real[node] = self.execute(node, args, kwargs)
                except Exception as e:
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                    raise ShapeError(
                        f"{type(self.model).__name__} fails on the example at {node.name!r}: "
                        f"{reason}; pass an example batch the model accepts"
                    ) from None
                call = Call(
                    node,
                    fx.node.map_arg(node.args, lambda n: lab[n]),
                    fx.node.map_arg(node.kwargs, lambda n: lab[n]),
                    real[node],
                )
                lab[node], rule = self.label(call)
            self.nodes.append(Node(node.name, node.op, target_name(node.target), rule))
            for used in node.all_input_nodes:
                if last_use[used] is node:
                    real.pop(used, None)
                    lab.pop(used, None)
        return out_shape

    def execute(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        obj: Any = self.model  # get_attr
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj

    def label(self, c: Call) -> tuple[Any, str]:
        if not tensors_of(c.out):
            return c.out, "value"  # sizes, dtypes and arithmetic on them
        node = c.node
        if node.op == "get_attr":
            return shaped_like(c.out, FIXED), "boundary"
        rule, name = None, target_name(node.target)
        if node.op == "call_module":
            c.module = self.modules[node.target]
            if node.target in self.leaves:
                return self.boundary(c, f"{node.target} is excluded"), "boundary"
            rule = next((r for types, r in MODULE_RULES if isinstance(c.module, types)), None)
            if isinstance(c.module, nn.PReLU) and c.module.num_parameters > 1:
                rule = None
            name = type(c.module).__name__
        elif node.op == "call_function":
            rule = FUNCTION_RULES.get(node.target)
            if node.target is operator.getitem and not isinstance(c.args[0], Tensor):
                return c.args[0][c.args[1]], "value"  # an item of a tuple of outputs
        elif node.op == "call_method":
            rule = METHOD_RULES.get(node.target)
        if rule is None:
            return self.boundary(c, f"{name} is not an op slimkit can map channels through"), (
                "boundary"
            )
        try:
            out = rule(self, c)
        except Exception as e:  # an op used in a way the rule does not cover: keep it whole
            return self.boundary(c, f"{name}: {type(e).__name__} {e}"[:160]), "boundary"
        if not same_shapes(out, c.out):
            return self.boundary(c, f"{name}: label shapes do not follow"), "boundary"
        return out, rule.__name__.strip("_")

    def boundary(self, c: Call, why: str) -> Any:
        self.fix(c.node, (c.args, c.kwargs), why)
        return shaped_like(c.out, FIXED)
