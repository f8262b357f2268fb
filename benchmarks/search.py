"""Budgeted compression search: every strategy on the same budget, against a uniform policy and
(LeNet-5) a dense grid over the same space.

    python benchmarks/search.py lenet5_caffe --grid      # full MNIST; grid = 9^3 policies
    python benchmarks/search.py resnet20                 # CIFAR-10 JPEG

Budget: predicted batch-1 latency (per-layer lookup table calibrated on the baseline) at most ½
of the baseline's, and a size cap. Each strategy runs `--trials` trials of the per-layer channel
space (proxy: held-out training images after BatchNorm re-estimation); its best policy within
budget is then fine-tuned (`--epochs`, distillation from the baseline) by running its recipe,
and so is the uniform policy (one ratio for every layer, the smallest that meets the budget).
Reported: proxy and test accuracy, resources, trials and wall time, and the trials each strategy
needed to come within 0.2 point of the grid's best proxy accuracy. Reference: AMC (He et al.
2018) +2.7 points over hand-crafted uniform policies on VGG-16 at 4× fewer FLOPs.
Results: benchmarks/results/search-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from baselines import DATA, RECIPES, RESULTS, ROOT, baseline_path, machine
from slimkit.data import cache_dir
from slimkit.files import atomic_write_text
from slimkit.pipeline.recipe import Recipe
from slimkit.pipeline.runner import resolve_inputs, run_recipe
from slimkit.search import (
    Budget,
    BudgetError,
    ProxyConfig,
    SearchConfig,
    default_space,
    policy_recipe,
    search,
)
from slimkit.search.evaluate import Evaluator

SETTINGS = {  # budget, proxy validation images, BN re-estimation batches
    "lenet5_caffe": ("latency<0.6x,size<0.1x", 2000, 0),  # ½ is out of reach: see BENCHMARKS
    "resnet20": ("latency<0.5x,size<0.5x", 500, 5),
}


def _inputs(model: str) -> Recipe:
    data = ROOT.parent / "shared" / "data" / DATA[RECIPES[model][0]]
    return Recipe(model=model, weights=str(baseline_path(model)), data=str(data))


def _within(resources, caps) -> bool:
    return all(resources[r] <= c for r, c in caps.items())


def run_strategy(model, strategy, trials, epochs, out: Path, proxy) -> dict:
    budget = SETTINGS[model][0]
    finetune = {"epochs": epochs, "lr": 0.01, "distill_alpha": 0.5}
    config = SearchConfig(Budget.parse(budget), strategy=strategy, trials=trials,
                          finalists=1 if epochs else 0, finetune=finetune, proxy=proxy)  # fmt: skip
    t0 = time.perf_counter()
    try:
        result = search(_inputs(model), config, out / strategy, log=print)
    except BudgetError as e:  # a strategy that found nothing within budget is a result too
        return {
            "strategy": strategy,
            "trials": trials,
            "within_budget": 0,
            "closest": e.closest,
            "wall_s": round(time.perf_counter() - t0, 1),
            "best_so_far": [None] * trials,
        }
    wall = time.perf_counter() - t0
    ordered = sorted(result.records, key=lambda r: r.number)
    best_so_far, curve = None, []
    for rec in ordered:
        if result.feasible(rec):
            acc = rec.evaluation.accuracy
            best_so_far = acc if best_so_far is None else max(best_so_far, acc)
        curve.append(best_so_far)
    best = max((r for r in ordered if result.feasible(r)), key=lambda r: r.evaluation.accuracy)
    row = {
        "strategy": strategy,
        "trials": len(ordered),
        "evaluated": result.evaluated,
        "wall_s": round(wall, 1),
        "best_proxy_top1": best.evaluation.accuracy,
        "best_policy": result.space.policy(list(best.indices)),
        "best_resources": best.evaluation.resources,
        "best_so_far": curve,
        "front_size": len(result.front),
        "caps": result.caps,
    }
    if result.best is not None:
        row["test_top1"] = result.best.run.final.top1
        row["input_test_top1"] = result.best.run.baseline.top1
        row["final_size_bytes"] = result.best.run.final.size_file_bytes
        row["final_macs"] = result.best.run.final.macs
    return row


def uniform(model, epochs, out: Path, proxy, caps) -> dict:
    """The smallest single ratio for every layer that meets the budget, fine-tuned the same way."""
    inputs = _inputs(model)
    resolved = resolve_inputs(inputs)
    example = resolved.data.test.normalized(torch.arange(2))
    space = default_space(resolved.model, example, ("channel",))
    evaluator = Evaluator(resolved.model, resolved.data, resolved.arch, tuple(caps), proxy)
    for i in range(len(space.dims[0].choices)):
        policy = space.policy([i] * len(space.dims))
        if _within(evaluator.resources(policy), caps):
            break
    ev = evaluator.evaluate(policy)
    row = {"strategy": "uniform", "ratio": space.dims[0].choices[i], "proxy_top1": ev.accuracy,
           "resources": ev.resources, "within_budget": _within(ev.resources, caps)}  # fmt: skip
    if epochs:
        recipe = policy_recipe(inputs, policy, {"epochs": epochs, "lr": 0.01, "distill_alpha": 0.5})
        run = run_recipe(recipe, out / "uniform", force=True, measure_memory=False)
        row["test_top1"] = run.final.top1
        row["final_size_bytes"] = run.final.size_file_bytes
        row["final_macs"] = run.final.macs
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(SETTINGS))
    parser.add_argument("--strategies", default="tpe,nsga2,greedy,amc")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning of each final policy")
    parser.add_argument("--grid", action="store_true", help="also evaluate the whole grid")
    args = parser.parse_args()
    _, val_size, recal = SETTINGS[args.model]
    proxy = ProxyConfig(val_size=val_size, recal_batches=recal)
    out = cache_dir() / "search" / args.model  # studies and artifacts; the JSON goes to results/
    rows = [run_strategy(args.model, s, args.trials, args.epochs, out, proxy)
            for s in args.strategies.split(",")]  # fmt: skip
    report = {"model": args.model, "budget": SETTINGS[args.model][0], "machine": machine(),
              "proxy": {"val_size": val_size, "recal_batches": recal}, "epochs": args.epochs,
              "strategies": rows}  # fmt: skip
    caps = next(r["caps"] for r in rows if "caps" in r)
    report["uniform"] = uniform(args.model, args.epochs, out, proxy, caps)
    if args.grid:
        g = run_strategy(args.model, "grid", 10**6, 0, out, proxy)
        target = g["best_proxy_top1"] - 0.2
        report["grid"] = {k: g[k] for k in ("trials", "wall_s", "best_proxy_top1", "best_policy")}
        for row in rows:
            curve = row["best_so_far"]
            hits = [i + 1 for i, v in enumerate(curve) if v is not None and v >= target]
            row["trials_to_grid_best_minus_0.2"] = hits[0] if hits else None
    for row in rows:
        row.pop("best_so_far")
    path = RESULTS / f"search-{args.model}.json"
    atomic_write_text(path, json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
