"""Optional experiment tracking for `slimkit compress`: every step's numbers to TensorBoard, MLflow.

    slimkit compress --log tensorboard[:DIR] --log mlflow[:TRACKING_URI]

As each step finishes (the baseline is step 0) the tracker gets the numbers report.json holds for
it: every numeric field of its `Metrics` and the step's time. The recipe goes along as text (and
as MLflow params); MLflow also stores report.json and report.html as artifacts of the run. Both
packages are extras, imported only when asked for, and a missing one is reported before any step
runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slimkit.errors import ConfigError
from slimkit.measure import Metrics
from slimkit.pipeline.recipe import Recipe

BACKENDS = {"tensorboard": "DIR", "mlflow": "TRACKING_URI"}
MLFLOW_EXPERIMENT = "slimkit"


@dataclass(frozen=True)
class LogTarget:
    backend: str
    where: str | None  # the backend's folder or URI; None: its default


def parse_target(text: str) -> LogTarget:
    """`tensorboard`, `tensorboard:DIR`, `mlflow` or `mlflow:URI` (split at the first colon)."""
    backend, _, where = text.partition(":")
    if backend not in BACKENDS:
        allowed = ", ".join(f"{name}[:{arg}]" for name, arg in BACKENDS.items())
        raise ConfigError(
            f"--log {text!r}: unknown backend; allowed: {allowed} (repeat --log for several)"
        )
    return LogTarget(backend, where or None)


def step_values(metrics: Metrics, time_s: float | None) -> dict[str, float]:
    """The numbers report.json has for one step: Metrics' numeric fields and the step's time."""
    values = {
        name: float(v)
        for name, v in metrics.to_dict().items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if time_s is not None:
        values["time_s"] = float(time_s)
    return values


class TensorBoardTracker:
    """Event files in `log_dir`: one scalar tag per metric, global step = step index."""

    def __init__(self, log_dir: str | None, recipe: Recipe) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("TensorBoard", "tensorboard") from None
        self.writer = SummaryWriter(log_dir)  # None: runs/<date>_<host>, torch's default
        self.writer.add_text("recipe", _markdown_code(recipe_yaml(recipe)), 0)

    def step(self, index: int, kind: str, values: dict[str, float]) -> None:
        for tag, value in values.items():
            # Double-precision tensor summaries: float32 would round byte counts above 2**24.
            self.writer.add_scalar(tag, value, index, new_style=True, double_precision=True)
        self.writer.add_text("step", f"{index}. {kind}", index)
        self.writer.flush()  # a killed run keeps the steps it finished

    def finish(self, reports: list[Path]) -> None:
        """TensorBoard stores no files: the reports stay in the output folder."""

    def close(self, status: str) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run per compress call in the experiment `slimkit`; metrics keyed by step."""

    def __init__(self, uri: str | None, recipe: Recipe) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Metric, Param
            from mlflow.exceptions import MlflowException
        except ImportError:
            raise _missing("MLflow", "mlflow") from None
        self._metric = Metric
        try:
            self.client = MlflowClient(uri)  # None: $MLFLOW_TRACKING_URI, else MLflow's default
            experiment = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(MLFLOW_EXPERIMENT)
            )
            self.run_id = self.client.create_run(experiment_id, run_name=recipe.source).info.run_id
        except MlflowException as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise ConfigError(f"MLflow tracking URI {uri or 'default'}: {first}") from None
        params = [Param(key, value) for key, value in recipe_params(recipe).items()]
        self.client.log_batch(self.run_id, params=params)
        self.client.log_text(self.run_id, recipe_yaml(recipe), "recipe.yaml")

    def step(self, index: int, kind: str, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)  # ms, MLflow's unit
        metrics = [self._metric(key, value, now, index) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, reports: list[Path]) -> None:
        for path in reports:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class Tracking:
    """Every tracker asked for, fed together; with none it does nothing."""

    def __init__(self, targets: list[LogTarget], recipe: Recipe, out: str | Path) -> None:
        self.trackers: list[TensorBoardTracker | MlflowTracker] = []
        try:
            for target in targets:
                if target.backend == "tensorboard":
                    _check_outside(target.where, out)
                    self.trackers.append(TensorBoardTracker(target.where, recipe))
                else:
                    self.trackers.append(MlflowTracker(target.where, recipe))
        except BaseException:
            self.close("FAILED")  # the runs already opened
            raise

    def step(self, index: int, kind: str, metrics: Metrics, time_s: float | None) -> None:
        values = step_values(metrics, time_s)
        for tracker in self.trackers:
            tracker.step(index, kind, values)

    def finish(self, *reports: Path) -> None:
        for tracker in self.trackers:
            tracker.finish(list(reports))

    def close(self, status: str) -> None:
        """`status`: FINISHED, FAILED or KILLED (MLflow's run states)."""
        for tracker in self.trackers:
            tracker.close(status)


def recipe_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def recipe_params(recipe: Recipe) -> dict[str, str]:
    """The recipe flattened to MLflow params: `model`, `data`, `step1` = prune, `step1.sparsity`."""
    raw = recipe.to_dict()
    params = {key: _text(value) for key, value in raw.items() if key != "steps"}
    for i, step in enumerate(recipe.steps, start=1):
        params[f"step{i}"] = step.kind
        params.update({f"step{i}.{key}": _text(value) for key, value in step.params.items()})
    return params


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _markdown_code(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())  # TensorBoard renders Markdown


def _missing(name: str, extra: str) -> ConfigError:
    return ConfigError(
        f"--log {extra} needs {name}, which is not installed: pip install 'slimkit[{extra}]'"
    )


def _check_outside(log_dir: str | None, out: str | Path) -> None:
    # The event folder exists before the run starts: inside --out, it would read as other results.
    if log_dir is not None and Path(log_dir).resolve().is_relative_to(Path(out).resolve()):
        raise ConfigError(
            f"--log tensorboard:{log_dir}: choose a folder outside --out '{out}' (the run "
            "replaces that folder's other contents)"
        )
