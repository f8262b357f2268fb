"""`slimkit compress`: run a recipe (or the default one) and write artifacts and the report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from importlib import resources

from slimkit.pipeline.recipe import load_recipe
from slimkit.pipeline.report import format_steps, write_report
from slimkit.pipeline.runner import run_recipe
from slimkit.pipeline.tracking import Tracking, parse_target


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compress",
        help="run a compression recipe: every step measured, artifacts and an HTML report",
        description="Without arguments: the embedded LeNet-5 through the default recipe "
        "(gradual magnitude pruning with distillation, then int8 for ONNX Runtime).",
    )
    p.add_argument("--recipe", help="recipe YAML (default: the built-in recipe)")
    p.add_argument("--model", help="zoo model name or path/to/file.py:factory (overrides recipe)")
    p.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    p.add_argument("--data", help="'embedded', or a data path: IDX folder, .npz, image folders")
    p.add_argument("--out", default="slimkit-out", help="output folder (default: slimkit-out)")
    p.add_argument("--force", action="store_true", help="replace an --out holding other results")
    p.add_argument("--threads", type=int, default=1, help="torch threads for timing (default 1)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="BACKEND[:WHERE]",
        help="also log every step's metrics to tensorboard[:DIR] (default runs/<date>_<host>) "
        "or mlflow[:TRACKING_URI] (default $MLFLOW_TRACKING_URI, else MLflow's own); repeat "
        "for both; needs pip install 'slimkit[tensorboard]' or 'slimkit[mlflow]'",
    )
    p.set_defaults(func=cmd_compress)


def default_recipe_path():
    return resources.files("slimkit.pipeline") / "default.yaml"


def cmd_compress(args: argparse.Namespace) -> int:
    targets = [parse_target(text) for text in args.log]
    recipe = load_recipe(args.recipe or default_recipe_path())
    overrides = {k: getattr(args, k) for k in ("model", "weights", "data") if getattr(args, k)}
    recipe = dataclasses.replace(recipe, **overrides)
    tracking = Tracking(targets, recipe, args.out)  # a missing package fails here, before step 0
    status = "FAILED"
    try:
        result = run_recipe(
            recipe,
            args.out,
            force=args.force,
            threads=args.threads,
            measure_memory=not args.no_memory,
            log=lambda line: print(f"slimkit: {line}", file=sys.stderr),
            on_step=tracking.step,
        )
        json_path, html_path = write_report(result)
        tracking.finish(json_path, html_path)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        print(
            f"slimkit: interrupted; finished steps are kept in {args.out}: run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        tracking.close(status)
    print(format_steps(result))
    print(
        f"slimkit compress: {len(result.steps)} steps in {result.wall_s:.0f} s; report {html_path}"
    )
    return 0
