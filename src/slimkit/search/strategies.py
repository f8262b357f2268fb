"""Search strategies beyond Optuna's samplers: NetAdapt's greedy and an AMC-style agent.

Both talk to the search through `Trials`: `evaluate(indices)` (recorded as a study trial, never
twice for the same policy), `pressure(indices)` (the worst resource / cap ratio, from resources
alone: <= 1 means within budget) and `exhausted()` (trial count or time limit reached).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from slimkit.search.evaluate import Evaluation
from slimkit.search.space import KINDS, Space


class Trials(Protocol):
    space: Space

    def evaluate(self, indices: list[int]) -> Evaluation: ...

    def pressure(self, indices: list[int]) -> float: ...

    def exhausted(self) -> bool: ...


def greedy(trials: Trials, iterations: int = 8) -> None:
    """NetAdapt (Yang et al. 2018): lower the resource by a fixed step per iteration; in each,
    shrink every dimension alone just enough to meet the step's target, score the candidates
    and keep the most accurate, until the budget is met."""
    dims = trials.space.dims
    current = trials.space.identity()
    pressure = trials.pressure(current)
    step = max(pressure - 1.0, 0.0) / iterations
    trials.evaluate(current)
    while pressure > 1.0 and not trials.exhausted():
        target = max(1.0, pressure - step)
        candidates = []
        for i, d in enumerate(dims):
            cand = list(current)
            while cand[i] < len(d.choices) - 1:
                cand[i] += 1
                if trials.pressure(cand) <= target:
                    break
            p = trials.pressure(cand)
            if cand[i] == current[i] or p >= pressure:
                continue  # this dimension cannot lower the resource any more
            candidates.append((trials.evaluate(cand).accuracy, -p, cand))
            if trials.exhausted():
                break
        if not candidates:
            return
        _, neg_p, current = max(candidates)
        pressure = -neg_p


def amc(trials: Trials, layer_sizes: list[int], episodes: int, seed: int = 0) -> None:
    """AMC-style agent (He et al. 2018): an actor sets one dimension at a time from the layer's
    state (position, kind, size, previous action). Each action is raised, if needed, so the
    budget stays reachable with every later layer at its most compressed setting (AMC's
    resource-constrained action space), so every episode's policy fits the budget; the reward
    is its proxy accuracy. AMC trains a DDPG critic; with tens of episodes, REINFORCE with a
    moving-average baseline and decaying exploration noise learns as much, more simply.
    One episode per trial: an episode that repeats an evaluated policy still counts (the actor
    converges), and a resumed search replays the same episodes from the cache."""
    space = trials.space
    dims = space.dims
    extreme = space.extreme()
    total = sum(layer_sizes) or 1
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    actor = nn.Sequential(nn.Linear(5 + len(KINDS), 32), nn.Tanh(), nn.Linear(32, 1))
    torch.random.set_rng_state(torch_state)
    opt = torch.optim.Adam(actor.parameters(), lr=0.02)
    sigma, baseline = 0.5, None
    for _ in range(episodes):
        if trials.exhausted():
            return
        indices = space.identity()
        log_probs = []
        prev = 0.0
        for t, d in enumerate(dims):
            state = torch.tensor(
                [
                    t / len(dims),
                    *[float(d.kind == k) for k in KINDS],
                    math.log10(layer_sizes[t] + 1) / 7,
                    layer_sizes[t] / total,
                    prev,
                    1.0,
                ],
            )
            mean = torch.sigmoid(actor(state)).squeeze()
            action = (mean + sigma * torch.randn((), generator=gen)).detach()
            log_probs.append(torch.distributions.Normal(mean, sigma).log_prob(action))
            n = len(d.choices)
            idx = round(float(action.clamp(0, 1)) * (n - 1))
            while idx < n - 1 and trials.pressure([*indices[:t], idx, *extreme[t + 1 :]]) > 1:
                idx += 1  # keep the budget reachable
            indices[t] = idx
            prev = idx / (n - 1)
        reward = trials.evaluate(indices).accuracy / 100
        advantage = 0.0 if baseline is None else reward - baseline
        baseline = reward if baseline is None else 0.8 * baseline + 0.2 * reward
        opt.zero_grad()
        (-advantage * torch.stack(log_probs).sum()).backward()
        opt.step()
        sigma = max(0.05, sigma * 0.93)
