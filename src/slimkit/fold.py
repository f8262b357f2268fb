"""Fold inference-mode BatchNorm into the conv or linear layer before it.

In eval mode BN is the affine map y = γ·(x − μ)/√(σ² + ε) + β, so a conv or linear layer whose
only consumer is that BN absorbs it: W' = W·s per output channel, b' = (b − μ)·s + β with
s = γ/√(σ² + ε). The pairs are found on the traced graph (not by module order), so any model the
tracer follows folds — residual blocks, branches, custom forwards. The folded BN becomes
`nn.Identity`, which keeps every module name and the model a plain nn.Module that runs without
slimkit. Int8 quantization folds first, so its weights are the ones the int8 kernels run.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimkit.graph import trace
from slimkit.measure.common import eval_mode

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FOLDS_INTO = {
    nn.BatchNorm1d: (nn.Linear, nn.Conv1d),
    nn.BatchNorm2d: (nn.Conv2d,),
    nn.BatchNorm3d: (nn.Conv3d,),
}


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every foldable BatchNorm folded (input untouched)."""
    folded = copy.deepcopy(model)
    fold_bn_(folded)
    return folded


def fold_bn_(model: nn.Module) -> list[tuple[str, str]]:
    """Fold in place; returns the (layer, batchnorm) name pairs that were folded."""
    modules = dict(model.named_modules())
    pairs = []
    with eval_mode(model):
        graph = trace(model)
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BN):
            continue
        src = node.args[0] if node.args else None
        if (
            getattr(src, "op", None) == "call_module"
            and len(src.users) == 1
            and isinstance(modules[src.target], _FOLDS_INTO[type(modules[node.target])])
            and modules[node.target].track_running_stats
        ):
            pairs.append((src.target, node.target))
    for layer_name, bn_name in pairs:
        _fold(modules[layer_name], modules[bn_name])
        model.set_submodule(bn_name, nn.Identity())
    model.eval()
    return pairs


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        shift = shift + bn.bias.double()
    weight = layer.weight.double()
    shape = (-1,) + (1,) * (weight.dim() - 1)
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(shift)
    layer.weight.copy_((weight * scale.reshape(shape)).to(layer.weight.dtype))
    new_bias = (bias * scale + shift).to(layer.weight.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=layer.weight.requires_grad)
    else:
        layer.bias.copy_(new_bias)
