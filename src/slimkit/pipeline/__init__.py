"""The compression pipeline: recipes of steps, run with measurement, resume and a report."""

from slimkit.pipeline.recipe import Recipe, Step, load_recipe, parse_recipe
from slimkit.pipeline.runner import RunResult, StepRecord, run_recipe

__all__ = ["Recipe", "RunResult", "Step", "StepRecord", "load_recipe", "parse_recipe", "run_recipe"]
