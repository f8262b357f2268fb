"""`slimkit compress --log`: every step's report.json numbers in TensorBoard and MLflow."""

import json
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from slimkit.cli import main
from slimkit.pipeline import runner as runner_module
from small_pipeline import SMALL, small_inputs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One fresh run and one resumed run (every step reused), each logged to both backends."""
    tmp = tmp_path_factory.mktemp("tracking")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(SMALL)
    db = f"sqlite:///{tmp / 'mlflow.db'}"
    reports = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # MLflow puts artifacts under ./mlruns
        mp.setattr(runner_module, "resolve_inputs", small_inputs(runner_module.resolve_inputs))
        for name in ("fresh", "resumed"):
            code = main(["compress", "--recipe", str(recipe), "--out", str(tmp / "out"),
                         "--no-memory", "--log", f"tensorboard:{tmp / name}", "--log",
                         f"mlflow:{db}"])  # fmt: skip
            assert code == 0
            reports.append(json.loads((tmp / "out" / "report.json").read_text()))
    assert [s["reused"] for s in reports[1]["steps"]] == [True, True]
    return tmp, db, reports


def report_steps(report: dict) -> list[dict]:
    """Per step index, the numbers report.json holds (baseline = 0)."""
    rows = [report["baseline"]] + [{**s["metrics"], "time_s": s["time_s"]} for s in report["steps"]]
    return [
        {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for row in rows
    ]


def test_tensorboard_scalars_equal_the_report_for_every_step(runs):
    tmp, _, reports = runs
    for name, report in zip(("fresh", "resumed"), reports, strict=True):
        acc = EventAccumulator(str(tmp / name), size_guidance={"tensors": 0}).Reload()
        expected = report_steps(report)
        assert {"top1", "size_file_bytes", "macs", "latency_p99_ms", "netscore"} <= set(expected[0])
        for tag in set().union(*expected):
            logged = {
                e.step: tensor_util.make_ndarray(e.tensor_proto).item() for e in acc.Tensors(tag)
            }
            want = {i: row[tag] for i, row in enumerate(expected) if tag in row}
            assert logged == want, tag
        (text,) = acc.Tensors("recipe/text_summary")
        assert "distill_alpha: 0.5" in tensor_util.make_ndarray(text.tensor_proto).item().decode()


def test_mlflow_run_has_every_step_params_and_reports(runs):
    tmp, db, reports = runs
    client = MlflowClient(db)
    experiment = client.get_experiment_by_name("slimkit")
    found = client.search_runs(
        [experiment.experiment_id],
        "attributes.run_name = 'recipe.yaml'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(found) == 2
    for run, report in zip(found, reports, strict=True):
        assert run.info.status == "FINISHED"
        expected = report_steps(report)
        for key in set().union(*expected):
            history = client.get_metric_history(run.info.run_id, key)
            logged = {m.step: m.value for m in history}
            want = {i: row[key] for i, row in enumerate(expected) if key in row}
            assert logged == want, key
        params = run.data.params
        assert params["step1"] == "prune" and params["step1.sparsity"] == "0.8"
        assert params["step2.scheme"] == "int8" and params["data"] == "embedded"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"recipe.yaml", "report.json", "report.html"}
        logged_report = json.loads(Path(client.download_artifacts(
            run.info.run_id, "report.json", str(tmp / run.info.run_id))).read_text())  # fmt: skip
        assert logged_report == report


def test_interrupted_run_keeps_the_finished_steps_and_is_marked_killed(
    runs, capsys, monkeypatch, tmp_path
):
    from slimkit.pipeline import steps

    real = steps.STEPS["quantize"]

    def interrupt(*_args):
        raise KeyboardInterrupt

    monkeypatch.setitem(steps.STEPS, "quantize", real.__class__(
        real.name, real.help, real.allowed, real.build, interrupt))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "interrupted.yaml"
    recipe.write_text("steps:\n  - quantize: {scheme: fp16}\n")
    db = runs[1]  # the database exists: no second schema migration
    code = main(["compress", "--recipe", str(recipe), "--out", str(tmp_path / "out"),
                 "--no-memory", "--log", f"mlflow:{db}"])  # fmt: skip
    assert code == 130 and "interrupted" in capsys.readouterr().err
    client = MlflowClient(db)
    experiment = client.get_experiment_by_name("slimkit")
    (run,) = client.search_runs(
        [experiment.experiment_id], "attributes.run_name = 'interrupted.yaml'"
    )
    assert run.info.status == "KILLED"
    baseline = json.loads((tmp_path / "out" / "00-baseline" / "result.json").read_text())
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "top1")] == [
        (0, baseline["metrics"]["top1"])
    ]


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and captured.out == "" and len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("backend", "modules"),
    [("tensorboard", ["tensorboard", "torch.utils.tensorboard"]), ("mlflow", ["mlflow"])],
)
def test_missing_package_is_one_line_naming_the_extra_before_any_step(
    capsys, monkeypatch, tmp_path, backend, modules
):
    # As if not installed: a None entry makes `import` raise ImportError.
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "out"
    line = one_line_error(capsys, ["compress", "--out", str(out), "--log", backend])
    assert f"pip install 'slimkit[{backend}]'" in line
    assert not out.exists()  # raised before the baseline was measured


@pytest.mark.parametrize("value", ["wandb:proj", "mlflow,tensorboard"])
def test_bad_log_value_lists_the_backends(capsys, tmp_path, value):
    out = tmp_path / "out"
    line = one_line_error(capsys, ["compress", "--out", str(out), "--log", value])
    assert f"--log '{value}': unknown backend" in line
    assert "allowed: tensorboard[:DIR], mlflow[:TRACKING_URI] (repeat --log" in line
    assert not out.exists()


def test_tensorboard_folder_inside_out_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    line = one_line_error(capsys, ["compress", "--out", str(out), "--log",
                                   f"tensorboard:{out / 'tb'}"])  # fmt: skip
    assert "outside --out" in line
    assert not out.exists()
