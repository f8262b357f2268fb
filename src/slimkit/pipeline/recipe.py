"""Recipes: a model, data and an ordered list of compression steps, in YAML.

    model: lenet5                 # a zoo name, or path/to/file.py:factory
    weights: lenet5.safetensors   # optional; without it a zoo model starts untrained
    data: embedded                # the packaged MNIST digits, or a data path slimkit.data loads
    steps:
      - prune: {method: magnitude, sparsity: 0.9, scope: global, epochs: 3, lr: 0.01}
      - quantize: {scheme: int8, runtime: onnxruntime}

A step's keys are the fields of the library's own configs — MagnitudePruning / ChannelPruning,
TrainConfig, KBitConfig, Int8Config — plus a few step options, so a recipe reads like the Python
API. Everything is validated before anything runs: an unknown step or key, a wrong type or an
impossible value is reported with its line in the file and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slimkit.errors import ConfigError, SlimkitError
from slimkit.pipeline.steps import STEPS, StepSpec

TOP_KEYS = ("model", "weights", "data", "resolution", "steps")


@dataclass(frozen=True)
class Step:
    kind: str
    params: dict[str, Any]
    line: int | None = None  # where it is in the recipe file, for messages

    def label(self, index: int) -> str:
        return f"step {index + 1} ({self.kind})"


@dataclass(frozen=True)
class Recipe:
    model: str | None = None  # None: the embedded default model
    weights: str | None = None
    data: str = "embedded"
    steps: tuple[Step, ...] = field(default_factory=tuple)
    source: str = "<recipe>"
    resolution: float = 1.0  # input images resized by this factor (a resolution multiplier)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "weights": self.weights, "data": self.data}
        if self.resolution != 1.0:
            out["resolution"] = self.resolution
        return {**out, "steps": [{s.kind: s.params} for s in self.steps]}


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe file (YAML; plain data only, never executed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe '{path}' does not exist")
    try:
        text = path.read_text()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path.name}{where}: not valid YAML ({problem})") from None
    return parse_recipe(raw, source=path.name, lines=_LineIndex(node))


def parse_recipe(raw: Any, *, source: str = "<recipe>", lines: _LineIndex | None = None) -> Recipe:
    """Validate a recipe given as plain data (the parsed YAML)."""
    lines = lines or _LineIndex(None)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with keys {', '.join(TOP_KEYS)}")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{source}{lines.at(key)}: unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}"
            )
    for key in ("model", "weights", "data"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(f"{source}{lines.at(key)}: {key} must be a string")
    resolution = raw.get("resolution", 1.0)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, float))
        or not 0 < resolution <= 1
    ):
        raise ConfigError(
            f"{source}{lines.at('resolution')}: resolution must be a number in (0, 1] (the "
            f"input size multiplier), got {resolution!r}"
        )
    steps_raw = raw.get("steps") or []
    if not isinstance(steps_raw, list):
        raise ConfigError(f"{source}{lines.at('steps')}: steps must be a list of steps")
    steps = []
    for i, item in enumerate(steps_raw):
        where = f"{source}{lines.at('steps', i)}: step {i + 1}"
        if not (isinstance(item, dict) and len(item) == 1):
            raise ConfigError(
                f"{where} must be one mapping such as `- prune: {{sparsity: 0.9}}`; steps: "
                f"{', '.join(STEPS)}"
            )
        ((kind, params),) = item.items()
        if kind not in STEPS:
            raise ConfigError(f"{where}: unknown step {kind!r}; steps: {', '.join(STEPS)}")
        params = params or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{where} ({kind}): its options must be a mapping of key: value")
        _check_step(STEPS[kind], params, where=f"{where} ({kind})", lines=lines, index=i)
        steps.append(Step(kind, dict(params), lines.line("steps", i)))
    return Recipe(
        model=raw.get("model"),
        weights=raw.get("weights"),
        data=raw.get("data") or "embedded",
        steps=tuple(steps),
        source=source,
        resolution=float(resolution),
    )


def _check_step(spec: StepSpec, params: dict[str, Any], *, where: str, lines, index: int) -> None:
    allowed = spec.allowed(params)
    for key in params:
        if key not in allowed:
            at = lines.at("steps", index, spec.name, key)
            raise ConfigError(
                f"{where}{at}: unknown option {key!r}; allowed: {', '.join(sorted(allowed))}"
            )
    try:
        spec.build(params)  # constructs the library configs: their own checks run here
    except SlimkitError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: wrong type of value ({str(e).splitlines()[0]})") from None


class _LineIndex:
    """Line numbers of keys and list items in the composed YAML, for error messages."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def line(self, *path: str | int) -> int | None:
        node = self.node
        for part in path:
            if isinstance(node, yaml.MappingNode):
                match = next((v for k, v in node.value if k.value == part), None)
                if match is None:
                    key = next((k for k, _ in node.value if k.value == part), None)
                    return key.start_mark.line + 1 if key is not None else None
                if part == path[-1]:
                    key = next(k for k, _ in node.value if k.value == part)
                    return key.start_mark.line + 1
                node = match
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return None
                node = node.value[part]
            else:
                return None
        return node.start_mark.line + 1 if node is not None else None

    def at(self, *path: str | int) -> str:
        line = self.line(*path)
        return f" line {line}" if line else ""


def config_fields(cls: type) -> set[str]:
    """Field names of a config dataclass (the recipe keys it accepts)."""
    return {f.name for f in dataclasses.fields(cls)}
