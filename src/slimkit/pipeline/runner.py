"""Run a recipe: every step measured, saved, and reused when re-run unchanged.

Output folder layout:

    out/run.json                      the recipe and its input key (what a resume must match)
    out/00-baseline/result.json       the input model's Metrics
    out/01-prune/result.json          the step's key, Metrics, artifact name, time
    out/01-prune/state.safetensors    the float model after the step (resume point)
    out/01-prune/model.*              the step's artifact
    out/report.json, out/report.html  every number, and the charts

Each step's key hashes the input key and every step up to it, so a re-run reuses the steps whose
recipe prefix and inputs are unchanged and recomputes from the first that differs. Every file is
written atomically, so an interrupted run leaves finished steps intact and no half-written file.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.arch import rebuild
from slimkit.data import DataSplits, load, load_embedded, resized, scaled_size
from slimkit.default import DEFAULT_MODEL, default_model
from slimkit.errors import ConfigError
from slimkit.export import OnnxModel
from slimkit.files import atomic_write_text
from slimkit.fold import fold_bn_
from slimkit.lowrank import describe_blocks, insert_blocks
from slimkit.measure import Metrics, measure
from slimkit.measure.common import declare_input
from slimkit.nn import create, model_info
from slimkit.pipeline.recipe import Recipe
from slimkit.pipeline.steps import STEPS, Context, State, build_step
from slimkit.quant import Int8Model
from slimkit.weights import load_weights, read_safetensors, save_weights

STATE_KEY = "slimkit.pipeline"
STATE_FORMAT = "slimkit.pipeline-state/1"


@dataclass
class StepRecord:
    kind: str
    params: dict[str, Any]
    metrics: Metrics
    artifact: str | None
    time_s: float
    reused: bool
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    recipe: Recipe
    out: Path
    baseline: Metrics
    steps: list[StepRecord]
    wall_s: float

    @property
    def final(self) -> Metrics:
        return self.steps[-1].metrics if self.steps else self.baseline


@dataclass
class Inputs:
    name: str
    model: nn.Module
    data: DataSplits
    arch: dict[str, Any]
    factory: Callable[..., nn.Module] | None
    key: str


def resolve_inputs(recipe: Recipe) -> Inputs:
    """The recipe's model (with weights) and data, and a key identifying them."""
    if recipe.model is None and recipe.weights is None:
        trained = default_model()
        data = trained.data if recipe.data == "embedded" else load(recipe.data)
        weights_id = _file_hash(trained.weights)
        name, model, factory = DEFAULT_MODEL, trained.model, None
        arch: dict[str, Any] = {"zoo": DEFAULT_MODEL}
    else:
        name = recipe.model or DEFAULT_MODEL
        factory = None
        if ":" in name and name.split(":")[0].endswith(".py"):
            factory = _load_factory(name)
            model, arch = factory(), {"factory": name, "kwargs": {}}
        else:
            model, arch = create(name), {"zoo": name}
        if recipe.weights:
            load_weights(model, recipe.weights)
        weights_id = _file_hash(Path(recipe.weights)) if recipe.weights else "untrained"
        if recipe.data == "embedded":
            if factory is None and model_info(name).dataset != "mnist":
                raise ConfigError(
                    f"{name} is a {model_info(name).dataset} model; the embedded data is MNIST: "
                    "give data: a path to its data set"
                )
            data = load_embedded()
        else:
            data = load(recipe.data)
    model.eval()
    key = _hash([name, weights_id, recipe.data, data.name])
    if recipe.resolution != 1.0:
        data = at_resolution(model, data, recipe.resolution, name)
        key = _hash([key, recipe.resolution])
    return Inputs(name, model, data, arch, factory, key)


def at_resolution(model: nn.Module, data: DataSplits, scale: float, name: str) -> DataSplits:
    """The data with its images resized by `scale`, once the model is known to run on them (a
    model with global pooling does; one that flattens a fixed feature map does not)."""
    size = scaled_size(data.test, scale)
    test = resized(data.test, size)
    try:
        with torch.no_grad():
            declare_input(model, test.sample_shape).eval()(test.normalized(torch.arange(2)))
    except RuntimeError:
        raise ConfigError(
            f"{name} cannot run on {size[0]}x{size[1]} inputs (resolution {scale:g}): its layers "
            "need the size it was built for; resolution multipliers suit models with global pooling"
        ) from None
    return DataSplits(resized(data.train, size), test, f"{data.name}@{scale:g}")


def _load_factory(spec: str) -> Callable[..., nn.Module]:
    """`path/to/file.py:factory` → the callable (the user's own code, run on purpose)."""
    path, _, attr = spec.rpartition(":")
    if not Path(path).is_file():
        raise ConfigError(f"model file '{path}' does not exist (expected path/to/file.py:factory)")
    module_spec = importlib.util.spec_from_file_location(f"slimkit_user_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(f"importing '{path}' failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"'{path}' has no callable {attr!r} that builds the model")
    return factory


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    force: bool = False,
    threads: int = 1,
    progress: bool | None = None,
    measure_memory: bool = True,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, str, Metrics, float | None], None] | None = None,
) -> RunResult:
    """Run (or resume) `recipe` into the folder `out`; returns every step's Metrics.

    `on_step(index, kind, metrics, time_s)` is called as each step finishes or is reused, the
    baseline first as step 0 (time None): a resumed run reports every step too.
    """
    step_done = on_step or (lambda *_: None)
    t_start = time.perf_counter()
    _check_order(recipe)
    inputs = resolve_inputs(recipe)
    out = Path(out)
    _prepare_out(out, inputs.key, recipe, force)
    options = dict(threads=threads, memory=measure_memory, latency_calls=100)
    baseline = _cached_or(out / "00-baseline", inputs.key, lambda: measure(
        inputs.model, name=f"{inputs.name} (input)", data=inputs.data.test,
        artifact=recipe.weights, **options,
    ))  # fmt: skip
    step_done(0, "baseline", baseline, None)
    state: State | None = State(copy.deepcopy(inputs.model))
    state_key = inputs.key
    records: list[StepRecord] = []
    key = inputs.key
    last_state_file: Path | None = None
    for i, step in enumerate(recipe.steps):
        key = _hash([key, step.kind, step.params])
        folder = out / f"{i + 1:02d}-{step.kind}"
        cached = _read_result(folder, key)
        if cached is not None:
            log(f"step {i + 1}/{len(recipe.steps)} {step.kind}: unchanged, reusing {folder.name}")
            records.append(cached)
            last_state_file = folder / "state.safetensors"
            step_done(i + 1, cached.kind, cached.metrics, cached.time_s)
            continue
        if state_key != _previous_key(inputs.key, recipe, i):
            state = load_state(last_state_file, inputs)
        log(f"step {i + 1}/{len(recipe.steps)} {step.kind} {step.params or ''}".rstrip())
        folder.mkdir(parents=True, exist_ok=True)
        ctx = Context(inputs.data, inputs.model, inputs.arch, folder, threads, progress)
        t0 = time.perf_counter()
        built = build_step(step.kind, step.params)
        output = STEPS[step.kind].run(state, built, ctx)
        elapsed = time.perf_counter() - t0
        deployed = output.deployed
        runtime = isinstance(deployed, (Int8Model, OnnxModel))
        metrics = measure(
            deployed if deployed is not None else state.model,
            name=f"{i + 1}. {step.kind}",
            data=inputs.data.test,
            artifact=output.artifact,
            reference=state.model if runtime else None,
            **options,
        )
        _save_state(state, folder / "state.safetensors", inputs.arch)
        record = StepRecord(
            step.kind,
            step.params,
            metrics,
            output.artifact.name if output.artifact else None,
            elapsed,
            False,
            output.notes,
        )
        _write_result(folder, key, record)
        records.append(record)
        step_done(i + 1, record.kind, metrics, elapsed)
        state_key = key
        last_state_file = folder / "state.safetensors"
    return RunResult(recipe, out, baseline, records, time.perf_counter() - t_start)


def _previous_key(input_key: str, recipe: Recipe, i: int) -> str:
    key = input_key
    for step in recipe.steps[:i]:
        key = _hash([key, step.kind, step.params])
    return key


def _check_order(recipe: Recipe) -> None:
    folded = False
    for i, step in enumerate(recipe.steps):
        if step.kind == "fuse":
            folded = True
        elif folded and step.kind == "prune" and step.params.get("method") == "channel":
            raise ConfigError(
                f"{recipe.source}: step {i + 1} (prune, channel) comes after fuse; prune "
                "channels before folding BatchNorm (move fuse later)"
            )


def _prepare_out(out: Path, key: str, recipe: Recipe, force: bool) -> None:
    run_file = out / "run.json"
    if out.exists() and any(out.iterdir()):
        same = False
        if run_file.is_file():
            try:
                same = json.loads(run_file.read_text()).get("input_key") == key
            except (json.JSONDecodeError, OSError):
                same = False
        if not same and not force:
            raise ConfigError(
                f"output folder '{out}' already holds other results: pass --force to replace "
                "them, or choose another --out"
            )
        if not same:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        run_file, json.dumps({"input_key": key, "recipe": recipe.to_dict()}, indent=1)
    )


# --- per-step results and states ---------------------------------------------------------------


def _cached_or(folder: Path, key: str, compute: Callable[[], Metrics]) -> Metrics:
    result = folder / "result.json"
    if result.is_file():
        try:
            data = json.loads(result.read_text())
            if data.get("key") == key:
                return Metrics.from_dict(data["metrics"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    metrics = compute()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(result, json.dumps({"key": key, "metrics": metrics.to_dict()}))
    return metrics


def _read_result(folder: Path, key: str) -> StepRecord | None:
    try:
        data = json.loads((folder / "result.json").read_text())
        if data.get("key") != key or not (folder / "state.safetensors").is_file():
            return None
        return StepRecord(
            data["kind"],
            data["params"],
            Metrics.from_dict(data["metrics"]),
            data["artifact"],
            data["time_s"],
            True,
            data.get("notes", {}),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _write_result(folder: Path, key: str, record: StepRecord) -> None:
    payload = {
        "key": key,
        "kind": record.kind,
        "params": record.params,
        "artifact": record.artifact,
        "time_s": record.time_s,
        "notes": record.notes,
        "metrics": record.metrics.to_dict(),
    }
    atomic_write_text(folder / "result.json", json.dumps(payload, default=str))


def _save_state(state: State, path: Path, arch: dict[str, Any]) -> None:
    layers, blocks = describe_blocks(state.model)
    if state.folded:
        layers = state.unfolded_layers
    header = {"format": STATE_FORMAT, "arch": arch, "layers": layers, "blocks": blocks,
              "sparse": state.sparse, "folded": state.folded}  # fmt: skip
    save_weights(state.model, path, metadata={STATE_KEY: json.dumps(header)})


def load_state(path: Path | None, inputs: Inputs) -> State:
    if path is None:
        return State(copy.deepcopy(inputs.model))
    tensors, meta = read_safetensors(path)
    header = json.loads(meta[STATE_KEY])
    model = rebuild(header["arch"], header["layers"], inputs.factory, where=f"'{path}'")
    insert_blocks(model, header.get("blocks", {}), f"'{path}'")
    declare_input(model, inputs.data.test.sample_shape)  # the recipe's resolution
    state = State(model, sparse=header["sparse"])
    if header["folded"]:
        state.unfolded_layers = header["layers"]
        fold_bn_(model)
        state.folded = True
    model.load_state_dict(tensors)
    model.eval()
    return state


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
