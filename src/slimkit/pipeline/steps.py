"""The steps a recipe can chain, each a thin call into the library verb of the same name.

A step receives the pipeline `State` — the current float model and what has been done to it —
and returns where its artifact went and, for runtime steps (int8, ONNX), the model to measure.
Steps that change the float model (prune, finetune, distill, k-bit quantize, fuse) hand it on;
deployment steps (int8 and dynamic quantization, export) produce an artifact and leave the float
model as it was, so a recipe can, say, export both the fp32 and the int8 model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit import prune, quant, share
from slimkit.convert import Conversion, convert
from slimkit.data import DataSplits
from slimkit.distill import distill
from slimkit.errors import ConfigError
from slimkit.export import export_onnx
from slimkit.fold import fold_bn_
from slimkit.lowrank import LowRank, describe_blocks, factorize, factorized_layers, save_factorized
from slimkit.train import TrainConfig, fit


@dataclass
class State:
    """The float model between steps. `sparse`: its zeros are pruned weights, held at zero by
    later training; `folded`: BatchNorm was folded (rebuilding it on resume folds again)."""

    model: nn.Module
    sparse: bool = False
    folded: bool = False
    unfolded_layers: dict[str, Any] | None = None  # layer shapes before folding, to rebuild


@dataclass
class Context:
    data: DataSplits
    teacher: nn.Module  # the recipe's input model: the distillation teacher of every step
    arch: dict[str, Any]
    out: Path  # this step's folder
    threads: int = 1
    progress: bool | None = None


@dataclass
class StepOutput:
    artifact: Path | None
    deployed: nn.Module | None = None  # a runtime model measured instead of the float model
    notes: dict[str, Any] = field(default_factory=dict)


def fields_of(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


TRAIN_KEYS = fields_of(TrainConfig) - {"label_loss_weight"}
DISTILL_KEYS = {"distill_alpha", "temperature", "mirror_teacher"}


def _pick(params: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in keys}


def _train_config(params: dict[str, Any], default_epochs: int = 0) -> TrainConfig | None:
    """TrainConfig from the step's training keys; epochs 0 means no training."""
    kwargs = _pick(params, TRAIN_KEYS)
    epochs = kwargs.pop("epochs", default_epochs)
    if epochs == 0:
        return None
    kwargs.setdefault("lr", 0.01)
    kwargs.setdefault("weight_decay", 1e-4)
    return TrainConfig(epochs=epochs, **kwargs)


def _check_distill(params: dict[str, Any]) -> None:
    alpha = params.get("distill_alpha", 0.0)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise ConfigError(f"distill_alpha must be a number in [0, 1], got {alpha!r}")
    temperature = params.get("temperature", 4.0)
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or temperature <= 0
    ):
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}")
    if not isinstance(params.get("mirror_teacher", False), bool):
        raise ConfigError(f"mirror_teacher must be true or false, got {params['mirror_teacher']!r}")


def train(state: State, ctx: Context, cfg: TrainConfig, params: dict[str, Any]) -> None:
    """Fine-tune the state's model, keeping pruned weights at zero, distilling if asked."""
    model = state.model
    after_step = None
    if state.sparse:
        if not prune.current_masks(model):  # resumed from a file: the zeros are the mask
            masks = {n: m.weight != 0 for n, m in prune.prunable_layers(model).items()}
            prune.apply_masks(model, masks)
        after_step = prune.reapply_masks
    alpha = params.get("distill_alpha", 0.0)
    if alpha > 0:
        distill(
            model,
            ctx.teacher,
            ctx.data.train,
            cfg,
            temperature=params.get("temperature", 4.0),
            alpha=alpha,
            mirror=params.get("mirror_teacher", False),
            after_step=after_step,
            progress=ctx.progress,
        )
    else:
        fit(model, ctx.data.train, cfg, after_step=after_step, progress=ctx.progress)
    model.eval()


def _example(ctx: Context) -> torch.Tensor:
    return ctx.data.test.normalized(torch.arange(2))


# --- the steps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    name: str
    help: str
    allowed: Callable[[dict[str, Any]], set[str]]
    build: Callable[[dict[str, Any]], dict[str, Any]]
    run: Callable[[State, dict[str, Any], Context], StepOutput]


# prune ---------------------------------------------------------------------------------------

# "gradual": Zhu & Gupta's cubic sparsity ramp over `ramp_epochs` while training (magnitude).
_PRUNE_OPTIONS = {"method", "gradual", "ramp_epochs"} | DISTILL_KEYS | TRAIN_KEYS
_MAGNITUDE_KEYS = fields_of(prune.MagnitudePruning) - {"include_types"}
_CHANNEL_KEYS = fields_of(prune.ChannelPruning)


def _prune_allowed(params: dict[str, Any]) -> set[str]:
    method = params.get("method", "magnitude")
    return _PRUNE_OPTIONS | (_CHANNEL_KEYS if method == "channel" else _MAGNITUDE_KEYS)


def _prune_build(params: dict[str, Any]) -> dict[str, Any]:
    method = params.get("method", "magnitude")
    if method not in ("magnitude", "channel"):
        raise ConfigError(f"method must be 'magnitude' or 'channel', got {method!r}")
    gradual = params.get("gradual", False)
    if not isinstance(gradual, bool) or (method == "channel" and gradual):
        raise ConfigError(
            f"gradual must be true or false (magnitude pruning only), got {gradual!r}"
        )
    _check_distill(params)
    train_cfg = _train_config(params)
    if method == "magnitude":
        kwargs = _pick(params, _MAGNITUDE_KEYS)
        for key in ("exclude",):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        config = prune.MagnitudePruning(**kwargs)
    else:
        kwargs = _pick(params, _CHANNEL_KEYS)
        if "exclude" in kwargs:
            kwargs["exclude"] = tuple(kwargs["exclude"])
        config = prune.ChannelPruning(**kwargs)
    ramp = params.get("ramp_epochs")
    if gradual:
        if train_cfg is None:
            raise ConfigError("a gradual schedule prunes while training: set epochs >= 1")
        ramp = train_cfg.epochs if ramp is None else ramp
        if not isinstance(ramp, int) or not 1 <= ramp <= train_cfg.epochs:
            raise ConfigError(f"ramp_epochs must be an int in [1, epochs], got {ramp!r}")
    return {"method": method, "gradual": gradual, "config": config, "train": train_cfg,
            "ramp": ramp}  # fmt: skip


def _prune_run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
    params, cfg = built["params"], built["train"]
    if built["method"] == "channel":
        state.model = prune.prune_channels(
            state.model, built["config"], _example(ctx), data_batch=ctx.data.train.first(256)
        )  # gradients for data-driven criteria (taylor)
        if state.sparse:  # surviving zeros stay pruned
            state.model = prune.make_permanent(state.model)
        if cfg is not None:
            train(state, ctx, cfg, params)
        return StepOutput(_save_float(state, ctx))
    if built["gradual"]:
        hook = None
        if params.get("distill_alpha", 0) > 0:
            from slimkit.distill import Distillation

            hook = Distillation(
                ctx.teacher,
                params.get("temperature", 4.0),
                params["distill_alpha"],
                params.get("mirror_teacher", False),
            )
            cfg = dataclasses.replace(cfg, label_loss_weight=1 - params["distill_alpha"])
        prune.gradual_prune(
            state.model,
            ctx.data.train,
            built["config"],
            epochs=built["ramp"],
            finetune=cfg,
            prune_every_steps=max(1, len(ctx.data.train) // cfg.batch_size // 4),
            extra_loss=hook,
            progress=ctx.progress,
        )
    else:
        prune.prune_magnitude(state.model, built["config"])
        state.sparse = True
        if cfg is not None:
            train(state, ctx, cfg, params)
    state.sparse = True
    prune.make_permanent(state.model)
    artifact = prune.save_sparse(state.model, ctx.out / "model.sparse.safetensors")
    return StepOutput(artifact)


# finetune / distill ------------------------------------------------------------------------------


def _finetune_build(params: dict[str, Any]) -> dict[str, Any]:
    _check_distill(params)
    cfg = _train_config(params, default_epochs=1)
    if cfg is None:
        raise ConfigError("epochs must be >= 1 for a training step")
    return {"train": cfg}


def _finetune_run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
    train(state, ctx, built["train"], built["params"])
    return StepOutput(_save_float(state, ctx))


def _distill_build(params: dict[str, Any]) -> dict[str, Any]:
    params = {"distill_alpha": 0.9, **params}
    built = _finetune_build(params)
    built["params"] = params
    return built


def _save_float(state: State, ctx: Context) -> Path:
    if state.sparse:
        return prune.save_sparse(state.model, ctx.out / "model.sparse.safetensors")
    if factorized_layers(state.model):
        return save_factorized(state.model, ctx.out / "model.safetensors", arch=ctx.arch)
    return prune.save_pruned(state.model, ctx.out / "model.safetensors", arch=ctx.arch)


# factorize / convert (layer surgery) -----------------------------------------------------------

_SURGERY_OPTIONS = DISTILL_KEYS | TRAIN_KEYS
_LOWRANK_KEYS = fields_of(LowRank)
_CONVERSION_KEYS = fields_of(Conversion)


def _surgery_build(cls: type, keys: set[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(params: dict[str, Any]) -> dict[str, Any]:
        _check_distill(params)
        kwargs = _pick(params, keys)
        for key in ("exclude", "layers"):  # YAML lists → the tuples the configs keep
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        if isinstance(kwargs.get("rank"), list):  # Tucker-2's (rank_in, rank_out)
            kwargs["rank"] = tuple(kwargs["rank"])
        return {"config": cls(**kwargs), "train": _train_config(params)}

    return build


def _surgery_run(verb: Callable[[nn.Module, Any], nn.Module]):
    """Factorize or convert layers, then recover by training (distilling when asked). Pruned
    zeros do not survive: the new factors are dense."""

    def run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
        state.model = verb(state.model, built["config"])
        state.sparse = False
        if built["train"] is not None:
            train(state, ctx, built["train"], built["params"])
        state.model.eval()
        return StepOutput(_save_float(state, ctx))

    return run


# quantize --------------------------------------------------------------------------------------

QUANT_SCHEMES = ("int8", "int8-qat", "dynamic", "kbit", "binary", "ternary", "fp16", "bf16")
_INT8_KEYS = fields_of(quant.Int8Config)
_KBIT_KEYS = (fields_of(quant.KBitConfig) - {"scheme"}) | {"kbit_scheme"}
_QUANT_OPTIONS = {"scheme", "runtime", "calibration"} | DISTILL_KEYS


def _quantize_allowed(params: dict[str, Any]) -> set[str]:
    scheme = params.get("scheme", "int8")
    if scheme in ("kbit", "binary", "ternary"):
        return _QUANT_OPTIONS | _KBIT_KEYS | TRAIN_KEYS
    if scheme == "int8-qat":
        return _QUANT_OPTIONS | _INT8_KEYS | TRAIN_KEYS
    if scheme == "int8":
        return _QUANT_OPTIONS | _INT8_KEYS
    return {"scheme"}


def _quantize_build(params: dict[str, Any]) -> dict[str, Any]:
    scheme = params.get("scheme", "int8")
    if scheme not in QUANT_SCHEMES:
        raise ConfigError(f"scheme must be one of {', '.join(QUANT_SCHEMES)}, got {scheme!r}")
    runtime = params.get("runtime", "onnxruntime" if scheme == "int8" else "torch")
    if runtime not in ("torch", "onnxruntime") or (scheme != "int8" and "runtime" in params):
        raise ConfigError("runtime ('torch' or 'onnxruntime') applies to scheme int8 only")
    _check_distill(params)
    built: dict[str, Any] = {"scheme": scheme, "runtime": runtime}
    if scheme in ("int8", "int8-qat"):
        built["config"] = quant.Int8Config(**_pick(params, _INT8_KEYS))
        calibration = params.get("calibration", "minmax")
        bad = calibration not in ("minmax", "percentile", "entropy") or runtime != "onnxruntime"
        if bad and "calibration" in params:
            raise ConfigError(
                "calibration (minmax, percentile, entropy) is for runtime onnxruntime; "
                "the torch runtime takes observer: histogram or minmax"
            )
        built["calibration"] = calibration
    if scheme in ("kbit", "binary", "ternary"):
        kwargs = _pick(params, _KBIT_KEYS)
        kbit_scheme = kwargs.pop("kbit_scheme", "uniform")
        if scheme != "kbit" and "kbit_scheme" in params:
            raise ConfigError("kbit_scheme (uniform or lsq) is for scheme kbit")
        if "exclude" in kwargs:
            kwargs["exclude"] = tuple(kwargs["exclude"])
        built["config"] = quant.KBitConfig(scheme=kbit_scheme if scheme == "kbit" else scheme,
                                           **kwargs)  # fmt: skip
    if scheme in ("kbit", "binary", "ternary", "int8-qat"):
        built["train"] = _train_config(params)
    return built


def _quantize_run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
    scheme, params = built["scheme"], built["params"]
    model, data = state.model, ctx.data
    if scheme == "int8" and built["runtime"] == "onnxruntime":
        path = ctx.out / "model.int8.onnx"
        deployed = quant.quantize_onnx_static(
            model,
            data.train,
            path,
            method=built["calibration"],
            samples=built["config"].samples,
            threads=ctx.threads,
        )
        return StepOutput(path, deployed, notes={"int8": True})
    if scheme == "int8":
        deployed = quant.quantize_int8(model, data.train, built["config"])
        artifact = quant.save_int8(deployed, ctx.out / "model.int8.safetensors", arch=ctx.arch)
        return StepOutput(artifact, deployed, notes={"int8": True})
    if scheme == "int8-qat":
        qat = quant.prepare_qat(model, _example(ctx), built["config"])
        if built["train"] is not None:
            train(State(qat), ctx, built["train"], params)
        deployed = quant.convert_qat(qat)
        artifact = quant.save_int8(deployed, ctx.out / "model.int8.safetensors", arch=ctx.arch)
        return StepOutput(artifact, deployed, notes={"int8": True})
    if scheme == "dynamic":
        path = ctx.out / "model.dynamic-int8.onnx"
        deployed = quant.quantize_onnx_dynamic(model, path, _example(ctx), threads=ctx.threads)
        return StepOutput(path, deployed)
    if scheme in ("fp16", "bf16"):
        dtype = torch.float16 if scheme == "fp16" else torch.bfloat16
        deployed = quant.to_half(model, dtype)
        from slimkit.weights import save_weights

        return StepOutput(save_weights(deployed, ctx.out / f"model.{scheme}.safetensors"), deployed)
    fake = quant.quantize_kbit(model, built["config"])
    if built["train"] is not None:
        train(State(fake), ctx, built["train"], params)
    artifact = quant.save_kbit(fake, ctx.out / "model.kbit.safetensors", arch=ctx.arch)
    bits = {name: p.bits for name, p in quant.kbit_layers(fake).items()}
    state.model = quant.freeze_kbit(fake)
    return StepOutput(artifact, notes={"layer_bits": bits})


# share (Deep Compression) -----------------------------------------------------------------------

_SHARE_KEYS = (fields_of(share.WeightSharing) - {"type_bits", "include_types"}) | {"conv_bits"}
_SHARE_OPTIONS = {"coders"} | DISTILL_KEYS | TRAIN_KEYS


def _share_build(params: dict[str, Any]) -> dict[str, Any]:
    _check_distill(params)
    kwargs = _pick(params, _SHARE_KEYS)
    conv_bits = kwargs.pop("conv_bits", None)
    if "exclude" in kwargs:
        kwargs["exclude"] = tuple(kwargs["exclude"])
    type_bits = {nn.Conv2d: conv_bits} if conv_bits is not None else None
    config = share.WeightSharing(type_bits=type_bits, **kwargs)
    coders = params.get("coders", list(share.CODERS))
    if not isinstance(coders, list) or any(c not in share.CODERS for c in coders):
        raise ConfigError(f"coders must be a list drawn from {', '.join(share.CODERS)}")
    return {"config": config, "coders": tuple(coders), "train": _train_config(params)}


def _share_run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
    """k-means weight sharing (pruned zeros stay zero), centroid fine-tuning, then the coded
    .slim file; the float model carries the shared values on."""
    shared = share.share_weights(state.model, built["config"])
    if built["train"] is not None:
        train(State(shared), ctx, built["train"], built["params"])
    artifact = share.save_compressed(
        shared, ctx.out / "model.slim", arch=ctx.arch, coders=built["coders"]
    )
    bits = {key.rpartition(".")[0]: p.bits for key, p in share.shared_tensors(shared).items()}
    state.model = share.freeze_shared(shared)
    return StepOutput(artifact, notes={"layer_bits": bits})


# fuse / export ---------------------------------------------------------------------------------


def _fuse_run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
    if not state.folded:
        state.unfolded_layers = describe_blocks(state.model)[0]
    pairs = fold_bn_(state.model)
    state.folded = True
    return StepOutput(_save_float(state, ctx), notes={"folded": [list(p) for p in pairs]})


def _export_build(params: dict[str, Any]) -> dict[str, Any]:
    fmt = params.get("format", "onnx")
    if fmt != "onnx":
        raise ConfigError(f"format must be 'onnx', got {fmt!r}")
    return {}


def _export_run(state: State, built: dict[str, Any], ctx: Context) -> StepOutput:
    from slimkit.export import OnnxModel

    path = export_onnx(state.model, ctx.out / "model.onnx", _example(ctx))
    return StepOutput(path, OnnxModel(path, threads=ctx.threads))


def _no_options(_: dict[str, Any]) -> set[str]:
    return set()


STEPS: dict[str, StepSpec] = {
    spec.name: spec
    for spec in (
        StepSpec(
            "prune",
            "magnitude (unstructured) or channel (structured) pruning, optional fine-tune",
            _prune_allowed,
            _prune_build,
            _prune_run,
        ),
        StepSpec(
            "finetune",
            "train the current model (pruned weights stay zero)",
            lambda p: TRAIN_KEYS | DISTILL_KEYS,
            _finetune_build,
            _finetune_run,
        ),
        StepSpec(
            "distill",
            "train against the input model's soft targets (Hinton et al.)",
            lambda p: TRAIN_KEYS | DISTILL_KEYS,
            _distill_build,
            _finetune_run,
        ),
        StepSpec(
            "factorize",
            "low-rank factorization: SVD of Linear, Tucker-2 or CP of Conv2d, then recovery",
            lambda p: _LOWRANK_KEYS | _SURGERY_OPTIONS,
            _surgery_build(LowRank, _LOWRANK_KEYS),
            _surgery_run(factorize),
        ),
        StepSpec(
            "convert",
            "k×k convs → depthwise-separable or asymmetric (k×1, 1×k) convs, then recovery",
            lambda p: _CONVERSION_KEYS | _SURGERY_OPTIONS,
            _surgery_build(Conversion, _CONVERSION_KEYS),
            _surgery_run(convert),
        ),
        StepSpec(
            "quantize",
            "int8 (onnxruntime/torch), int8-qat, dynamic, kbit, binary, ternary, fp16, bf16",
            _quantize_allowed,
            _quantize_build,
            _quantize_run,
        ),
        StepSpec(
            "share",
            "k-means weight sharing + centroid fine-tuning, entropy-coded .slim file",
            lambda p: _SHARE_KEYS | _SHARE_OPTIONS,
            _share_build,
            _share_run,
        ),
        StepSpec("fuse", "fold BatchNorm into conv/linear", _no_options, lambda p: {}, _fuse_run),
        StepSpec(
            "export",
            "ONNX export of the current model",
            lambda p: {"format"},
            _export_build,
            _export_run,
        ),
    )
}


def build_step(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The validated, constructed configs of one step (what `run` receives)."""
    spec = STEPS[kind]
    built = spec.build(params)
    built.setdefault("params", params)
    return built
