"""Multiply-accumulate counts: dense, sparsity-aware, forward and training.

Counting rides on `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2, since it counts
a multiply-add as 2 FLOPs), with the formulas it lacks or gets wrong registered here:

- CPU scaled-dot-product attention (`_scaled_dot_product_flash_attention_for_cpu` and its
  backward) counts 0 upstream;
- the `nn.MultiheadAttention` / Transformer fast path (`_native_multi_head_attention`) counts 0:
  it is switched off while counting so the same work runs as countable linear + attention ops;
- grouped and depthwise convolution backward ignores `groups` upstream (overcounts by `groups`×);
- dynamic-quant linear (`quantized::linear_dynamic`) counts 0 upstream.

Effective MACs assume zero weights do no work: each Conv/Linear layer's MACs scale by the
fraction of its weights that are non-zero (every weight takes part in the same number of MACs).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from slimkit.measure.common import eval_mode, first_tensor
from slimkit.measure.params import weight_density

aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _grouped_conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """grad_input and grad_weight each cost what the forward costs (per group, then × groups)."""
    forward = conv_flop_count(
        list(x_shape), list(w_shape), list(grad_out_shape), transposed=bool(transposed)
    )
    # conv_flop_count already uses w_shape[1] = C_in / groups, so `forward` is the grouped cost.
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _linear_dynamic_flop(x_shape, *args, out_shape=None, **kwargs) -> int:
    in_features = x_shape[-1]
    return 2 * math.prod(out_shape) * in_features


_CUSTOM_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
    aten.convolution_backward: _grouped_conv_backward_flop,
    torch.ops.quantized.linear_dynamic: _linear_dynamic_flop,
}

_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)


@dataclass(frozen=True)
class MacCount:
    """MACs of one pass (forward, or forward + backward when `training`)."""

    dense: int  # MACs
    effective: int  # MACs skipping zero weights of Conv/Linear layers
    per_layer: dict[str, int] = field(default_factory=dict)  # leaf module name -> dense MACs
    outputs: dict[str, int] = field(default_factory=dict)  # leaf name -> output elements / sample
    batch_size: int = 1

    @property
    def activation_elements(self) -> int:
        """Elements all leaf layers write per sample (the activation traffic of one inference)."""
        return sum(self.outputs.values())


@contextlib.contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def count_macs(model: nn.Module, example: torch.Tensor, *, training: bool = False) -> MacCount:
    """Count the MACs of running `model` on `example` (a batch).

    With `training=True` the count covers forward + backward of a summed output on a copy of the
    model in train mode (the user's model is never touched: BN statistics stay as they were); a
    model with nothing to train counts its forward only.
    """
    if training:
        model = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FORMULAS)
    outputs: dict[str, int] = {}
    with _mha_fastpath_disabled(), contextlib.ExitStack() as stack:
        if not training:
            stack.enter_context(eval_mode(model))
            stack.enter_context(_record_outputs(model, outputs))
        if training:
            with counter:
                loss = first_tensor(model(example)).float().sum()
                # Nothing trainable (frozen weights, or a forward under no_grad such as a teacher
                # ensemble's): no backward pass, so training costs the forward alone.
                if loss.requires_grad:
                    loss.backward()
        else:
            with torch.no_grad(), counter:
                model(example)

    flops_by_module = counter.get_flop_counts()
    root = type(model).__name__
    per_layer: dict[str, int] = {}
    saved = 0
    for name, module in leaf_modules(model):  # leaves only: parents' counts include their children
        key = f"{root}.{name}" if name else root
        macs = sum(flops_by_module.get(key, {}).values()) // 2
        if macs == 0:
            continue
        per_layer[name] = macs
        if isinstance(module, _WEIGHTED):
            saved += round(macs * (1.0 - weight_density(module.weight)))
    dense = counter.get_total_flops() // 2
    return MacCount(
        dense=dense,
        effective=dense - saved,
        per_layer=per_layer,
        outputs=outputs,
        batch_size=example.shape[0],
    )


def leaf_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Modules without children (the model itself when it is a single layer, named "")."""
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            yield name, module


@contextlib.contextmanager
def _record_outputs(model: nn.Module, outputs: dict[str, int]) -> Iterator[None]:
    """Note each leaf's output elements per sample."""

    def hook_for(name: str):
        def hook(_m, _inp, out):
            if isinstance(out, torch.Tensor) and out.dim():
                outputs[name] = out[0].numel()

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaf_modules(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
