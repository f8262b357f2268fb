"""Static int8 quantization on torch's int8 kernels: post-training (PTQ) and quantization-aware
training (QAT), through torchao's PT2E flow and inductor.

Flow: BatchNorm is folded first (`slimkit.fold`), the model is exported with a dynamic batch,
`X86InductorQuantizer` marks conv/linear (+ReLU, add, pooling) for int8 — weights per channel,
symmetric; activations per tensor, affine uint8 — observers are calibrated (PTQ) or fake
quantization is trained (QAT, straight-through estimator), and `convert_pt2e` produces the
quantize/dequantize graph that inductor lowers to oneDNN int8 kernels under `torch.compile` with
freezing. Without compiling the same graph runs, slower than fp32, as a reference.

Measured on this 2-core AMD EPYC (AVX-512 with VNNI; torch 2.13, torchao 0.18, 1 thread):
compiled int8 runs 1.7× (LeNet-5 Caffe) to 3× (ResNet-20) faster than compiled fp32 at batch 64;
at batch 1 the per-call overhead dominates and ONNX Runtime's int8 (`slimkit.quant.int8_onnx`)
is the faster runtime. Without VNNI, 7-bit activations (`reduce_range`) avoid overflow in the
u8×s8 multiply-adds; the default follows the CPU (`slimkit.quant.cpu`).

Every quantized model is a *plan*: the BN-folded float model plus one (scale, zero point) per
observed tensor, keyed by what it observes. `Int8Model` builds the int8 graph from the plan, so
PTQ, QAT and `load_int8` all produce the same graph, and a saved model stores int8 weight codes,
the float biases and the qparams — no pickled graph, nothing executed on load.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.arch import changed_layers, check_arch, describe, read_description, rebuild
from slimkit.compiled import CompiledModel
from slimkit.data import ArrayDataset, calibration_subset
from slimkit.errors import ConfigError, DataError, ShapeError, WeightsError
from slimkit.fold import fold_bn_
from slimkit.measure.common import check_input
from slimkit.quant.cpu import default_reduce_range
from slimkit.weights import read_safetensors, save_weights

# inductor's int8 lowering copies a tensor the way torch warns about; nothing the user can act on.
warnings.filterwarnings(
    "ignore", message="To copy construct from a tensor", module="torch._inductor.mkldnn_lowerings"
)

METADATA_KEY = "slimkit.int8"
FORMAT = "slimkit.int8/1"
_OBSERVERS = ("histogram", "minmax")


@dataclass(frozen=True)
class Int8Config:
    """observer: how activation ranges are chosen — "histogram" (minimizes the L2 quantization
    error, torchao's default) or "minmax"; samples: calibration images; reduce_range: 7-bit
    activations, None = only on x86 without VNNI."""

    observer: str = "histogram"
    samples: int = 512
    batch_size: int = 64
    reduce_range: bool | None = None

    def __post_init__(self) -> None:
        if self.observer not in _OBSERVERS:
            raise ConfigError(
                f"Int8Config: observer must be one of {_OBSERVERS}, got {self.observer!r}"
            )
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError("Int8Config: samples and batch_size must be >= 1")


# --- the plan and the int8 model --------------------------------------------------------------


class Int8Model(nn.Module):
    """An int8 model: `float_model` (BN folded) + `qparams`, built into a converted PT2E graph.

    forward runs the graph compiled by inductor (int8 kernels) on the first call per input
    shape; `compiled=False` runs it eagerly (reference semantics, slow).
    """

    def __init__(
        self,
        float_model: nn.Module,
        layers: dict[str, Any],
        qparams: dict[str, tuple[Tensor, Tensor]],
        example: Tensor,
        config: Int8Config,
        *,
        compiled: bool = True,
        activation_qparams: list[tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.layers = layers  # shapes of the unfolded model, to rebuild it on load
        self.float_state = {k: v.detach().clone() for k, v in float_model.state_dict().items()}
        self.input_shape = tuple(example.shape[1:])
        self.num_classes = getattr(float_model, "num_classes", None)
        self.graph_module, self.qparams = _build(
            float_model, qparams, activation_qparams, example, config
        )
        self.compiled = compiled
        self._runner = CompiledModel(self.graph_module) if compiled else self.graph_module

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"int8 model expects input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self._runner(x)

    def int8_weights(self) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Per quantized weight: (int8 codes, per-channel scale, zero point)."""
        return _weight_codes(self.float_state, self.qparams)

    def train(self, mode: bool = True) -> Int8Model:
        if mode:
            raise ConfigError("an int8 model cannot train: fine-tune the float model or use QAT")
        self.training = False  # the exported graph has no train mode to switch
        return self


def _build(
    float_model: nn.Module,
    qparams: dict[str, tuple[Tensor, Tensor]],
    activation_qparams: list[tuple[Tensor, Tensor]] | None,
    example: Tensor,
    cfg: Int8Config,
) -> tuple[torch.fx.GraphModule, dict[str, tuple[Tensor, Tensor]]]:
    """Convert the plan; qparams of activations missing from `qparams` are taken from
    `activation_qparams` in observer order (how a saved file stores them, without names)."""
    prepare_pt2e, convert_pt2e = _pt2e()
    prepared = prepare_pt2e(_export(float_model, example), _quantizer(cfg, qat=False))
    pending = list(activation_qparams or [])
    resolved: dict[str, tuple[Tensor, Tensor]] = {}
    for name, observer, key in _observers(prepared):
        if key not in qparams and not key.startswith("weight:") and pending:
            resolved[key] = pending.pop(0)
        elif key in qparams:
            resolved[key] = qparams[key]
        else:
            raise WeightsError(f"int8 plan has no quantization parameters for {key!r}")
        prepared.set_submodule(name, _fixed_qparams_class()(observer, *resolved[key]))
    extra = sorted(set(qparams) - set(resolved))
    if extra or pending:
        what = repr(extra[0]) if extra else f"{len(pending)} more activations"
        raise WeightsError(f"int8 plan holds parameters for {what}, which this model lacks")
    with _quiet():
        converted = convert_pt2e(prepared)
    _drop_unused(converted)
    return converted, resolved


# --- PTQ and QAT ------------------------------------------------------------------------------


def quantize_int8(
    model: nn.Module,
    calib: ArrayDataset,
    config: Int8Config | None = None,
    *,
    compiled: bool = True,
) -> Int8Model:
    """Post-training static int8: fold BN, calibrate on `calib`, convert. `model` is untouched."""
    cfg = config or Int8Config()
    images = _calibration_images(model, calib, cfg)
    float_model = _folded_copy(model)
    prepare_pt2e, _ = _pt2e()
    prepared = prepare_pt2e(
        _export(float_model, images[: cfg.batch_size]), _quantizer(cfg, qat=False)
    )
    with torch.no_grad():
        for start in range(0, len(images), cfg.batch_size):
            prepared(images[start : start + cfg.batch_size])
    return _finish(float_model, describe(model), prepared, images[:2], cfg, compiled)


class QATModel(nn.Module):
    """A model with int8 fake quantization (straight-through estimator) to train with
    `slimkit.train.fit` or `slimkit.distill.distill`; `convert_qat` turns it into an Int8Model.
    BatchNorm is folded before training, so BN statistics stay frozen while the weights adapt to
    the quantization grid (the usual last phase of QAT)."""

    def __init__(self, model: nn.Module, example: Tensor, config: Int8Config) -> None:
        super().__init__()
        with _quiet():
            from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

        self.config = config
        self.input_shape = tuple(example.shape[1:])
        self.num_classes = getattr(model, "num_classes", None)
        self.layers = describe(model)
        self.float_model = _folded_copy(model)
        self.graph_module = prepare_qat_pt2e(
            _export(self.float_model, example), _quantizer(config, qat=True)
        )
        self._mode(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.graph_module(x)

    def train(self, mode: bool = True) -> QATModel:
        self.training = mode
        self._mode(mode)
        return self

    def _mode(self, train: bool) -> None:
        from torchao.quantization.pt2e import (
            move_exported_model_to_eval,
            move_exported_model_to_train,
        )

        (move_exported_model_to_train if train else move_exported_model_to_eval)(self.graph_module)


def prepare_qat(model: nn.Module, example: Tensor, config: Int8Config | None = None) -> QATModel:
    """Wrap a copy of `model` for quantization-aware training (the input model is untouched)."""
    check_input(model, example)
    example = example[:2] if len(example) > 1 else torch.cat([example, example])
    return QATModel(model, example, config or Int8Config())


def convert_qat(qat: QATModel, *, compiled: bool = True) -> Int8Model:
    """The trained QAT model as int8: its trained weights and learned ranges."""
    qat.eval()
    state = {
        node.target: getattr_path(qat.graph_module, node.target)
        for node in qat.graph_module.graph.nodes
        if node.op == "get_attr"
        and isinstance(getattr_path(qat.graph_module, node.target), nn.Parameter)
    }
    float_model = copy.deepcopy(qat.float_model)
    float_model.load_state_dict(
        {**float_model.state_dict(), **{k: v.detach() for k, v in state.items()}}
    )
    example = torch.zeros(2, *qat.input_shape)
    return _finish(float_model, qat.layers, qat.graph_module, example, qat.config, compiled)


def getattr_path(obj: Any, path: str) -> Any:
    return functools.reduce(getattr, path.split("."), obj)


def _finish(
    float_model: nn.Module,
    layers: dict[str, Any],
    prepared: torch.fx.GraphModule,
    example: Tensor,
    cfg: Int8Config,
    compiled: bool,
) -> Int8Model:
    qparams = {}
    for _, observer, key in _observers(prepared):
        scale, zero_point = observer.calculate_qparams()
        qparams[key] = (scale.detach().clone().float(), zero_point.detach().clone().to(torch.int64))
    float_layers = [
        name
        for name, m in float_model.named_modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        and f"weight:{name}.weight" not in qparams
    ]
    if float_layers:
        warnings.warn(
            f"{len(float_layers)} layer(s) stay float (no int8 pattern for them in torchao's x86 "
            f"quantizer): {', '.join(float_layers[:8])}{' ...' if len(float_layers) > 8 else ''}",
            stacklevel=3,
        )
    # The plan's float weights are the dequantized int8 weights, so a saved and reloaded model
    # (which stores codes) is bit-identical to this one.
    state = float_model.state_dict()
    for name, (codes, scale, zp) in _weight_codes(state, qparams).items():
        state[name] = _dequantize(codes, scale, zp)
    float_model.load_state_dict(state)
    return Int8Model(float_model, layers, qparams, example, cfg, compiled=compiled)


# --- saving and loading -----------------------------------------------------------------------


def save_int8(model: Int8Model, path: str | os.PathLike, *, arch: dict[str, Any]) -> Path:
    """One safetensors file: the int8 weight codes by name; the per-channel weight scales and
    zero points, the other float tensors (biases) and the activation qparams each as one flat
    tensor in a fixed order (the rebuilt model's state order, the observer order), so names are
    not repeated; a JSON header with the architecture and the layers whose shapes changed."""
    if not isinstance(model, Int8Model):
        raise ConfigError(
            "save_int8 needs an Int8Model from quantize_int8 or convert_qat, got "
            f"{type(model).__name__}"
        )
    state = model.float_state
    codes = model.int8_weights()
    int8_names = [n for n in state if n in codes]
    acts = [v for k, v in model.qparams.items() if not k.startswith("weight:")]
    if any(scale.numel() != 1 for scale, _ in acts):
        raise ConfigError("save_int8 stores per-tensor activation qparams only")
    floats = [state[n].flatten().float() for n in state if n not in codes]
    tensors: dict[str, Tensor] = {n: codes[n][0] for n in int8_names}
    tensors.update(
        {
            "packed/float": torch.cat(floats) if floats else torch.zeros(0),
            "packed/weight_scale": torch.cat([codes[n][1].flatten() for n in int8_names]),
            "packed/weight_zero_point": torch.cat([codes[n][2].flatten() for n in int8_names]).to(
                torch.int8
            ),
            "packed/act_scale": torch.cat([s.flatten() for s, _ in acts]),
            "packed/act_zero_point": torch.cat([z.flatten() for _, z in acts]).to(torch.int16),
        }
    )
    header = {
        "format": FORMAT,
        "arch": check_arch(arch),
        "layers": changed_layers(model.layers, arch),
        "config": asdict(model.config),
        "input_shape": list(model.input_shape),
    }
    return save_weights(tensors, path, metadata={METADATA_KEY: json.dumps(header)})


def load_int8(
    path: str | os.PathLike,
    factory: Callable[..., nn.Module] | None = None,
    *,
    compiled: bool = True,
) -> Int8Model:
    """Rebuild an Int8Model saved by `save_int8` (bit-identical outputs)."""
    path = Path(path)
    tensors, meta = read_safetensors(path)
    header = read_description(
        path,
        meta,
        key=METADATA_KEY,
        fmt=FORMAT,
        what="int8 model",
        saver="save_int8",
        dicts=("arch", "layers", "config"),
    )
    where = f"'{path.name}'"
    model = rebuild(header["arch"], header["layers"], factory, where=where)
    layers = describe(model)  # the full unfolded shapes, for saving it again
    model = _folded_copy(model)
    packed = {
        k.removeprefix("packed/"): tensors.pop(k) for k in list(tensors) if k.startswith("packed/")
    }
    missing = {"float", "weight_scale", "weight_zero_point", "act_scale", "act_zero_point"} - set(
        packed
    )
    if missing:
        raise WeightsError(f"{where} lacks its {sorted(missing)[0]} section: the file is damaged")
    state = model.state_dict()
    qparams: dict[str, tuple[Tensor, Tensor]] = {}
    floats, scales, zps = packed["float"], packed["weight_scale"], packed["weight_zero_point"]
    f_at = w_at = 0
    try:
        for name, like in state.items():
            if name in tensors:
                codes = tensors.pop(name)
                rows = codes.shape[0] if codes.dim() else 0
                scale, zp = scales[w_at : w_at + rows], zps[w_at : w_at + rows].to(torch.int64)
                if (
                    codes.dtype != torch.int8
                    or tuple(codes.shape) != tuple(like.shape)
                    or len(scale) != rows
                ):
                    raise ValueError(name)
                w_at += rows
                qparams[f"weight:{name}"] = (scale, zp)
                state[name] = _dequantize(codes, scale, zp)
            else:
                n = like.numel()
                if f_at + n > len(floats):
                    raise ValueError(name)
                state[name] = floats[f_at : f_at + n].reshape(like.shape).to(like.dtype)
                f_at += n
    except ValueError as e:
        raise WeightsError(
            f"{where}: {e} does not fit the rebuilt model: the file is for another architecture"
        ) from None
    if tensors or f_at != len(floats) or w_at != len(scales):
        raise WeightsError(f"{where} holds tensors the rebuilt model lacks: another architecture?")
    model.load_state_dict(state)
    acts = list(zip(packed["act_scale"].split(1), packed["act_zero_point"].to(torch.int64).split(1),
                    strict=True))  # fmt: skip
    cfg = Int8Config(**header["config"])
    example = torch.zeros(2, *header["input_shape"])
    return Int8Model(
        model, layers, qparams, example, cfg, compiled=compiled, activation_qparams=acts
    )


# --- internals --------------------------------------------------------------------------------


@contextmanager
def _quiet():
    """torchao logs missing CUDA extensions and export warns about deprecations: not the user's
    business on a CPU."""
    # torchao's import also makes torch's pytree logger warn about its enums.
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@functools.cache
def _pt2e():
    with _quiet():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    return prepare_pt2e, convert_pt2e


def _quantizer(cfg: Int8Config, *, qat: bool):
    with _quiet():
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.observer import MinMaxObserver

    reduce_range = default_reduce_range() if cfg.reduce_range is None else cfg.reduce_range
    qconfig = xiq.get_default_x86_inductor_quantization_config(
        is_qat=qat, reduce_range=reduce_range
    )
    if cfg.observer == "minmax" and not qat:
        act = qconfig.input_activation
        act = type(act)(
            **{**act.__dict__, "observer_or_fake_quant_ctr": MinMaxObserver.with_args(eps=2**-12)}
        )
        qconfig = type(qconfig)(act, act, qconfig.weight, qconfig.bias, qconfig.is_qat)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(qconfig)
    return quantizer


def _export(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    batch = torch.export.Dim.DYNAMIC
    try:
        with _quiet():
            return torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(
            f"cannot export {type(model).__name__} for int8 ({reason}); keep the offending "
            "operation out of forward or quantize with slimkit.quant.quantize_onnx_static"
        ) from None


def _observers(prepared: torch.fx.GraphModule):
    """(module name, observer, key) for every observer: key 'weight:<param>' for weights, else
    the name of the graph node whose output it observes."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase
    from torchao.quantization.pt2e.observer import ObserverBase

    for node in prepared.graph.nodes:
        if node.op != "call_module":
            continue
        observer = prepared.get_submodule(node.target)
        if not isinstance(observer, (ObserverBase, FakeQuantizeBase)):
            continue
        src = node.args[0]
        key = f"weight:{src.target}" if src.op == "get_attr" else src.name
        yield node.target, observer, key


@functools.cache
def _fixed_qparams_class() -> type:
    """An observer with known qparams, so converting a plan needs no data. It must subclass
    torchao's ObserverBase: convert_pt2e only replaces modules it recognizes as observers."""
    with _quiet():
        from torchao.quantization.pt2e.observer import ObserverBase

    class FixedQParams(ObserverBase):
        def __init__(self, like: nn.Module, scale: Tensor, zero_point: Tensor) -> None:
            super().__init__(like.dtype, getattr(like, "is_dynamic", False))
            for attr in ("qscheme", "ch_axis", "quant_min", "quant_max"):
                if hasattr(like, attr):
                    setattr(self, attr, getattr(like, attr))
            self.register_buffer("scale", scale)
            self.register_buffer("zero_point", zero_point)

        def forward(self, x: Tensor) -> Tensor:
            return x

        def calculate_qparams(self) -> tuple[Tensor, Tensor]:
            return self.scale, self.zero_point

    return FixedQParams


def _weight_codes(state: dict[str, Tensor], qparams: dict[str, tuple[Tensor, Tensor]]):
    out = {}
    for key, (scale, zp) in qparams.items():
        if not key.startswith("weight:"):
            continue
        name = key.removeprefix("weight:")
        w = state[name]
        shape = (-1,) + (1,) * (w.dim() - 1)
        codes = torch.clamp(torch.round(w / scale.reshape(shape)) + zp.reshape(shape), -128, 127)
        out[name] = (codes.to(torch.int8), scale, zp)
    return out


def _dequantize(codes: Tensor, scale: Tensor, zp: Tensor) -> Tensor:
    shape = (-1,) + (1,) * (codes.dim() - 1)
    return (codes.float() - zp.reshape(shape).float()) * scale.reshape(shape)


def _drop_unused(gm: torch.fx.GraphModule) -> None:
    """convert_pt2e leaves the original fp32 weights as attributes; the int8 graph no longer
    reads them, and they would double the measured size."""
    gm.graph.eliminate_dead_code()
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for name in [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]:
        if name not in used:
            parent, _, attr = name.rpartition(".")
            owner = gm.get_submodule(parent) if parent else gm
            delattr(owner, attr)
    gm.delete_all_unused_submodules()
    gm.recompile()


def _folded_copy(model: nn.Module) -> nn.Module:
    folded = copy.deepcopy(model)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules()):
        fold_bn_(folded)  # needs an fx trace; models without BN only need torch.export
    for name, t in folded.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ConfigError(f"cannot quantize: {name!r} holds NaN or Inf values")
    return folded


def _calibration_images(model: nn.Module, calib: ArrayDataset, cfg: Int8Config) -> Tensor:
    if not isinstance(calib, ArrayDataset):
        raise DataError(f"calibration data must be an ArrayDataset, got {type(calib).__name__}")
    if len(calib) == 0:
        raise DataError("calibration data is empty: pass a few hundred training images")
    images = calibration_subset(calib, cfg.samples).normalized(
        torch.arange(min(cfg.samples, len(calib)))
    )
    check_input(model, images[:1])
    if len(images) < 2:
        images = images.repeat(2, 1, 1, 1)
    return images
