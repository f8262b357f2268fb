"""torch.fx tracing for the channel graph: torch.nn layers and named leaves stay whole, and a
failure names the module where tracing stopped."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from torch import fx, nn

from slimkit.errors import ConfigError


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
