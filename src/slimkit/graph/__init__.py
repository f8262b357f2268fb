"""Channel-coupling graph: which channels of which layers must be pruned together.

Removing channel c of a conv is only possible if every tensor that channel flows into shrinks with
it: the BatchNorm after the conv, the other side of a residual add, one slice of a concat, the H·W
features a flattened channel feeds to a Linear, the gate of a squeeze-and-excitation block. This
package finds those couplings once per model:

1. `torch.fx` traces the model (`tracing`: torch.nn layers are leaves; modules named in `leaves`
   are kept whole as opaque boundaries).
2. `propagation` runs the traced graph on one real sample and on *label tensors* (`labels`)
   holding the channel id of every activation position; per `op_rules`, layers make fresh ids,
   shape ops move them, elementwise ops unite them, unknown ops fix them.
3. `groups`: the union-find over ids yields *units*: sets of channels that live or die together.
   Units that touch the input, the output or a boundary are fixed. Units that touch the same layer
   sides form a `Group`. Equal-count constraints (grouped convs, GroupNorm, chunk) become per-unit
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
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.errors import ConfigError, ShapeError
from slimkit.graph.groups import Group, Member, channel_groups
from slimkit.graph.labels import FIXED, NONE
from slimkit.graph.op_rules import CHANNEL_NORM, CONV
from slimkit.graph.propagation import Dependency, Node, Port, Propagator
from slimkit.graph.tracing import trace
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
    roots, groups = channel_groups(builder)
    return ChannelGraph(model, builder.nodes, builder.deps, groups, builder.ports, roots, out_shape)
