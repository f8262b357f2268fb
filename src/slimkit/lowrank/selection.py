"""Which layers may be replaced: `eligible_layers` finds the Linear and Conv2d layers that can
be swapped for a block by name (called as modules, not inside opaque torch.nn modules, earlier
blocks or parametrizations, weights not shared, not read as tensors), and `select_layers` applies
a user's `layers` / `exclude` choice to them with clear errors."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.nn.utils import parametrize

from slimkit.errors import ConfigError
from slimkit.graph import trace
from slimkit.lowrank.config import TAG, LayerFilter
from slimkit.measure.common import eval_mode


def _opaque(m: nn.Module) -> bool:
    """A torch.nn module that fx keeps whole (MultiheadAttention, TransformerEncoderLayer…): it
    may read its children's weights directly, so they cannot become blocks."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return type(m).__module__.startswith("torch.") and not isinstance(m, containers)


def eligible_layers(
    model: nn.Module, types: tuple[type[nn.Module], ...]
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Layers of `types` that can be swapped for a block by name, and why the others cannot.

    A layer is swappable when its parent calls it as a module: not inside an opaque torch.nn
    module, an earlier replacement block or a parametrization, its weight not shared with another
    module and — when the model traces — called in the graph and never read as a tensor.
    """
    modules = dict(model.named_modules())
    blocked: list[tuple[str, str]] = []  # (prefix, reason)
    for name, m in modules.items():
        if name and TAG in vars(m):
            blocked.append((name, "inside a factorized block"))
        elif name and _opaque(m) and next(m.children(), None) is not None:
            blocked.append((name, f"inside {type(m).__name__}, which reads its weights directly"))
    owners: dict[int, list[str]] = {}
    for name, m in modules.items():
        for p in m.parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    aliases: dict[int, list[str]] = {}  # one module under several names: swapping one breaks it
    for name, m in model.named_modules(remove_duplicate=False):
        aliases.setdefault(id(m), []).append(name)
    called: set[str] | None = None
    read: set[str] = set()
    try:
        with eval_mode(model):
            graph = trace(model)
        called = {n.target for n in graph.nodes if n.op == "call_module"}
        read = {n.target.rpartition(".")[0] for n in graph.nodes if n.op == "get_attr"}
    except ConfigError:
        pass  # untraceable: the structural checks alone decide
    ok: dict[str, nn.Module] = {}
    why: dict[str, str] = {}
    for name, m in modules.items():
        if not isinstance(m, types) or not name:
            continue
        reason = next((r for p, r in blocked if name.startswith(p + ".")), None)
        if reason is None and parametrize.is_parametrized(m):
            reason = "parametrized (quantized?)"
        if reason is None:
            shared = {o for p in m.parameters(recurse=False) for o in owners[id(p)]} - {name}
            shared |= set(aliases[id(m)]) - {name}
            if shared:
                reason = f"it or its weights are shared with {sorted(shared)[0]!r}"
        if reason is None and name in read:
            reason = "the model reads its weights as tensors"
        if reason is None and called is not None and name not in called:
            reason = "the traced forward never calls it"
        if reason is None:
            ok[name] = m
        else:
            why[name] = reason
    return ok, why


def select_layers(
    model: nn.Module,
    ok: dict[str, nn.Module],
    why: dict[str, str],
    layers: LayerFilter,
    exclude: tuple[str, ...],
    where: str,
    default: Sequence[str] | None = None,
) -> list[str]:
    """Names chosen by `layers` (names: each must be eligible; predicate: tried on eligible
    ones; None: `default` or every eligible layer) minus `exclude`."""
    names = dict(model.named_modules())
    for n in exclude:
        if n not in names:
            raise ConfigError(f"{where}: exclude names {n!r}, which {type(model).__name__} lacks")
    if callable(layers):
        chosen = [n for n, m in ok.items() if layers(n, m)]
    else:
        wanted = list(layers) if layers is not None else default
        if wanted is None:
            chosen = list(ok)
        else:
            for n in wanted:
                if n in why:
                    raise ConfigError(f"{where}: layer {n!r} cannot be replaced: {why[n]}")
                if n not in ok:
                    kind = type(names[n]).__name__ if n in names else None
                    shown = ", ".join(list(ok)[:30]) + (" …" if len(ok) > 30 else "")
                    raise ConfigError(
                        f"{where}: {n!r} is "
                        + (f"a {kind}, not a layer it replaces" if kind else "not a module")
                        + f" of {type(model).__name__}; eligible: {shown or 'none'}"
                    )
            chosen = list(dict.fromkeys(wanted))
    return [n for n in chosen if n not in exclude]
