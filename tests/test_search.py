"""slimkit.search: budgets, spaces, strategies, the Pareto front, resume and shared storage."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from slimkit.errors import ConfigError
from slimkit.nn import create
from slimkit.pipeline.recipe import Recipe, load_recipe
from slimkit.pipeline.runner import run_recipe
from slimkit.search import (
    Budget,
    BudgetError,
    ProxyConfig,
    SearchConfig,
    default_space,
    dominates,
    pareto_front,
    search,
)
from slimkit.search.space import build, by_kind, recipe_steps

FAST = ProxyConfig(val_size=300, recal_batches=2)
UNTRAINED = Recipe(model="lenet5")  # resource tests need no accuracy: no training at all


def _quiet(_: str) -> None:
    pass


# --- budgets ---------------------------------------------------------------------------------


def test_budget_parses_units_and_relative_limits():
    b = Budget.parse("latency<2ms, size<50KB,macs<1.5M,memory<=2MiB")
    caps = b.resolve({})
    assert caps == {"latency": 2.0, "size": 50_000, "macs": 1_500_000, "memory": 2 * 1024**2}
    rel = Budget.parse("latency<0.5x,size<1kb")
    assert rel.resolve({"latency": 3.0}) == {"latency": 1.5, "size": 1000}
    assert Budget.parse("latency<250us").resolve({}) == {"latency": 0.25}


@pytest.mark.parametrize(
    "text, message",
    [
        ("latency<2parsecs", "unknown unit 'parsecs'"),
        ("speed<2ms", "resource 'speed' is unknown"),
        ("latency 2ms", "is not RESOURCE<VALUE"),
        ("size<0KB", "must be > 0"),
        ("", "budget is empty"),
        ("macs<1M,macs<2M", "names macs twice"),
    ],
)
def test_bad_budgets_say_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message):
        Budget.parse(text)


# --- the Pareto front ----------------------------------------------------------------------------


def test_pareto_front_is_exactly_the_non_dominated_points():
    rng = random.Random(0)
    points = [[rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 9)] for _ in range(200)]
    front = pareto_front(points)
    for i in front:
        assert not any(dominates(points[j], points[i]) for j in range(len(points)))
    for i in set(range(len(points))) - set(front):
        assert any(dominates(points[j], points[i]) for j in range(len(points))) or any(
            points[j] == points[i] for j in front
        )
    assert pareto_front([[1, 2], [2, 1], [2, 2], [1, 2]]) == [0, 1]


# --- spaces and policies ------------------------------------------------------------------------


def _lenet():
    torch.manual_seed(0)
    return create("lenet5").eval(), torch.randn(2, 1, 28, 28)


def test_default_spaces_cover_the_layers_each_technique_can_change():
    model, x = _lenet()
    channel = default_space(model, x, ("channel",))
    assert [d.layer for d in channel.dims] == ["conv1", "conv2", "fc1", "fc2"]  # fc3 is the output
    bits = default_space(model, x, ("bits",))
    assert {d.layer for d in bits.dims} == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    both = default_space(model, x, ("channel", "rank"))
    assert both.kinds == ("channel", "rank") and both.size == 9**4 * 5 ** (len(both.dims) - 4)
    with pytest.raises(ConfigError, match="sparsity and bits cannot be combined"):
        default_space(model, x, ("sparsity", "bits"))
    with pytest.raises(ConfigError, match="kinds must be drawn from"):
        default_space(model, x, ("depth",))
    with pytest.raises(ConfigError, match=r"must start with 0\.0"):
        default_space(model, x, ("channel",), choices={"channel": (0.5, 0.6)})


def test_a_policy_builds_what_it_says_and_the_identity_changes_nothing():
    model, x = _lenet()
    space = default_space(model, x, ("channel",))
    same = build(model, space.policy(space.identity()), x)
    assert torch.equal(same(x), model(x))
    policy = {**space.policy(space.identity()), "channel:conv2": 0.5, "channel:fc1": 0.3}
    pruned = build(model, policy, x)
    assert pruned.conv2.out_channels == 8 and pruned.fc1.out_features == 84
    assert pruned(x).shape == model(x).shape and model.conv2.out_channels == 16  # input intact
    sparse_space = default_space(model, x, ("sparsity",))
    sparse = build(model, {**sparse_space.policy(sparse_space.identity()), "sparsity:fc1": 0.9}, x)
    assert abs(float((sparse.fc1.weight == 0).float().mean()) - 0.9) < 0.01
    assert by_kind(policy)["channel"] == {"conv2": 0.5, "fc1": 0.3}


def test_recipe_steps_apply_the_policy_then_recover():
    steps = recipe_steps({"channel:conv1": 0.5, "channel:fc1": 0.0}, {"epochs": 2, "lr": 0.01})
    assert steps == [
        {"prune": {"method": "channel", "ratio": 0.0, "layer_ratios": {"conv1": 0.5}}},
        {"finetune": {"epochs": 2, "lr": 0.01}},
    ]
    kbit = recipe_steps({"bits:conv1": 4, "bits:fc1": 32}, {"epochs": 1})
    assert kbit == [
        {
            "quantize": {
                "scheme": "kbit",
                "bits": 8,
                "keep_first_last": False,
                "layer_bits": {"conv1": 4},
                "exclude": ["fc1"],
                "epochs": 1,
            }
        }
    ]


# --- searches on the embedded data ---------------------------------------------------------------


def test_search_meets_the_budget_and_its_recipe_reproduces_the_model(tmp_path):
    config = SearchConfig(
        Budget.parse("macs<0.5x,size<0.7x"),
        strategy="tpe",
        trials=6,
        finalists=1,
        finetune={"epochs": 1, "lr": 0.01},
        proxy=FAST,
    )
    result = search(Recipe(), config, tmp_path / "s", log=_quiet)
    assert len(result.records) == 6 and result.best is not None
    best = result.best
    assert result.feasible(best.record)
    final = best.run.final
    for resource, cap in result.caps.items():
        measured = {"macs": final.macs, "size": final.size_file_bytes}[resource]
        assert measured <= cap
    points = [[-r.evaluation.accuracy, *r.evaluation.resources.values()] for r in result.front]
    assert all(not dominates(p, q) for p in points for q in points)
    assert (tmp_path / "s" / "best.safetensors").stat().st_size == final.size_file_bytes
    # best.yaml, run again from scratch, gives the same model: same sizes and accuracy.
    again = run_recipe(
        load_recipe(tmp_path / "s" / "best.yaml"),
        tmp_path / "again",
        measure_memory=False,
        log=_quiet,
    )
    assert again.final.macs == final.macs and again.final.params_nonzero == final.params_nonzero
    assert again.final.size_file_bytes == final.size_file_bytes
    assert again.final.top1 == final.top1
    page = (tmp_path / "s" / "search.html").read_text()
    assert page.count("<circle") == 6 * len(result.caps)  # every trial on each resource's chart


@pytest.mark.parametrize("strategy", ["greedy", "amc"])
def test_netadapt_and_amc_reach_the_budget(tmp_path, strategy):
    config = SearchConfig(
        Budget.parse("macs<0.6x"), strategy=strategy, trials=14, finalists=0, proxy=FAST
    )
    result = search(UNTRAINED, config, tmp_path, log=_quiet)
    within = [r for r in result.records if result.feasible(r)]
    assert within, f"{strategy} found nothing within budget"
    if strategy == "amc":  # its action space keeps every episode within budget
        assert all(result.feasible(r) for r in result.records if any(r.indices))


def test_an_impossible_budget_names_the_closest_point(tmp_path):
    config = SearchConfig(Budget.parse("macs<1K"), trials=3, finalists=0, proxy=FAST)
    with pytest.raises(BudgetError, match="out of reach: the most compressed policy") as err:
        search(UNTRAINED, config, tmp_path, log=_quiet)
    assert err.value.closest["resources"]["macs"] > 1000


def test_a_study_refuses_a_worker_with_another_space(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    common = dict(trials=2, finalists=0, proxy=FAST, storage=storage, study="s")
    search(UNTRAINED, SearchConfig(Budget.parse("macs<0.8x"), **common), tmp_path / "a", log=_quiet)
    other = SearchConfig(Budget.parse("macs<0.8x"), kinds=("bits",), **common)
    with pytest.raises(ConfigError, match="already exists with another space"):
        search(UNTRAINED, other, tmp_path / "b", log=_quiet)


def test_an_unreachable_database_is_one_clear_error(tmp_path):
    config = SearchConfig(
        Budget.parse("macs<0.8x"),
        trials=1,
        finalists=0,
        proxy=FAST,
        storage="postgresql://nobody:secret@127.0.0.1:1/none",
    )
    with pytest.raises(ConfigError, match=r"cannot open search storage .*nobody:\*\*\*@") as err:
        search(UNTRAINED, config, tmp_path, log=_quiet)
    assert "secret" not in str(err.value)


# --- resume and workers ---------------------------------------------------------------------------

WORKER = """
import sys, time
from slimkit.pipeline.recipe import Recipe
from slimkit.search import Budget, ProxyConfig, SearchConfig, search
from slimkit.search import evaluate as ev

storage, study, trials, delay, out = sys.argv[1:6]
plain = ev.Evaluator.evaluate
def slow(self, policy):  # long enough trials to be killed in the middle of one
    open(out + "-inside", "w").close()  # tells the test a trial has just begun
    time.sleep(float(delay))
    return plain(self, policy)
ev.Evaluator.evaluate = slow
config = SearchConfig(Budget.parse("macs<0.8x"), strategy="tpe", trials=int(trials), finalists=0,
                      storage=storage,
                      study=study, heartbeat_s=1, proxy=ProxyConfig(val_size=200, recal_batches=0))
search(Recipe(model="lenet5"), config, out, log=lambda _: None)
"""


def _worker(tmp_path: Path, storage: str, trials: int, delay: float, name: str):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), storage, "s", str(trials), str(delay), str(tmp_path / name)],
        env=env,
    )


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)


def _kill_mid_trial(proc: subprocess.Popen, storage: str, after: int, timeout: float = 120):
    """SIGKILL `proc` at the start of one of its trials, once `after` trials are complete.

    Watching the study for a running trial races with that trial's end; the worker instead
    marks the start of each evaluation (OUT-inside), and the kill follows within milliseconds,
    far inside the trial's delay."""
    marker = Path(proc.args[-1] + "-inside")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done = sum(t.state == TrialState.COMPLETE for t in _trials(storage))
        except Exception:  # the study does not exist yet
            done = 0
        if done >= after:
            marker.unlink(missing_ok=True)  # wait for the next trial to begin
            while not marker.exists():
                assert proc.poll() is None, "the worker ended before it could be killed"
                assert time.monotonic() < deadline, "the worker started no further trial"
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return done
        assert proc.poll() is None, "the worker ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the worker never reached the point to kill it")


def test_a_killed_search_resumes_and_keeps_every_completed_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    first = _worker(tmp_path, storage, trials=6, delay=0.6, name="out")
    _kill_mid_trial(first, storage, after=2)
    before = {t.number: t.params for t in _trials(storage) if t.state == TrialState.COMPLETE}
    time.sleep(3.5)  # past the heartbeat grace period: the killed trial is stale now
    second = _worker(tmp_path, storage, trials=6, delay=0.0, name="out")
    assert second.wait(timeout=300) == 0
    trials = _trials(storage)
    after = {t.number: t.params for t in trials if t.state == TrialState.COMPLETE}
    assert len(after) == 6 and all(after[n] == p for n, p in before.items())
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1  # detected by its missing heartbeat, and queued again:
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retried and retried[0].params == killed[0].params


def _pg_binary(name: str) -> str | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    return None


@pytest.fixture
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server on localhost (Debian's postgresql package; .ci/run
    installs it and sets SLIMKIT_REQUIRE_POSTGRES, so CI cannot skip this)."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("SLIMKIT_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL binaries not found under /usr/lib/postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    import pwd
    import shutil
    import socket
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="slimkit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    root.chmod(0o700)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_study_on_postgresql_and_survive_a_kill(tmp_path, postgres_url):
    storage = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    a = _worker(tmp_path, postgres_url, trials=20, delay=0.5, name="a")
    b = _worker(tmp_path, postgres_url, trials=20, delay=0.5, name="b")
    _kill_mid_trial(a, storage, after=3)
    assert b.wait(timeout=300) == 0
    trials = _trials(storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 20
    assert len({t.number for t in trials}) == len(trials)  # each trial recorded once
    assert len({t._trial_id for t in trials}) == len(trials)
    killed = [t for t in trials if t.state == TrialState.FAIL]
    states = [(t.number, t.state.name, t.system_attrs.get("failed_trial")) for t in trials]
    assert len(killed) == 1, f"the killed worker's trial was not detected: {states}"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retried and retried[0].state == TrialState.COMPLETE


def test_measured_latency_and_memory_are_real_figures():
    from slimkit.data import load_embedded
    from slimkit.search import Evaluator

    model, x = _lenet()
    proxy = ProxyConfig(val_size=100, recal_batches=0, latency="measured", latency_calls=20)
    ev = Evaluator(model, load_embedded(), {"zoo": "lenet5"}, ("latency", "memory"), proxy)
    space = default_space(model, x, ("channel",))
    dense = ev.resources(space.policy(space.identity()))
    small = ev.resources(space.policy(space.extreme()))
    assert dense["latency"] > 0 and small["memory"] > 0
    assert small["size"] < dense["size"] / 4 and small["macs"] < dense["macs"] / 4
    assert dense["memory"] > dense["size"] * 0.5  # the weights are part of what a run holds


def test_cli_search_prints_the_front_and_rejects_bad_budgets(tmp_path, capsys):
    from slimkit.cli import main

    out = tmp_path / "cli"
    code = main(
        [
            "search",
            "lenet5",
            "--budget",
            "macs<0.7x",
            "--trials",
            "3",
            "--finalists",
            "0",
            "--val-size",
            "100",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and (out / "search.json").is_file()
    assert "proxy top-1" in capsys.readouterr().out
    assert main(["search", "--budget", "latency<2furlongs", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown unit 'furlongs'" in err[0]


NET = """
import torch
from torch import nn

def make():  # seeded: without weights, the recipe's input model must come out the same twice
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    net.input_shape = (1, 28, 28)
    return net
"""


def test_width_and_resolution_multipliers_are_searched_and_reproduced(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    inputs = Recipe(model=f"{tmp_path / 'net.py'}:make")
    config = SearchConfig(
        Budget.parse("macs<0.3x"),
        kinds=("width", "resolution"),
        trials=6,
        finalists=1,
        finetune={"epochs": 0},  # the policy alone: reproduced without any training
        proxy=FAST,
    )
    result = search(inputs, config, tmp_path / "s", log=_quiet)
    assert [d.name for d in result.space.dims] == ["width:model", "resolution:input"]
    final = result.best.run.final
    assert final.macs <= result.caps["macs"]
    recipe = load_recipe(tmp_path / "s" / "best.yaml")
    policy = result.space.policy(list(result.best.record.indices))
    assert recipe.resolution == policy["resolution:input"]
    again = run_recipe(recipe, tmp_path / "again", measure_memory=False, log=_quiet)
    assert again.final.macs == final.macs and again.final.top1 == final.top1


def test_a_recipe_resolution_needs_a_model_that_can_take_it(tmp_path):
    from slimkit.pipeline.recipe import parse_recipe

    with pytest.raises(ConfigError, match=r"resolution must be a number in \(0, 1\]"):
        parse_recipe({"resolution": 1.5})
    with pytest.raises(ConfigError, match="lenet5 cannot run on 21x21 inputs"):
        run_recipe(parse_recipe({"model": "lenet5", "resolution": 0.75}), tmp_path, log=_quiet)


def test_a_policy_the_library_refuses_fails_its_trial_and_the_search_goes_on(tmp_path, monkeypatch):
    from slimkit.search import evaluate as ev

    plain = ev.Evaluator.evaluate

    def picky(self, policy):
        if policy["channel:conv1"] >= 0.5:
            raise ConfigError("conv1 refuses to be halved")
        return plain(self, policy)

    monkeypatch.setattr(ev.Evaluator, "evaluate", picky)
    for strategy in ("tpe", "greedy"):
        config = SearchConfig(Budget.parse("macs<0.9x"), strategy=strategy, trials=8,
                              finalists=0, proxy=FAST)  # fmt: skip
        result = search(UNTRAINED, config, tmp_path / strategy, log=_quiet)
        assert result.records and all(r.indices[0] < 5 for r in result.records)
        assert result.states.get("fail", 0) >= (1 if strategy == "tpe" else 0)
