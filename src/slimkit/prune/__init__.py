"""Pruning: unstructured magnitude pruning with masks and schedules, sparse storage, and
structured channel pruning that removes channels for real, with its importance criteria.
Attention heads: `split_attention` turns nn.MultiheadAttention into HeadAttention, whose heads
`prune_channels` removes whole."""

from slimkit.nn.transformer import HeadAttention, split_attention
from slimkit.prune.importance import (
    IMPORTANCE,
    accumulate_grads,
    bn_sparsity,
    bn_sparsity_loss,
    get_importance,
    register_importance,
)
from slimkit.prune.sparse import from_sparse, load_sparse, save_sparse, sparse_bytes, to_sparse
from slimkit.prune.structured import (
    ChannelPruning,
    load_pruned,
    prune_channels,
    prune_channels_,
    save_pruned,
)
from slimkit.prune.unstructured import (
    MagnitudePruning,
    apply_masks,
    compute_masks,
    cubic_sparsity,
    current_masks,
    gradual_prune,
    iterative_prune,
    make_permanent,
    prunable_layers,
    prune_magnitude,
    reapply_masks,
)

__all__ = [
    "IMPORTANCE",
    "ChannelPruning",
    "HeadAttention",
    "MagnitudePruning",
    "accumulate_grads",
    "apply_masks",
    "bn_sparsity",
    "bn_sparsity_loss",
    "compute_masks",
    "cubic_sparsity",
    "current_masks",
    "from_sparse",
    "get_importance",
    "gradual_prune",
    "iterative_prune",
    "load_pruned",
    "load_sparse",
    "make_permanent",
    "prunable_layers",
    "prune_channels",
    "prune_channels_",
    "prune_magnitude",
    "reapply_masks",
    "register_importance",
    "save_pruned",
    "save_sparse",
    "sparse_bytes",
    "split_attention",
    "to_sparse",
]
