"""Per-op rules: how each traced op carries channel labels, and the tables that pick one.

Elementwise ops unite the ids they combine; shape ops (reshape, chunk, slice, pad, channel
shuffle) run on the labels themselves; reductions and pooling keep one id per channel; conv,
linear, norm and attention layers record their `Port`s and make fresh ids for their outputs.
An op missing from `MODULE_RULES`, `FUNCTION_RULES` and `METHOD_RULES` is a boundary.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules import pooling
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from slimkit.graph.labels import (
    FIXED,
    NONE,
    Call,
    channel_ids,
    spread_ids,
    target_name,
    tensors_of,
    varies,
)

if TYPE_CHECKING:  # rules only call the propagator passed to them: no import cycle
    from slimkit.graph.propagation import Propagator

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CHANNEL_NORM = (_BatchNorm, _InstanceNorm)


def _elementwise(b: Propagator, c: Call) -> Tensor:
    out = None
    for t in tensors_of((c.args, c.kwargs)):
        t = torch.broadcast_to(t, c.out.shape)
        if out is None:
            out = t
        else:
            b.couple(c.node, out, t, f"{target_name(c.node.target)} combines its inputs")
            out = torch.where(out >= 0, out, t)
    return out.contiguous()


def _identity(b: Propagator, c: Call) -> Tensor:
    return c.args[0].contiguous()  # dtype/device changes and copies keep every position


def _move(b: Propagator, c: Call) -> Any:
    if c.node.target in (torch.cat, torch.concat, torch.stack):
        tensors, dim = c.arg(0, "tensors"), c.arg(1, "dim", 0)
        stack = c.node.target is torch.stack
        dim %= tensors[0].dim() + stack
        for t in tensors[1:]:  # joined along a non-channel dim: their channels must match
            if stack:
                b.couple(c.node, tensors[0], t, "stack aligns its inputs")
            elif not any(varies(x, dim) for x in tensors):
                b.couple(c.node, tensors[0].narrow(dim, 0, 1), t.narrow(dim, 0, 1), "cat")
    return b.execute(c.node, c.args, c.kwargs)  # pure data movement: run it on the labels


def _literal_dims(c: Call) -> dict[int, bool]:
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


def _reshape(b: Propagator, c: Call) -> Tensor:
    out = b.execute(c.node, c.args, c.kwargs)
    literal = _literal_dims(c)
    varying = [d for d in range(out.dim()) if varies(out, d)]
    fixed = [d for d in varying if literal.get(d, False)]
    if not fixed:
        return out
    free = [d for d in varying if d not in fixed]
    if len(free) == 1:  # view(b, groups, -1, h, w) of a channel shuffle
        _same_offsets(b, c, out, free[0], "a literal group count")
    else:
        b.fix(c.node, out, "channel count written as a literal size")
    return out


def _same_offsets(b: Propagator, c: Call, lab: Tensor, dim: int, why: str) -> None:
    """Unite the channels at each index of `dim` across the other dims: the pruned tensor stays
    rectangular and, after a transpose (shuffle), its channels keep their original order."""
    rows = lab.movedim(dim, 0).reshape(lab.size(dim), -1)
    anchor = rows.amax(1, keepdim=True).expand_as(rows)
    b.couple(c.node, rows, anchor, f"{why}: the same offset is kept in every group")


def _chunk(b: Propagator, c: Call) -> Any:
    x, target = c.args[0], c.node.target
    dim = c.arg(1 if target in ("unbind", torch.unbind) else 2, "dim", 0) % x.dim()
    if varies(x, dim):
        size = None
        if target in ("chunk", torch.chunk):
            size = math.ceil(x.size(dim) / c.arg(1, "chunks"))
        elif isinstance(c.raw(1, "split_size_or_sections"), fx.Node) and isinstance(c.args[1], int):
            size = c.args[1]  # split size computed from the data: behaves like chunk
        if size is None:
            b.fix(c.node, x, "split sizes written as literals")
        else:
            part = spread_ids(torch.arange(x.size(dim)) // size, x.shape, dim)
            b.partition(c.node, x, part, "chunks keep equal sizes")
    return b.execute(c.node, c.args, c.kwargs)


def _slice(b: Propagator, c: Call) -> Any:
    x, target = c.args[0], c.node.target
    if target is operator.getitem:
        index = c.args[1] if isinstance(c.args[1], tuple) else (c.args[1],)
        if tensors_of(index):
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
            if not (whole and item.step in (None, 1)) and varies(x, dim):
                b.fix(c.node, x, "a slice of channels at literal positions")
            dim += 1
    elif target in ("roll", torch.roll):
        dims = c.arg(2, "dims")
        dims = range(x.dim()) if dims is None else dims if isinstance(dims, tuple) else (dims,)
        if any(varies(x, d) for d in dims):
            b.fix(c.node, x, "roll by a literal shift")
    elif varies(x, c.arg(1, "dim") % x.dim()):  # narrow, select
        b.fix(c.node, x, f"{target_name(target)} at a literal position")
    return b.execute(c.node, c.args, c.kwargs)


def _pad(b: Propagator, c: Call) -> Tensor:
    out, pad, mode = c.arg(0, "input"), c.arg(1, "pad"), c.arg(2, "mode", "constant")

    def full(dim: int, n: int, fill: int) -> Tensor:
        return torch.full((*out.shape[:dim], max(n, 0), *out.shape[dim + 1 :]), fill)

    for i in range(len(pad) // 2):
        dim, lo, hi = out.dim() - 1 - i, pad[2 * i], pad[2 * i + 1]
        size = out.size(dim) + lo + hi
        if lo == hi == 0:
            continue
        if varies(out, dim):  # padded channels are constants that pruning must keep
            if lo < 0 or hi < 0 or mode != "constant":
                raise ValueError("cropping or non-constant padding of channels")
            out = torch.cat([full(dim, lo, FIXED), out, full(dim, hi, FIXED)], dim)
        elif mode != "constant":  # one label along this dim: reflecting repeats it
            out = out.narrow(dim, 0, 1).expand(*out.shape[:dim], size, *out.shape[dim + 1 :])
        else:
            core = out.narrow(dim, max(-lo, 0), out.size(dim) + min(lo, 0) + min(hi, 0))
            out = torch.cat([full(dim, lo, NONE), core, full(dim, hi, NONE)], dim)
    return out.contiguous()


def _shuffle(b: Propagator, c: Call) -> Tensor:
    x = c.arg(0, "input")
    groups = c.module.groups if c.module is not None else c.arg(1, "groups")
    grid = x.view(x.size(0), groups, x.size(1) // groups, *x.shape[2:])  # (1, g, C/g, …)
    _same_offsets(b, c, grid, 2, "channel shuffle")
    return grid.transpose(1, 2).reshape(x.shape)


def _reduce(b: Propagator, c: Call) -> Any:
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


def _pool(b: Propagator, c: Call) -> Any:
    x = c.arg(0, "input")
    ids = channel_ids(x, 1)
    if ids is None:
        raise ValueError("pooling over dims that carry channels")
    if isinstance(c.out, tuple):
        return tuple(spread_ids(ids, o.shape, 1) for o in c.out)
    return spread_ids(ids, c.out.shape, 1)


def _side(b: Propagator, c: Call, x: Tensor, dim: int) -> Tensor:
    """Channel ids of a layer's input along `dim`; mixed or unlabeled channels become fixed."""
    ids = channel_ids(x, dim)
    if ids is None:
        b.fix(c.node, x, f"{c.node.target} reads channels mixed with other dims")
        ids = torch.full((x.size(dim),), FIXED, dtype=torch.long)
    return torch.where(ids < 0, FIXED, ids)


def _conv(b: Propagator, c: Call) -> Tensor:
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
    return spread_ids(out_ids, c.out.shape, 1)


def _linear(b: Propagator, c: Call) -> Tensor:
    x = c.arg(0, "input")
    b.port(c.node.target, "in", _side(b, c, x, x.dim() - 1))
    out_ids = b.uf.new(c.module.out_features)
    b.port(c.node.target, "out", out_ids)
    return spread_ids(out_ids, c.out.shape, c.out.dim() - 1)


def _norm(b: Propagator, c: Call) -> Tensor:
    x = c.arg(0, "input")
    ids = _side(b, c, x, 1)
    if isinstance(c.module, nn.GroupNorm):
        size = len(ids) // c.module.num_groups
        b.partition(c.node, ids, torch.arange(len(ids)) // size, "GroupNorm groups")
    b.port(c.node.target, "norm", ids)
    return x


def _layer_norm(b: Propagator, c: Call) -> Tensor:
    x = c.arg(0, "input")
    first = x.dim() - len(c.module.normalized_shape)
    varying = [d for d in range(first, x.dim()) if varies(x, d)]
    if len(varying) > 1:
        b.fix(c.node, x, "LayerNorm over several dims that carry channels")
    elif varying:
        b.port(c.node.target, "norm", _side(b, c, x, varying[0]), axis=varying[0] - first)
    return x


def _attention(b: Propagator, c: Call) -> Tensor:
    """scaled_dot_product_attention(q (…, L, E), k (…, S, E), v (…, S, Ev)) → (…, L, Ev).

    q·k pairs their channels one to one; every leading index (a head) of q meets the same index
    of k and v; the output carries v's channels. So a head lives or dies in q, k, v together.
    """
    q, k, v = c.arg(0, "query"), c.arg(1, "key"), c.arg(2, "value")
    if c.kwargs.get("enable_gqa") or any(varies(t, t.dim() - 2) for t in (q, k, v)):
        raise ValueError("grouped-query attention, or channels along the sequence")
    mask = c.arg(3, "attn_mask")
    if isinstance(mask, Tensor) and bool((mask > 0).any()):
        raise ValueError("an attention mask computed from channels")
    q, k, v = (t.narrow(-2, 0, 1) for t in (q, k, v))  # (…, 1, E): one id per feature
    b.couple(c.node, q, k, "attention pairs query and key channels")
    if any(varies(t, d) for t in (q, v) for d in range(t.dim() - 2)):  # a head dim
        b.couple(c.node, q[..., 0], v[..., 0], "attention aligns the heads of q, k and v")
    return torch.broadcast_to(v, c.out.shape).contiguous()


def _mha(b: Propagator, c: Call) -> Tensor:
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
MODULE_RULES: list[tuple[Any, Any]] = [
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

FUNCTION_RULES: dict[Any, Any] = {
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

METHOD_RULES: dict[str, Any] = {
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
