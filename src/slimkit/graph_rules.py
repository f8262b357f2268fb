"""How each traced op carries channel labels: the propagation half of `slimkit.graph`.

The traced graph runs once on one real sample (for shapes) and once on *label tensors*: every
position of every activation holds the id of the channel it belongs to (NONE = -1: no channel;
FIXED = 0: must not change). Layers create fresh ids for their output channels. Shape ops (view,
transpose, cat, chunk, flatten, channel shuffle, pad) run on the labels themselves, so their index
mapping comes for free; elementwise ops (residual add, multiplication by a gate) unite the ids
they combine in a union-find; an op without a rule is a boundary that fixes what it touches.

The rules also record what a pruner must respect beyond plain couplings: the channels on each
side of a layer (`Port`), and equal-count constraints (grouped convs, GroupNorm, chunk).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules import pooling
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from slimkit.errors import ConfigError, ShapeError

FIXED = 0  # id of "must not change": input, output, boundaries
NONE = -1  # label of a position that belongs to no channel (constants, padding)

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CHANNEL_NORM = (_BatchNorm, _InstanceNorm)


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


def _varies(lab: Tensor, dim: int) -> bool:
    return lab.size(dim) > 1 and bool((lab != lab.narrow(dim, 0, 1)).any())


def _channel_ids(lab: Tensor, dim: int) -> Tensor | None:
    """One id per index along `dim` when ids do not vary along the other dims (NONE ignored)."""
    rows = lab.movedim(dim, 0).reshape(lab.size(dim), -1)
    has = rows >= 0
    hi = rows.amax(1)
    lo = torch.where(has, rows, torch.iinfo(rows.dtype).max).amin(1)
    return hi if bool(((lo == hi) | ~has.any(1)).all()) else None


def _spread(ids: Tensor, shape: torch.Size, dim: int) -> Tensor:
    view = [1] * len(shape)
    view[dim] = -1
    return ids.view(view).expand(shape).contiguous()


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _like(value: Any, fill: int) -> Any:
    """A label structure shaped like the real output `value`, every position `fill`."""
    if isinstance(value, Tensor):
        return torch.full(value.shape, fill, dtype=torch.long)
    if isinstance(value, (tuple, list)):
        return tuple(_like(v, fill) for v in value)
    return value


def _same_shapes(lab: Any, real: Any) -> bool:
    a, b = _tensors(lab), _tensors(real)
    return len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b, strict=True))


@dataclass
class _Call:
    node: fx.Node
    args: tuple  # label side: label tensors for tensors, real values otherwise
    kwargs: dict
    out: Any  # real output for a batch of one
    module: nn.Module | None = None

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        return self.args[i] if len(self.args) > i else self.kwargs.get(name, default)

    def raw(self, i: int, name: str) -> Any:
        """The fx argument itself, to tell a literal int from a computed one."""
        return self.node.args[i] if len(self.node.args) > i else self.node.kwargs.get(name)


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
        for t in _tensors(labels):
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
                lab[node] = _like(real[node], FIXED)
                rule = "input"
            elif node.op == "output":
                self.fix(node, fx.node.map_arg(node.args, lambda n: lab[n]), "model output")
                outs = _tensors(args)
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
                call = _Call(
                    node,
                    fx.node.map_arg(node.args, lambda n: lab[n]),
                    fx.node.map_arg(node.kwargs, lambda n: lab[n]),
                    real[node],
                )
                lab[node], rule = self.label(call)
            self.nodes.append(Node(node.name, node.op, _target_name(node.target), rule))
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

    def label(self, c: _Call) -> tuple[Any, str]:
        if not _tensors(c.out):
            return c.out, "value"  # sizes, dtypes and arithmetic on them
        node = c.node
        if node.op == "get_attr":
            return _like(c.out, FIXED), "boundary"
        rule, name = None, _target_name(node.target)
        if node.op == "call_module":
            c.module = self.modules[node.target]
            if node.target in self.leaves:
                return self.boundary(c, f"{node.target} is excluded"), "boundary"
            rule = next((r for types, r in _MODULE_RULES if isinstance(c.module, types)), None)
            if isinstance(c.module, nn.PReLU) and c.module.num_parameters > 1:
                rule = None
            name = type(c.module).__name__
        elif node.op == "call_function":
            rule = _FUNCTION_RULES.get(node.target)
            if node.target is operator.getitem and not isinstance(c.args[0], Tensor):
                return c.args[0][c.args[1]], "value"  # an item of a tuple of outputs
        elif node.op == "call_method":
            rule = _METHOD_RULES.get(node.target)
        if rule is None:
            return self.boundary(c, f"{name} is not an op slimkit can map channels through"), (
                "boundary"
            )
        try:
            out = rule(self, c)
        except Exception as e:  # an op used in a way the rule does not cover: keep it whole
            return self.boundary(c, f"{name}: {type(e).__name__} {e}"[:160]), "boundary"
        if not _same_shapes(out, c.out):
            return self.boundary(c, f"{name}: label shapes do not follow"), "boundary"
        return out, rule.__name__.strip("_")

    def boundary(self, c: _Call, why: str) -> Any:
        self.fix(c.node, (c.args, c.kwargs), why)
        return _like(c.out, FIXED)


def _target_name(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


# --- rules: how each op carries channel labels ------------------------------------------------


def _elementwise(b: Propagator, c: _Call) -> Tensor:
    out = None
    for t in _tensors((c.args, c.kwargs)):
        t = torch.broadcast_to(t, c.out.shape)
        if out is None:
            out = t
        else:
            b.couple(c.node, out, t, f"{_target_name(c.node.target)} combines its inputs")
            out = torch.where(out >= 0, out, t)
    return out.contiguous()


def _identity(b: Propagator, c: _Call) -> Tensor:
    return c.args[0].contiguous()  # dtype/device changes and copies keep every position


def _move(b: Propagator, c: _Call) -> Any:
    if c.node.target in (torch.cat, torch.concat, torch.stack):
        tensors, dim = c.arg(0, "tensors"), c.arg(1, "dim", 0)
        stack = c.node.target is torch.stack
        dim %= tensors[0].dim() + stack
        for t in tensors[1:]:  # joined along a non-channel dim: their channels must match
            if stack:
                b.couple(c.node, tensors[0], t, "stack aligns its inputs")
            elif not any(_varies(x, dim) for x in tensors):
                b.couple(c.node, tensors[0].narrow(dim, 0, 1), t.narrow(dim, 0, 1), "cat")
    return b.execute(c.node, c.args, c.kwargs)  # pure data movement: run it on the labels


def _literal_dims(c: _Call) -> dict[int, bool]:
    """Output dim -> whether its size is a literal int in the code (so it cannot shrink)."""
    node, target = c.node, c.node.target
    if isinstance(c.module, nn.Unflatten):
        start, sizes = c.module.dim % c.args[0].dim(), c.module.unflattened_size
    elif target in ("unflatten", torch.unflatten):
        start, sizes = c.arg(1, "dim") % c.args[0].dim(), c.raw(2, "sizes")
    elif target is torch.reshape:
        start, sizes = 0, c.raw(1, "shape")
    else:  # view / reshape / expand: sizes as varargs or as one sequence
        rest = node.args[1:] or (node.kwargs.get("size", node.kwargs.get("shape")),)
        start = 0
        sizes = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
    if not isinstance(sizes, (tuple, list)):
        return {}  # one computed shape: every size follows the data
    return {
        start + i: isinstance(s, int) and not isinstance(s, bool) and s != -1
        for i, s in enumerate(sizes)
    }


def _reshape(b: Propagator, c: _Call) -> Tensor:
    out = b.execute(c.node, c.args, c.kwargs)
    literal = _literal_dims(c)
    varying = [d for d in range(out.dim()) if _varies(out, d)]
    fixed = [d for d in varying if literal.get(d, False)]
    if not fixed:
        return out
    free = [d for d in varying if d not in fixed]
    if len(free) == 1:  # view(b, groups, -1, h, w) of a channel shuffle
        _same_offsets(b, c, out, free[0], "a literal group count")
    else:
        b.fix(c.node, out, "channel count written as a literal size")
    return out


def _same_offsets(b: Propagator, c: _Call, lab: Tensor, dim: int, why: str) -> None:
    """Unite the channels at each index of `dim` across the other dims: the pruned tensor stays
    rectangular and, after a transpose (shuffle), its channels keep their original order."""
    rows = lab.movedim(dim, 0).reshape(lab.size(dim), -1)
    anchor = rows.amax(1, keepdim=True).expand_as(rows)
    b.couple(c.node, rows, anchor, f"{why}: the same offset is kept in every group")


def _chunk(b: Propagator, c: _Call) -> Any:
    x, target = c.args[0], c.node.target
    dim = c.arg(1 if target in ("unbind", torch.unbind) else 2, "dim", 0) % x.dim()
    if _varies(x, dim):
        size = None
        if target in ("chunk", torch.chunk):
            size = math.ceil(x.size(dim) / c.arg(1, "chunks"))
        elif isinstance(c.raw(1, "split_size_or_sections"), fx.Node) and isinstance(c.args[1], int):
            size = c.args[1]  # split size computed from the data: behaves like chunk
        if size is None:
            b.fix(c.node, x, "split sizes written as literals")
        else:
            part = _spread(torch.arange(x.size(dim)) // size, x.shape, dim)
            b.partition(c.node, x, part, "chunks keep equal sizes")
    return b.execute(c.node, c.args, c.kwargs)


def _slice(b: Propagator, c: _Call) -> Any:
    x, target = c.args[0], c.node.target
    if target is operator.getitem:
        index = c.args[1] if isinstance(c.args[1], tuple) else (c.args[1],)
        if _tensors(index):
            raise TypeError("indexing by a tensor")
        explicit = sum(i is not None and i is not Ellipsis for i in index)
        dim = 0
        for item in index:
            if item is Ellipsis:
                dim += x.dim() - explicit
                continue
            if item is None:
                continue
            whole = isinstance(item, slice) and item.start is None and item.stop is None
            if not (whole and item.step in (None, 1)) and _varies(x, dim):
                b.fix(c.node, x, "a slice of channels at literal positions")
            dim += 1
    elif target in ("roll", torch.roll):
        dims = c.arg(2, "dims")
        dims = range(x.dim()) if dims is None else dims if isinstance(dims, tuple) else (dims,)
        if any(_varies(x, d) for d in dims):
            b.fix(c.node, x, "roll by a literal shift")
    elif _varies(x, c.arg(1, "dim") % x.dim()):  # narrow, select
        b.fix(c.node, x, f"{_target_name(target)} at a literal position")
    return b.execute(c.node, c.args, c.kwargs)


def _pad(b: Propagator, c: _Call) -> Tensor:
    out, pad, mode = c.arg(0, "input"), c.arg(1, "pad"), c.arg(2, "mode", "constant")

    def full(dim: int, n: int, fill: int) -> Tensor:
        return torch.full((*out.shape[:dim], max(n, 0), *out.shape[dim + 1 :]), fill)

    for i in range(len(pad) // 2):
        dim, lo, hi = out.dim() - 1 - i, pad[2 * i], pad[2 * i + 1]
        size = out.size(dim) + lo + hi
        if lo == hi == 0:
            continue
        if _varies(out, dim):  # padded channels are constants that pruning must keep
            if lo < 0 or hi < 0 or mode != "constant":
                raise ValueError("cropping or non-constant padding of channels")
            out = torch.cat([full(dim, lo, FIXED), out, full(dim, hi, FIXED)], dim)
        elif mode != "constant":  # one label along this dim: reflecting repeats it
            out = out.narrow(dim, 0, 1).expand(*out.shape[:dim], size, *out.shape[dim + 1 :])
        else:
            core = out.narrow(dim, max(-lo, 0), out.size(dim) + min(lo, 0) + min(hi, 0))
            out = torch.cat([full(dim, lo, NONE), core, full(dim, hi, NONE)], dim)
    return out.contiguous()


def _shuffle(b: Propagator, c: _Call) -> Tensor:
    x = c.arg(0, "input")
    groups = c.module.groups if c.module is not None else c.arg(1, "groups")
    grid = x.view(x.size(0), groups, x.size(1) // groups, *x.shape[2:])  # (1, g, C/g, …)
    _same_offsets(b, c, grid, 2, "channel shuffle")
    return grid.transpose(1, 2).reshape(x.shape)


def _reduce(b: Propagator, c: _Call) -> Any:
    x = c.args[0]
    if c.node.target in ("max", "min", torch.max, torch.min) and isinstance(
        c.arg(1, "other"), Tensor
    ):
        return _elementwise(b, c)
    i = 2 if c.node.target in ("norm", torch.norm) else 1
    dim = c.arg(i, "dim", c.kwargs.get("axis"))
    keepdim = bool(c.arg(i + 1, "keepdim", False))
    dims = (
        tuple(range(x.dim()))
        if dim is None or isinstance(dim, bool)
        else (
            tuple(d % x.dim() for d in dim) if isinstance(dim, (tuple, list)) else (dim % x.dim(),)
        )
    )
    roots = b.uf.find_all(x)  # coupled channels (a stack of branches, say) reduce cleanly
    hi = roots.amax(dims, keepdim=keepdim)
    lo = torch.where(roots >= 0, roots, torch.iinfo(x.dtype).max).amin(dims, keepdim=keepdim)
    out = torch.where(lo == hi, hi, NONE)  # a mix of channels belongs to none of them...
    if bool(((lo != hi) & (hi >= 0)).any()) and bool((out >= 0).any()):
        raise ValueError("mixes channels while another dim still carries channels")  # ...alone
    return tuple(out for _ in c.out) if isinstance(c.out, tuple) else out


def _pool(b: Propagator, c: _Call) -> Any:
    x = c.arg(0, "input")
    ids = _channel_ids(x, 1)
    if ids is None:
        raise ValueError("pooling over dims that carry channels")
    if isinstance(c.out, tuple):
        return tuple(_spread(ids, o.shape, 1) for o in c.out)
    return _spread(ids, c.out.shape, 1)


def _side(b: Propagator, c: _Call, x: Tensor, dim: int) -> Tensor:
    """Channel ids of a layer's input along `dim`; mixed or unlabeled channels become fixed."""
    ids = _channel_ids(x, dim)
    if ids is None:
        b.fix(c.node, x, f"{c.node.target} reads channels mixed with other dims")
        ids = torch.full((x.size(dim),), FIXED, dtype=torch.long)
    return torch.where(ids < 0, FIXED, ids)


def _conv(b: Propagator, c: _Call) -> Tensor:
    m, name = c.module, c.node.target
    ids = _side(b, c, c.arg(0, "input"), 1)
    out_ids = b.uf.new(m.out_channels)
    if m.groups > 1 and m.groups == m.in_channels:  # depthwise: output o reads input o // mult
        b.couple(c.node, out_ids, ids.repeat_interleave(m.out_channels // m.groups), "depthwise")
    elif m.groups > 1:  # grouped: every group keeps the same number of inputs and outputs
        for side, n in ((ids, m.in_channels), (out_ids, m.out_channels)):
            b.partition(c.node, side, torch.arange(n) // (n // m.groups), "grouped conv")
    b.port(name, "in", ids)
    b.port(name, "out", out_ids)
    return _spread(out_ids, c.out.shape, 1)


def _linear(b: Propagator, c: _Call) -> Tensor:
    x = c.arg(0, "input")
    b.port(c.node.target, "in", _side(b, c, x, x.dim() - 1))
    out_ids = b.uf.new(c.module.out_features)
    b.port(c.node.target, "out", out_ids)
    return _spread(out_ids, c.out.shape, c.out.dim() - 1)


def _norm(b: Propagator, c: _Call) -> Tensor:
    x = c.arg(0, "input")
    ids = _side(b, c, x, 1)
    if isinstance(c.module, nn.GroupNorm):
        size = len(ids) // c.module.num_groups
        b.partition(c.node, ids, torch.arange(len(ids)) // size, "GroupNorm groups")
    b.port(c.node.target, "norm", ids)
    return x


def _layer_norm(b: Propagator, c: _Call) -> Tensor:
    x = c.arg(0, "input")
    first = x.dim() - len(c.module.normalized_shape)
    varying = [d for d in range(first, x.dim()) if _varies(x, d)]
    if len(varying) > 1:
        b.fix(c.node, x, "LayerNorm over several dims that carry channels")
    elif varying:
        b.port(c.node.target, "norm", _side(b, c, x, varying[0]), axis=varying[0] - first)
    return x


def _attention(b: Propagator, c: _Call) -> Tensor:
    """scaled_dot_product_attention(q (…, L, E), k (…, S, E), v (…, S, Ev)) → (…, L, Ev).

    q·k pairs their channels one to one; every leading index (a head) of q meets the same index
    of k and v; the output carries v's channels. So a head lives or dies in q, k, v together.
    """
    q, k, v = c.arg(0, "query"), c.arg(1, "key"), c.arg(2, "value")
    if c.kwargs.get("enable_gqa") or any(_varies(t, t.dim() - 2) for t in (q, k, v)):
        raise ValueError("grouped-query attention, or channels along the sequence")
    mask = c.arg(3, "attn_mask")
    if isinstance(mask, Tensor) and bool((mask > 0).any()):
        raise ValueError("an attention mask computed from channels")
    q, k, v = (t.narrow(-2, 0, 1) for t in (q, k, v))  # (…, 1, E): one id per feature
    b.couple(c.node, q, k, "attention pairs query and key channels")
    if any(_varies(t, d) for t in (q, v) for d in range(t.dim() - 2)):  # a head dim
        b.couple(c.node, q[..., 0], v[..., 0], "attention aligns the heads of q, k and v")
    return torch.broadcast_to(v, c.out.shape).contiguous()


def _mha(b: Propagator, c: _Call) -> Tensor:
    raise ValueError(
        "keeps its heads (q/k/v and output widths are embed_dim); "
        "slimkit.prune.split_attention makes them prunable"
    )


_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Softsign,
    nn.PReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
    nn.Softmax, nn.LogSoftmax,
)  # fmt: skip
_POOL_MODULES = (
    pooling._MaxPoolNd, pooling._AvgPoolNd, pooling._AdaptiveAvgPoolNd,
    pooling._AdaptiveMaxPoolNd, pooling._LPPoolNd, nn.Upsample,
)  # fmt: skip
_MODULE_RULES: list[tuple[Any, Any]] = [
    (CONV, _conv),
    (nn.Linear, _linear),
    ((*CHANNEL_NORM, nn.GroupNorm), _norm),
    (nn.LayerNorm, _layer_norm),
    (_ELEMENTWISE_MODULES, _elementwise),
    (_POOL_MODULES, _pool),
    (nn.Flatten, _move),
    (nn.Unflatten, _reshape),
    (nn.ChannelShuffle, _shuffle),
    (nn.MultiheadAttention, _mha),
]  # anything else: a boundary

_FUNCTION_RULES: dict[Any, Any] = {
    **{f: _elementwise for f in (
        operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow,
        operator.iadd, operator.isub, operator.imul, operator.itruediv, torch.add, torch.sub,
        torch.mul, torch.div, torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.log,
        torch.abs, torch.sqrt, torch.rsqrt, torch.clamp, torch.clip, torch.maximum,
        torch.minimum, torch.where, torch.softmax, torch.log_softmax, torch.erf, torch.square,
        torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, F.relu, F.relu6,
        F.gelu, F.silu, F.sigmoid, F.tanh, F.hardswish, F.hardsigmoid, F.hardtanh, F.leaky_relu,
        F.elu, F.selu, F.mish, F.softplus, F.softmax, F.log_softmax, F.normalize, F.dropout,
        F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    )},
    **{f: _move for f in (
        torch.flatten, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze, torch.cat,
        torch.concat, torch.stack, torch.flip, torch.movedim,
    )},
    **{f: _reduce for f in (
        torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std,
        torch.var, torch.norm, torch.logsumexp, torch.argmax, torch.argmin,
    )},
    **{f: _pool for f in (
        F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate,
    )},
    torch.reshape: _reshape, torch.unflatten: _reshape,
    torch.chunk: _chunk, torch.split: _chunk, torch.unbind: _chunk,
    operator.getitem: _slice, torch.narrow: _slice, torch.select: _slice, torch.roll: _slice,
    F.pad: _pad, torch.channel_shuffle: _shuffle, F.channel_shuffle: _shuffle,
    F.scaled_dot_product_attention: _attention,
}  # fmt: skip

_METHOD_RULES: dict[str, Any] = {
    **dict.fromkeys((
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "sigmoid",
        "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_max", "pow", "exp",
        "log", "abs", "neg", "sqrt", "rsqrt", "masked_fill", "masked_fill_", "softmax",
        "log_softmax", "erf", "square", "maximum", "minimum", "expand_as",
    ), _elementwise),
    **dict.fromkeys((
        "to", "float", "double", "half", "bfloat16", "type", "type_as", "contiguous", "clone",
        "detach", "cpu", "requires_grad_",
    ), _identity),
    **dict.fromkeys((
        "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze", "flip", "movedim",
        "repeat", "view_as", "reshape_as",
    ), _move),
    **dict.fromkeys(("view", "reshape", "expand", "unflatten"), _reshape),
    **dict.fromkeys(("chunk", "split", "unbind"), _chunk),
    **dict.fromkeys(("narrow", "select", "roll"), _slice),
    **dict.fromkeys((
        "mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp",
        "argmax", "argmin",
    ), _reduce),
}  # fmt: skip
