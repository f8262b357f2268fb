"""Automated compression search under a budget (NetAdapt, AMC, Optuna TPE / NSGA-II).

from slimkit.search import Budget, SearchConfig, search
from slimkit.pipeline.recipe import Recipe

result = search(Recipe(model="lenet5_caffe", weights="w.safetensors", data="mnist/"),
                SearchConfig(Budget.parse("latency<0.5x,size<100KB"), kinds=("channel",)),
                out="search-out")
result.best.recipe   # the recipe that reproduces the chosen model (also out/best.yaml)
"""

from slimkit.search.budget import Budget, Limit
from slimkit.search.evaluate import Evaluation, Evaluator, ProxyConfig, recalibrate_bn
from slimkit.search.pareto import dominates, pareto_front
from slimkit.search.run import (
    STRATEGIES,
    BudgetError,
    SearchConfig,
    SearchResult,
    policy_recipe,
    search,
)
from slimkit.search.space import KINDS, Dimension, Space, default_space

__all__ = [
    "KINDS",
    "STRATEGIES",
    "Budget",
    "BudgetError",
    "Dimension",
    "Evaluation",
    "Evaluator",
    "Limit",
    "ProxyConfig",
    "SearchConfig",
    "SearchResult",
    "Space",
    "default_space",
    "dominates",
    "pareto_front",
    "policy_recipe",
    "recalibrate_bn",
    "search",
]
