"""Recipes and `slimkit compress`: validation with locations, measured steps, resume, report."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.errors import ConfigError
from slimkit.nn import create
from slimkit.pipeline import load_recipe, parse_recipe, run_recipe
from slimkit.pipeline import runner as runner_module
from slimkit.pipeline.report import write_report
from slimkit.prune import load_sparse
from small_pipeline import SMALL, small_inputs

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def small_data(monkeypatch):
    monkeypatch.setattr(runner_module, "resolve_inputs", small_inputs(runner_module.resolve_inputs))


def run(recipe, out, **kw):
    return run_recipe(recipe, out, measure_memory=False, log=lambda _: None, **kw)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps:\n  - prnue: {}\n", r"line 2: step 1: unknown step 'prnue'; steps: prune"),
        (
            "steps:\n  - prune:\n      sparsty: 0.5\n",
            r"line 3: unknown option 'sparsty'; allowed: .*sparsity",
        ),
        (
            "steps:\n  - prune: {sparsity: 1.5}\n",
            r"step 1 \(prune\): .*sparsity must be in \[0, 1\)",
        ),
        ("steps:\n  - prune: {sparsity: high}\n", r"step 1 \(prune\)"),
        ("steps:\n  - quantize: {scheme: int4}\n", r"scheme must be one of int8, int8-qat"),
        ("steps:\n  - quantize: {scheme: kbit, bits: 9}\n", r"bits must be an int in 1..8"),
        ("steps:\n  - finetune: {epochs: 0}\n", r"epochs must be >= 1"),
        ("modle: lenet5\n", r"line 1: unknown key 'modle'; allowed: model"),
        ("steps: [prune]\n", r"step 1 must be one mapping"),
        ("steps:\n  - prune: {method: channel, gradual: true, ratio: 0.5}\n", r"gradual must be"),
        ("steps:\n  - distill: {mirror_teacher: 1}\n", r"mirror_teacher must be true or false"),
    ],
)
def test_bad_recipes_name_the_place_and_the_choices(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, text))


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.yaml line \d: not valid YAML"):
        load_recipe(write(tmp_path, "steps:\n  - prune: {sparsity: 0.5\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_yaml_tags_are_not_executed(tmp_path):
    text = "steps: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(write(tmp_path, text))


def test_example_recipes_validate():
    names = sorted(p.name for p in RECIPES.glob("*.yaml"))
    assert {"deep-compression.yaml", "structured-distill.yaml", "int8-onnxruntime.yaml"} <= set(
        names
    )
    for path in RECIPES.glob("*.yaml"):
        assert load_recipe(path).steps


def _at_small_settings(path: Path, data: Path) -> dict:
    """An example recipe with every schedule cut to one epoch and the given data."""
    import yaml

    raw = yaml.safe_load(path.read_text())
    for step in raw["steps"]:
        params = next(iter(step.values()))
        for key in ("epochs", "ramp_epochs"):
            if key in params:
                params[key] = 1
    return {**raw, "data": str(data)}


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_example_recipes_run_end_to_end(tmp_path, name):
    """Each shipped recipe runs through on small settings; its model's kind of data is made up
    (32×32 colour images for CIFAR models), so only the steps are under test, not accuracy."""
    recipe_path = RECIPES / name
    model = load_recipe(recipe_path).model
    shape = create(model).input_shape
    gen = np.random.default_rng(0)
    images = lambda n: gen.integers(0, 256, (n, *shape), dtype=np.uint8)  # noqa: E731
    labels = lambda n: gen.integers(0, 10, n)  # noqa: E731
    data = tmp_path / "data.npz"
    np.savez(data, x_train=images(512), y_train=labels(512), x_test=images(500), y_test=labels(500))
    recipe = parse_recipe(_at_small_settings(recipe_path, data))
    result = run(recipe, tmp_path / "out")
    assert [s.kind for s in result.steps] == [s.kind for s in recipe.steps]
    for step in result.steps:  # each step wrote its artifact, and it was measured
        assert step.artifact and list((tmp_path / "out").glob(f"*/{step.artifact}")), step
        assert step.metrics.params > 0
    if name == "structured-distill.yaml":  # channels really removed, stem left whole
        pruned = result.steps[0].metrics
        assert pruned.macs < 0.5 * result.baseline.macs
    if name == "deep-compression.yaml":
        assert result.final.size_file_bytes < result.baseline.size_file_bytes / 10


# --- running ------------------------------------------------------------------------------------


def test_run_measures_every_step_and_resumes(tmp_path):
    recipe = load_recipe(write(tmp_path, SMALL))
    out = tmp_path / "out"
    result = run(recipe, out)
    prune_step, quant_step = result.steps
    assert prune_step.metrics.sparsity > 0.5 and not prune_step.reused
    assert quant_step.artifact.endswith(".onnx")
    assert quant_step.metrics.size_file_bytes < 0.35 * result.baseline.size_file_bytes
    sparse = load_sparse(create("lenet5"), out / "01-prune" / prune_step.artifact)
    zeros = sum(int((p == 0).sum()) for p in sparse.parameters())
    assert zeros > 0.5 * sum(p.numel() for p in sparse.parameters())

    again = run(recipe, out)  # unchanged: everything reused
    assert all(s.reused for s in again.steps)
    assert again.final.top1 == result.final.top1

    # A changed last step reruns only that step, starting from the saved pruned model.
    changed = parse_recipe(
        {"steps": [{"prune": recipe.steps[0].params}, {"quantize": {"scheme": "fp16"}}]}
    )
    third = run(changed, out)
    assert third.steps[0].reused and not third.steps[1].reused
    assert third.steps[1].metrics.sparsity == pytest.approx(prune_step.metrics.sparsity, abs=0.02)


def test_channel_pruning_by_taylor_importance_gets_gradients(tmp_path):
    """Taylor scores need ∂loss/∂w: the step feeds a training batch (it used to fail asking for
    gradients) and removes as many channels as L1 does."""
    text = "steps:\n  - prune: {method: channel, ratio: 0.5, importance: taylor}\n"
    result = run(load_recipe(write(tmp_path, text)), tmp_path / "out")
    assert result.steps[0].metrics.params < 0.6 * result.baseline.params


def test_mirror_teacher_reaches_the_distillation(tmp_path, monkeypatch):
    import slimkit.pipeline.steps as steps_module

    seen = []
    real = steps_module.distill
    monkeypatch.setattr(
        steps_module, "distill", lambda *a, **kw: seen.append(kw["mirror"]) or real(*a, **kw)
    )
    text = "steps:\n  - distill: {epochs: 1, mirror_teacher: true}\n"
    result = run(load_recipe(write(tmp_path, text)), tmp_path / "out")
    assert seen == [True] and result.steps[0].metrics.top1 > 0


def test_interrupted_step_leaves_finished_steps_and_resumes(tmp_path, monkeypatch):
    recipe = load_recipe(write(tmp_path, SMALL))
    out = tmp_path / "out"
    from slimkit.pipeline import steps

    real = steps.STEPS["quantize"]

    def interrupt(*_args):
        raise KeyboardInterrupt

    monkeypatch.setitem(steps.STEPS, "quantize", real.__class__(
        real.name, real.help, real.allowed, real.build, interrupt))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run(recipe, out)
    assert (out / "01-prune" / "result.json").is_file()
    assert not list(out.rglob("*.tmp*"))
    monkeypatch.setitem(steps.STEPS, "quantize", real)
    result = run(recipe, out)
    assert result.steps[0].reused and not result.steps[1].reused


def test_out_folder_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    recipe = load_recipe(write(tmp_path, "steps:\n  - fuse: {}\n"))
    with pytest.raises(ConfigError, match="--force"):
        run(recipe, out)
    assert (out / "keep.txt").read_text() == "mine"
    run(recipe, out, force=True)
    assert not (out / "keep.txt").exists()


def test_input_weights_file_is_untouched(tmp_path):
    from slimkit.default import default_model

    trained = default_model()
    weights = tmp_path / "w.safetensors"
    shutil.copy(trained.weights, weights)
    before = weights.read_bytes()
    text = f"model: lenet5\nweights: {weights}\nsteps:\n  - quantize: {{scheme: bf16}}\n"
    run(load_recipe(write(tmp_path, text)), tmp_path / "out")
    assert weights.read_bytes() == before


def test_user_factory_model(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))\n"
        "    m.input_shape = (1, 28, 28)\n"
        "    return m\n"
    )
    text = (
        f"model: {tmp_path / 'mine.py'}:build\nsteps:\n  - prune: {{method: channel, ratio: 0.5}}\n"
    )
    result = run(load_recipe(write(tmp_path, text)), tmp_path / "out")
    assert result.steps[0].metrics.params < 0.6 * result.baseline.params


# --- the report ---------------------------------------------------------------------------------


def test_report_renders_in_headless_chromium(tmp_path):
    result = run(load_recipe(write(tmp_path, SMALL)), tmp_path / "out")
    json_path, html_path = write_report(result)
    data = json.loads(json_path.read_text())
    assert [s["kind"] for s in data["steps"]] == ["prune", "quantize"]
    assert data["final"]["size_file_bytes"] == result.final.size_file_bytes
    text = html_path.read_text()
    assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: apt-get install chromium"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    url = html_path.resolve().as_uri()
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-500:]
    assert not re.search(r"CONSOLE.*(error|Uncaught)", dom.stderr, re.IGNORECASE)
    charts = re.findall(r'<svg data-chart="([\w-]+)"[^>]*>(.*?)</svg>', dom.stdout, re.DOTALL)
    names = {name for name, _ in charts}
    assert names == {"size", "latency", "accuracy", "acc-size", "acc-latency", "sparsity",
                     "bits", "layer-latency"}  # fmt: skip
    for name, body in charts:
        assert re.search(r"<(rect|circle)\b", body), f"chart {name} is empty"
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def test_deep_compression_steps_write_a_slim_file_that_loads_back(tmp_path):
    from slimkit.share import load_compressed

    text = """
steps:
  - prune: {method: magnitude, sparsity: 0.9, scope: global}
  - share: {bits: 4, epochs: 1, lr: 0.0001, optimizer: adam}
"""
    out = tmp_path / "out"
    result = run(load_recipe(write(tmp_path, text)), out)
    step = result.steps[1]
    assert step.artifact == "model.slim"
    assert step.metrics.size_file_bytes < result.steps[0].metrics.size_file_bytes
    assert set(step.notes["layer_bits"].values()) == {4}
    reloaded = load_compressed(out / "02-share" / "model.slim")
    from slimkit.pipeline.runner import load_state, resolve_inputs

    state = load_state(out / "02-share" / "state.safetensors", resolve_inputs(load_recipe(write(
        tmp_path, text))))  # fmt: skip
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(reloaded(x), state.model(x))


def test_convert_and_factorize_steps_write_artifacts_that_load_and_resume(tmp_path):
    from slimkit.lowrank import factorized_layers, load_factorized
    from slimkit.pipeline.runner import load_state, resolve_inputs

    text = """
steps:
  - convert: {to: separable, layers: [conv2]}
  - factorize: {ratio: 0.5, conv: none, epochs: 1, lr: 0.01}
"""
    recipe = load_recipe(write(tmp_path, text))
    out = tmp_path / "out"
    result = run(recipe, out)
    assert [s.artifact for s in result.steps] == ["model.safetensors"] * 2
    assert result.steps[1].metrics.params < result.steps[0].metrics.params < result.baseline.params
    state = load_state(out / "02-factorize" / "state.safetensors", resolve_inputs(recipe))
    assert set(factorized_layers(state.model)) == {"conv2", "fc1", "fc2", "fc3"}
    reloaded = load_factorized(out / "02-factorize" / "model.safetensors")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(reloaded(x), state.model(x))
    longer = load_recipe(write(tmp_path, text + "  - fuse: {}\n", "longer.yaml"))
    again = run(longer, out)
    assert [s.reused for s in again.steps] == [True, True, False]
