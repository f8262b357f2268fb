"""The `slimkit` command: readable output, JSON, and one-line errors for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from slimkit.cli import main
from slimkit.nn import create
from slimkit.weights import save_weights


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_zoo_lists_models(capsys):
    code, out, _ = run(capsys, "zoo")
    assert code == 0
    assert "lenet5_caffe" in out and "resnet56" in out and "mobilenet_v1" in out


def test_default_profile_json_has_every_metric(capsys):
    code, out, _ = run(capsys, "profile", "--json", "--no-memory")
    assert code == 0
    record = json.loads(out)
    assert record["model"] == "lenet5"
    assert record["params"] == 61_706
    assert record["top1"] > 95.0 and record["eval_samples"] == 2000
    assert record["netscore"] > 0 and record["information_density"] > 0
    assert record["threads"] == 1 and record["latency_p50_ms"] <= record["latency_p99_ms"]
    assert record["train_time_s"] > 0


def test_profile_table_is_readable(capsys, tmp_path):
    path = save_weights(create("lenet300_100"), tmp_path / "w.safetensors")
    code, out, _ = run(
        capsys,
        "profile",
        "lenet300_100",
        "--weights",
        str(path),
        "--no-memory",
        "--trace",
        str(tmp_path / "trace.json"),
    )
    assert code == 0
    assert "266,610" in out and "p50" in out and "Linear" in out
    assert (tmp_path / "trace.json").stat().st_size > 0


def one_line_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slimkit: error:")
    return lines[0]


def test_unknown_model_lists_available(capsys):
    line = one_line_error(capsys, "profile", "resnet1000")
    assert "resnet1000" in line and "lenet5" in line and "resnet20" in line


def test_missing_data_path(capsys, tmp_path):
    line = one_line_error(capsys, "profile", "lenet5", "--data", str(tmp_path / "nowhere"))
    assert "nowhere" in line and "does not exist" in line


def test_wrong_input_shape_names_expected(capsys, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    y = np.arange(20) % 10
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    line = one_line_error(
        capsys, "profile", "lenet5", "--data", str(tmp_path / "rgb.npz"), "--no-memory"
    )
    assert "(N, 1, 28, 28)" in line and "(1, 3, 32, 32)" in line


def test_mismatched_weights_name_key_and_shapes(capsys, tmp_path):
    path = save_weights(create("lenet5_caffe"), tmp_path / "caffe.safetensors")
    line = one_line_error(capsys, "profile", "lenet5", "--weights", str(path))
    assert "in the file but" in line and "caffe.safetensors" in line


def test_not_a_weights_file(capsys, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    line = one_line_error(capsys, "profile", "lenet5", "--weights", str(bogus))
    assert "not a weights file" in line


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "slimkit.cli", "zoo"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "lenet300_100" in result.stdout


def test_prune_magnitude_writes_smaller_sparse_artifact(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "prune",
        "--method",
        "magnitude",
        "--amount",
        "0.9",
        "--finetune-epochs",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    artifact = tmp_path / "lenet5-sparse.safetensors"
    assert artifact.exists()
    assert "parameters (non-zero)" in out and "top-1 accuracy" in out
    from slimkit.prune import load_sparse

    model = load_sparse(create("lenet5"), artifact)
    nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert nonzero / total == pytest.approx(0.1, abs=0.02)
    assert artifact.stat().st_size < 0.3 * total * 4


def test_prune_channels_shrinks_layers(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "prune",
        "lenet5",
        "--method",
        "channel",
        "--amount",
        "0.5",
        "--scope",
        "layer",
        "--finetune-epochs",
        "0",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    from slimkit.prune import load_pruned

    model = load_pruned(tmp_path / "lenet5-channels.safetensors")
    assert model.conv1.out_channels == 3 and model.conv2.out_channels == 8
    assert "MACs / sample" in out


def test_prune_bad_amount_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, "prune", "lenet5", "--amount", "1.5", "--out", str(tmp_path))
    assert "1.5" in line


@pytest.mark.parametrize(
    ("args", "artifact"),
    [
        (["--runtime", "torch"], "lenet5-int8.safetensors"),
        (["--runtime", "onnxruntime", "--calibration", "percentile"], "lenet5-int8.onnx"),
        (["--scheme", "kbit", "--bits", "3", "--epochs", "0"], "lenet5-kbit3.safetensors"),
        (["--scheme", "bf16"], "lenet5-bf16.safetensors"),
    ],
)
def test_quantize_writes_a_smaller_artifact(capsys, tmp_path, args, artifact):
    code, out, _ = run(capsys, "quantize", *args, "--out", str(tmp_path))
    assert code == 0, out
    path = tmp_path / artifact
    fp32_bytes = 61706 * 4
    assert path.exists() and path.stat().st_size < 0.55 * fp32_bytes
    assert "file size" in out and "top-1 accuracy" in out


def test_quantize_bad_options_are_one_line(capsys, tmp_path):
    line = one_line_error(
        capsys, "quantize", "--scheme", "kbit", "--bits", "9", "--out", str(tmp_path)
    )
    assert "bits" in line
    line = one_line_error(
        capsys, "quantize", "--runtime", "torch", "--calibration", "entropy", "--out", str(tmp_path)
    )
    assert "entropy" in line and "histogram" in line


def test_bench_prints_every_backend_and_the_fastest(capsys):
    code, out, _ = run(
        capsys, "bench", "lenet300_100", "--backends", "eager,onnxruntime", "--batch", "1,4"
    )
    assert code == 0
    assert out.count("onnxruntime") >= 2 and "fastest at threads=1 batch=4" in out
    line = one_line_error(capsys, "bench", "--batch", "one")
    assert "--batch" in line


def test_distill_writes_a_student(capsys, tmp_path):
    args = ("distill", "--student", "lenet300_100", "--epochs", "1", "--mirror")
    code, out, _ = run(capsys, *args, "--out", str(tmp_path))
    assert code == 0
    assert (tmp_path / "lenet300_100-distilled.safetensors").exists()
    assert "top-1 accuracy" in out
    line = one_line_error(capsys, "distill", "--student", "resnet20", "--out", str(tmp_path))
    assert "expects input of shape" in line or "10" in line


def test_compress_with_a_recipe_then_resume(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - quantize: {scheme: fp16}\n")
    out_dir = tmp_path / "out"
    args = ("compress", "--recipe", str(recipe), "--out", str(out_dir), "--no-memory")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert (out_dir / "report.html").exists() and "1. quantize" in out
    code, _, err = run(capsys, *args)
    assert code == 0 and "unchanged, reusing" in err
    recipe.write_text("steps:\n  - quantize: {scheme: fp17}\n")
    line = one_line_error(capsys, *args)
    assert "r.yaml line 2" in line and "fp16" in line


def test_unexpected_errors_are_one_line_unless_verbose(capsys, monkeypatch):
    import slimkit.cli as cli

    def boom(_args):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli, "cmd_zoo", boom)  # main() builds its parser after this
    code = cli.main(["zoo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [
        "slimkit: error: RuntimeError: disk on fire (rerun with --verbose for the traceback)"
    ]
    with pytest.raises(RuntimeError):
        cli.main(["--verbose", "zoo"])


@pytest.mark.slow
def test_default_compress_runs_end_to_end(tmp_path):
    """The README's main job, as a user runs it (a fresh process, the built-in recipe)."""
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "slimkit.cli", "compress", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.perf_counter() - t0 < 300
    assert "top-1 accuracy" in result.stdout and (tmp_path / "out" / "report.html").exists()


def test_encode_decode_and_profile_a_slim_file(capsys, tmp_path):
    code, out, _ = run(capsys, "encode", "--sparsity", "0.9", "--bits", "4", "--out", str(tmp_path))
    assert code == 0
    artifact = tmp_path / "lenet5.slim"
    assert artifact.exists()
    assert "conv1.weight" in out and "Shannon bound" in out and "(reloaded)" in out
    encoded = out
    size = artifact.stat().st_size
    assert size < 61_706 * 4 / 15  # 90% pruned, 4-bit indices, entropy-coded
    code, out, err = run(capsys, "decode", str(artifact), "--out", str(tmp_path / "w.safetensors"))
    assert code == 0 and "slimkit decode" in out and "MB/s" in out
    assert (tmp_path / "w.safetensors").exists() and "wrote the decoded weights" in err
    code, out, _ = run(capsys, "profile", "--weights", str(artifact), "--json", "--no-memory")
    record = json.loads(out)
    assert code == 0 and record["model"] == "lenet5"
    assert record["size_file_bytes"] == size and record["sparsity"] > 0.85
    reloaded = float(encoded.split("-> ")[1].split("%")[0])
    assert record["top1"] == pytest.approx(100 - reloaded, abs=0.01) and record["top1"] > 50


def test_decode_damaged_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.slim"
    bad.write_bytes(b"\x89SLM\r\n\x1a\n\x07")
    code, _, err = run(capsys, "decode", str(bad))
    assert code == 2 and err.count("\n") == 1
    assert "version 7, newer than the 2" in err
