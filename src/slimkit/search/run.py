"""`search`: the most accurate compression policy within a budget.

1. Measure the input model; refuse at once a budget that even the most compressed policy of
   the space cannot meet (naming what that policy reaches).
2. Propose policies with a strategy and score each cheaply (proxy accuracy, real resources),
   every trial stored in the study so a killed search resumes and workers share the work.
3. Fine-tune the best few policies within budget by running their recipes (the pipeline, with
   distillation from the input model), keep the one most accurate on held-out training images,
   and write its recipe, artifact, the Pareto front and a report.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from slimkit.errors import ConfigError, SlimkitError
from slimkit.files import atomic_write, atomic_write_text
from slimkit.measure import evaluate
from slimkit.pipeline.recipe import Recipe, parse_recipe
from slimkit.pipeline.runner import RunResult, load_state, resolve_inputs, run_recipe
from slimkit.search.budget import Budget, format_value
from slimkit.search.evaluate import Evaluation, Evaluator, ProxyConfig
from slimkit.search.pareto import pareto_front
from slimkit.search.report import write_report
from slimkit.search.space import Space, default_space, recipe_steps, resolution_of
from slimkit.search.strategies import amc, greedy
from slimkit.search.study import (
    Record,
    completed,
    count_states,
    default_storage,
    open_storage,
    open_study,
)

STRATEGIES = ("tpe", "nsga2", "greedy", "amc", "grid")


class BudgetError(SlimkitError, ValueError):
    """No policy of the space meets the budget; `closest` is the nearest one found."""

    def __init__(self, message: str, closest: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.closest = closest


@dataclass(frozen=True)
class SearchConfig:
    """budget: caps (`Budget.parse("latency<0.5x,size<50KB")`); kinds: the space's techniques;
    trials: completed trials to reach (over every worker); time_limit_s: stop proposing after;
    finalists: best policies fine-tuned at the end (0: search only, as extra workers do);
    finetune: recipe training options for them (epochs, lr, distill_alpha, ...);
    max_drop: accuracy points the final model may lose against the input model."""

    budget: Budget
    kinds: tuple[str, ...] = ("channel",)
    strategy: str = "amc"  # the winner of benchmarks/search.py on LeNet-5 and ResNet-20
    trials: int = 50
    time_limit_s: float | None = None
    finalists: int = 2
    finetune: dict[str, Any] = field(
        default_factory=lambda: {"epochs": 2, "lr": 0.01, "distill_alpha": 0.5}
    )
    max_drop: float = 1.0
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    choices: dict[str, tuple[float, ...]] | None = None
    exclude: tuple[str, ...] = ()
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    heartbeat_s: int = 10

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"trials must be an integer >= 1, got {self.trials!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"time limit must be > 0 seconds, got {self.time_limit_s!r}")
        if not isinstance(self.finalists, int) or self.finalists < 0:
            raise ConfigError(f"finalists must be an integer >= 0, got {self.finalists!r}")
        if not self.max_drop >= 0:
            raise ConfigError(f"max_drop must be >= 0 accuracy points, got {self.max_drop!r}")
        if not isinstance(self.heartbeat_s, int) or self.heartbeat_s < 1:
            raise ConfigError(f"heartbeat must be an integer >= 1 s, got {self.heartbeat_s!r}")


@dataclass
class Finalist:
    record: Record
    recipe: Recipe
    run: RunResult
    val_top1: float


@dataclass
class SearchResult:
    out: Path
    space: Space
    caps: dict[str, float]
    baseline: Evaluation
    records: list[Record]
    front: list[Record]
    finalists: list[Finalist]
    best: Finalist | None
    evaluated: int  # policies evaluated by this process (the rest came from the study)
    wall_s: float
    states: dict[str, int]

    def feasible(self, rec: Record) -> bool:
        return all(rec.evaluation.resources[r] <= c for r, c in self.caps.items())


def search(
    inputs: Recipe,
    config: SearchConfig,
    out: str | Path,
    *,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
) -> SearchResult:
    """Search `inputs` (the model, weights and data of a recipe) under `config`; results in
    `out`: search.db (unless storage= is given), best.yaml + best.* (the recipe and the model
    file), finalist-N/ (their pipeline runs), search.json, search.html."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = resolve_inputs(inputs)
    model = resolved.model
    example = resolved.data.test.normalized(torch.arange(2))
    space = default_space(model, example, config.kinds, config.choices, config.exclude)
    evaluator = Evaluator(
        model, resolved.data, resolved.arch, config.budget.resources, config.proxy
    )
    storage = open_storage(config.storage or default_storage(out), config.heartbeat_s)
    identity = {
        "space": space.signature(),
        "budget": str(config.budget),
        "inputs": resolved.key,
        "strategy": config.strategy,
    }
    driver = _Driver(space, evaluator, config, t0)
    name = config.study or "slimkit-" + _digest(identity)
    study = open_study(storage, name, driver.directions(), identity, driver.sampler())
    if evaluator.table is not None:  # a resumed search predicts on the scale it started with
        scale_key = f"latency_scale:{socket.gethostname()}"
        if scale_key not in study.user_attrs:
            study.set_user_attr(scale_key, evaluator.table.scale)
        evaluator.table.scale = float(study.user_attrs[scale_key])
    baseline = evaluator.evaluate(space.policy(space.identity()))
    # Relative caps resolve against the first worker's baseline: every worker shares them.
    if "caps" not in study.user_attrs:
        study.set_user_attr("caps", config.budget.resolve(baseline.resources))
    caps = {r: float(v) for r, v in study.user_attrs["caps"].items()}
    log(
        f"search: {len(space.dims)} dimensions ({', '.join(space.kinds)}), "
        f"{space.size:.3g} policies; budget {_caps_text(caps)}; study {name!r}"
    )
    _check_reachable(evaluator, space, caps)
    driver.study, driver.caps = study, caps
    try:
        driver.run()
    finally:
        evaluator.save_table()
    records = completed(driver.study, driver.names)
    result = SearchResult(
        out,
        space,
        caps,
        baseline,
        records,
        [],
        [],
        None,
        driver.evaluated,
        0.0,
        count_states(driver.study),
    )
    result.front = _front(records, caps)
    feasible = [r for r in records if result.feasible(r)]
    log(
        f"search: {len(records)} trials ({driver.evaluated} evaluated here), "
        f"{len(feasible)} within budget, {len(result.front)} on the Pareto front"
    )
    if feasible and config.finalists:
        result.finalists = _finalize(
            feasible, config, inputs, resolved, evaluator, space, out, log, progress
        )
        result.best = max(result.finalists, key=lambda f: f.val_top1)
    result.wall_s = time.perf_counter() - t0
    write_report(result)
    if not feasible:
        closest = min(records, key=lambda r: _pressure(r.evaluation.resources, caps))
        raise BudgetError(
            f"no policy found within the budget {_caps_text(caps)} in {len(records)} trials; "
            f"closest: {_point_text(closest.evaluation)} (report in {out}): loosen the budget, "
            "widen the space or run more trials",
            closest=asdict(closest.evaluation),
        )
    if result.best is not None:
        _write_best(result, out)
    return result


class _Driver:
    """Runs the strategy against the study; caches evaluations by policy."""

    def __init__(self, space: Space, evaluator: Evaluator, config: SearchConfig, t0: float) -> None:
        self.space, self.evaluator, self.config = space, evaluator, config
        self.caps: dict[str, float] = {}
        self.names = [d.name for d in space.dims]
        self.deadline = t0 + config.time_limit_s if config.time_limit_s else None
        self.cache: dict[tuple[int, ...], Evaluation] = {}
        self.evaluated = 0
        self.failed: set[tuple[int, ...]] = set()
        self.study: optuna.Study | None = None

    def directions(self) -> list[str]:
        if self.config.strategy == "nsga2":
            return ["maximize"] + ["minimize"] * len(self.config.budget.limits)
        return ["maximize"]

    def sampler(self) -> optuna.samplers.BaseSampler:
        seed, strategy = self.config.seed, self.config.strategy
        # Both samplers read the constraints each trial sets (resource / cap - 1 <= 0).
        if strategy == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if strategy == "nsga2":
            population = min(50, max(8, self.config.trials // 5))
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
        if strategy == "grid":
            grid = {d.name: list(range(len(d.choices))) for d in self.space.dims}
            return optuna.samplers.GridSampler(grid, seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)  # greedy/amc enqueue every policy

    # --- the Trials interface of slimkit.search.strategies ---

    def exhausted(self) -> bool:
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return True
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return len(done) >= self.config.trials

    def pressure(self, indices: list[int]) -> float:
        try:
            resources = self.evaluator.resources(self.space.policy(indices))
        except SlimkitError:  # a policy the library refuses: never within budget
            return math.inf
        return _pressure(resources, self.caps)

    def evaluate(self, indices: list[int]) -> Evaluation:
        key = tuple(indices)
        while key not in self.cache and key not in self.failed:
            self._refresh()
            if key in self.cache:
                break
            self.study.enqueue_trial(dict(zip(self.names, key, strict=True)))
            self.study.optimize(self._objective, n_trials=1, catch=(SlimkitError,))
        if key in self.failed:  # its trial failed (recorded with the reason): the worst score
            return Evaluation(0.0, dict.fromkeys(self.caps, math.inf))
        return self.cache[key]

    # --- running ---

    def run(self) -> None:
        self._refresh()
        if self.exhausted():
            return
        if self.config.strategy == "greedy":
            greedy(self, iterations=8)
        elif self.config.strategy == "amc":
            sizes = [_layer_size(self.evaluator.model, d.layer) for d in self.space.dims]
            amc(self, sizes, episodes=self.config.trials, seed=self.config.seed)
        else:
            done = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            timeout = (
                None if self.deadline is None else max(1.0, self.deadline - time.perf_counter())
            )
            self.study.optimize(
                self._objective,
                n_trials=max(0, self.config.trials - done)
                if self.config.strategy == "grid"
                else None,
                timeout=timeout,
                catch=(SlimkitError,),
                callbacks=[MaxTrialsCallback(self.config.trials, states=(TrialState.COMPLETE,))],
            )

    def _refresh(self) -> None:
        for rec in completed(self.study, self.names):
            self.cache.setdefault(rec.indices, rec.evaluation)

    def _objective(self, trial: optuna.Trial) -> float | list[float]:
        key = tuple(trial.suggest_int(d.name, 0, len(d.choices) - 1) for d in self.space.dims)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if key not in self.cache:
            self._refresh()
        cached = key in self.cache
        if not cached:
            try:
                self.cache[key] = self.evaluator.evaluate(self.space.policy(list(key)))
            except SlimkitError as e:
                self.failed.add(key)
                trial.set_user_attr("error", str(e))
                raise
            self.evaluated += 1
        ev = self.cache[key]
        trial.set_user_attr("accuracy", ev.accuracy)
        trial.set_user_attr("resources", ev.resources)
        trial.set_user_attr("cached", cached)
        for r, c in self.caps.items():
            trial.set_constraint(r, ev.resources[r] / c - 1)
        if self.config.strategy == "nsga2":
            return [ev.accuracy] + [ev.resources[r] / c for r, c in self.caps.items()]
        return ev.accuracy


def _check_reachable(evaluator: Evaluator, space: Space, caps: dict[str, float]) -> None:
    """Refuse a budget the most compressed policy of the space cannot meet."""
    extreme = evaluator.resources(space.policy(space.extreme()))
    over = {r: v for r, v in extreme.items() if r in caps and v > caps[r]}
    if over:
        reached = ", ".join(f"{r} {format_value(r, v)}" for r, v in extreme.items() if r in caps)
        raise BudgetError(
            f"budget {_caps_text(caps)} is out of reach: the most compressed policy of the "
            f"{'/'.join(space.kinds)} space reaches {reached}; loosen the budget or widen the "
            "space (--space, larger choices)",
            closest={"accuracy": None, "resources": extreme},
        )


def _finalize(
    feasible: list[Record],
    config: SearchConfig,
    inputs: Recipe,
    resolved,
    evaluator,
    space: Space,
    out: Path,
    log,
    progress,
) -> list[Finalist]:
    """Fine-tune the most promising policies within budget by running their recipes."""
    seen: set[tuple[int, ...]] = set()
    ranked = []
    for rec in sorted(feasible, key=lambda r: (-r.evaluation.accuracy, r.number)):
        if rec.indices not in seen:
            seen.add(rec.indices)
            ranked.append(rec)
    finalists = []
    for k, rec in enumerate(ranked[: config.finalists]):
        recipe = policy_recipe(inputs, space.policy(list(rec.indices)), config.finetune)
        log(
            f"search: fine-tuning finalist {k + 1} (trial {rec.number}, proxy "
            f"{rec.evaluation.accuracy:.2f}%)"
        )
        run = run_recipe(
            recipe,
            out / f"finalist-{k + 1}",
            force=True,
            progress=progress,
            measure_memory="memory" in config.budget.resources,
            log=lambda _: None,
        )
        last = f"{len(recipe.steps):02d}-{recipe.steps[-1].kind}" if recipe.steps else None
        state = load_state(run.out / last / "state.safetensors" if last else None, resolved)
        val = evaluate(state.model, evaluator.val).top1
        finalists.append(Finalist(rec, recipe, run, val))
    return finalists


def policy_recipe(inputs: Recipe, policy: dict[str, float], finetune: dict[str, Any]) -> Recipe:
    """The recipe that applies `policy` to the inputs and fine-tunes it (validated)."""
    raw = {
        "model": inputs.model,
        "weights": inputs.weights,
        "data": inputs.data,
        "resolution": resolution_of(policy) * inputs.resolution,
        "steps": recipe_steps(policy, finetune),
    }
    return parse_recipe({k: v for k, v in raw.items() if v is not None}, source="search policy")


def _write_best(result: SearchResult, out: Path) -> None:
    best = result.best
    text = (
        f"# slimkit search: best policy within {_caps_text(result.caps)} "
        f"(trial {best.record.number})\n" + yaml.safe_dump(best.recipe.to_dict(), sort_keys=False)
    )
    atomic_write_text(out / "best.yaml", text)
    last = best.run.steps[-1] if best.run.steps else None
    if last is not None and last.artifact:  # the chosen model's file, beside its recipe
        source = best.run.out / f"{len(best.run.steps):02d}-{last.kind}" / last.artifact
        with open(source, "rb") as f:
            atomic_write(
                out / ("best." + last.artifact.partition(".")[2]),
                lambda g: shutil.copyfileobj(f, g),
            )


def _front(records: list[Record], caps: dict[str, float]) -> list[Record]:
    points = [[-r.evaluation.accuracy] + [r.evaluation.resources[c] for c in caps] for r in records]
    return sorted((records[i] for i in pareto_front(points)), key=lambda r: -r.evaluation.accuracy)


def _pressure(resources: dict[str, float], caps: dict[str, float]) -> float:
    return max(resources[r] / c for r, c in caps.items())


def _caps_text(caps: dict[str, float]) -> str:
    return ",".join(f"{r}<{format_value(r, v)}" for r, v in caps.items())


def _point_text(ev: Evaluation) -> str:
    shown = ", ".join(
        f"{r} {format_value(r, v)}"
        for r, v in ev.resources.items()
        if r in ("latency", "size", "macs", "memory")
    )
    return f"proxy top-1 {ev.accuracy:.2f}%, {shown}"


def _layer_size(model, name: str) -> int:
    """Parameters a dimension acts on: its layer's, or the whole model's (width, resolution)."""
    try:
        part = model.get_submodule(name)
    except AttributeError:
        part = model
    return sum(p.numel() for p in part.parameters())


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
