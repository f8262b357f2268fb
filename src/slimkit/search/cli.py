"""`slimkit search`: the most accurate compression within a budget, as a recipe and an artifact."""

from __future__ import annotations

import argparse
import sys

from slimkit.errors import ConfigError
from slimkit.pipeline.recipe import Recipe
from slimkit.search.budget import Budget, format_value
from slimkit.search.evaluate import LATENCY_MODES, ProxyConfig
from slimkit.search.run import STRATEGIES, SearchConfig, search
from slimkit.search.space import KINDS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search per-layer compression policies under a latency/size/MACs/memory budget",
        description="Without a model: the embedded LeNet-5. Trials are stored in OUT/search.db "
        "(or --storage), so rerunning the same command resumes; several workers given the same "
        "--storage postgresql://... and --study share one search.",
    )
    p.add_argument("model", nargs="?", help="zoo model name or path/to/file.py:factory")
    p.add_argument("--weights", help="weights file (.safetensors or a torch state dict)")
    p.add_argument("--data", default="embedded", help="'embedded' or a data path")
    p.add_argument(
        "--budget",
        required=True,
        help="caps, e.g. 'latency<2ms,size<50KB' or 'latency<0.5x,macs<0.4x'",
    )
    p.add_argument(
        "--space",
        default="channel",
        help=f"comma-separated techniques from {', '.join(KINDS)} (default channel)",
    )
    p.add_argument("--strategy", default="amc", choices=STRATEGIES, help="default amc")
    p.add_argument("--trials", type=int, default=50, help="completed trials to reach (all workers)")
    p.add_argument("--time-limit", type=float, help="seconds after which no new trial starts")
    p.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        help="accuracy points the final model may lose (default 1.0)",
    )
    p.add_argument(
        "--finalists",
        type=int,
        default=2,
        help="best policies fine-tuned at the end (0: search only)",
    )
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs of each finalist")
    p.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    p.add_argument(
        "--distill-alpha",
        type=float,
        default=0.5,
        help="weight of distillation from the input model while fine-tuning",
    )
    p.add_argument(
        "--latency",
        default="lookup",
        choices=LATENCY_MODES,
        help="latency of a candidate: predicted by the lookup table, or timed",
    )
    p.add_argument("--val-size", type=int, default=2000, help="held-out training images")
    p.add_argument(
        "--proxy-steps", type=int, default=0, help="SGD steps on each candidate before scoring"
    )
    p.add_argument("--storage", help="sqlite:///file.db or postgresql://user:pass@host/db")
    p.add_argument("--study", help="study name (workers sharing a search use the same one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="slimkit-search", help="output folder")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    kinds = tuple(k.strip() for k in args.space.split(",") if k.strip())
    if args.epochs < 0:
        raise ConfigError(f"--epochs must be >= 0, got {args.epochs}")
    config = SearchConfig(
        budget=Budget.parse(args.budget),
        kinds=kinds,
        strategy=args.strategy,
        trials=args.trials,
        time_limit_s=args.time_limit,
        finalists=args.finalists,
        finetune={"epochs": args.epochs, "lr": args.lr, "distill_alpha": args.distill_alpha},
        max_drop=args.max_drop,
        proxy=ProxyConfig(val_size=args.val_size, steps=args.proxy_steps, latency=args.latency),
        storage=args.storage,
        study=args.study,
        seed=args.seed,
    )
    inputs = Recipe(model=args.model, weights=args.weights, data=args.data)

    def log(line: str) -> None:
        print(f"slimkit: {line}", file=sys.stderr)

    try:
        result = search(inputs, config, args.out, log=log)
    except KeyboardInterrupt:
        log(f"interrupted; finished trials are kept in {args.out}: run again to resume")
        return 130
    print(f"{'trial':>6} {'proxy top-1':>11}  " + "  ".join(f"{r:>9}" for r in result.caps))
    for rec in result.front:
        mark = "" if result.feasible(rec) else "  (over budget)"
        cells = "  ".join(f"{format_value(r, rec.evaluation.resources[r]):>9}" for r in result.caps)
        print(f"{rec.number:>6} {rec.evaluation.accuracy:>10.2f}%  {cells}{mark}")
    best = result.best
    if best is None:
        print(
            f"slimkit search: {len(result.records)} trials; no finalist fine-tuned "
            f"(finalists=0); results in {args.out}"
        )
        return 0
    before, after = best.run.baseline.top1, best.run.final.top1
    print(
        f"slimkit search: best trial {best.record.number}: test top-1 {before:.2f}% -> "
        f"{after:.2f}%, recipe {args.out}/best.yaml, report {args.out}/search.html"
    )
    if before - after > args.max_drop:
        print(
            f"slimkit: error: the best policy loses {before - after:.2f} points, more than "
            f"--max-drop {args.max_drop}: fine-tune longer (--epochs) or loosen the budget",
            file=sys.stderr,
        )
        return 2
    return 0
