"""Tests for slimkit.sweep and `slimkit sweep`: MobileNetV1 points on tiny embedded data.

MACs are checked against MobileNetV1's multiply-adds written out here from the paper's Table 1,
independently of the model code.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from slimkit import cli
from slimkit.data import ArrayDataset, DataSplits, load_embedded, resized
from slimkit.errors import ConfigError, SlimkitError, UnknownModelError
from slimkit.sweep import SweepConfig, sweep, sweepable_models, write_outputs
from slimkit.train import TrainConfig

# MobileNetV1's 13 depthwise-separable blocks, (output channels, stride), Howard et al. Table 1.
BLOCKS = (
    [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    + [(512, 1)] * 5
    + [
        (1024, 2),
        (1024, 1),
    ]
)


def mobilenet_v1_macs(alpha: float, size: int, classes: int) -> int:
    """3×3 stem (stride 1 below 96 px) + per block 3×3 depthwise and 1×1 pointwise + the fc."""
    ch = lambda c: max(1, int(c * alpha))  # noqa: E731
    h = (size - 1) // (1 if size < 96 else 2) + 1
    c = ch(32)
    macs = 27 * c * h * h
    for out, stride in BLOCKS:
        h = (h - 1) // stride + 1
        macs += 9 * c * h * h + c * ch(out) * h * h
        c = ch(out)
    return macs + c * classes


def rgb(ds: ArrayDataset, lo: int, hi: int) -> ArrayDataset:
    """Embedded digits lo:hi as 3-channel images (MobileNet takes RGB)."""
    images = ds.images[lo:hi].expand(-1, 3, -1, -1).contiguous()
    return ArrayDataset(images, ds.labels[lo:hi], ds.classes, ds.mean * 3, ds.std * 3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared machine, two spinning threads per test slow it ten-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    test = load_embedded().test
    data = DataSplits(rgb(test, 0, 64), rgb(test, 64, 128), "digits-rgb")
    config = SweepConfig(
        widths=(0.25, 0.125),
        resolutions=(1, 0.75),
        train=TrainConfig(epochs=1, batch_size=32),
        latency_rounds=2,
        calls_per_round=2,
    )
    return sweep(config, data)


def test_every_point_is_trained_and_measured(trained):
    points = trained.points
    assert [(p.width, p.resolution, p.input_size) for p in points] == [
        (0.25, 1.0, 28), (0.125, 1.0, 28), (0.25, 0.75, 21), (0.125, 0.75, 21),
    ]  # fmt: skip
    for p in points:
        assert p.macs == mobilenet_v1_macs(p.width, p.input_size, classes=10)
        assert 0 <= p.top1 <= p.top5 <= 100
        assert math.isfinite(p.netscore)
        assert p.latency_p90_ms >= p.latency_p50_ms > 0
        assert p.train_time_s > 0
    # width changes the parameters; resolution leaves them alone
    assert points[0].params > points[1].params
    assert points[0].params == points[2].params


def test_macs_scale_with_alpha_and_rho_squared():
    result = sweep(
        SweepConfig(widths=(1, 0.5, 0.25), resolutions=(1, 0.5), latency_rounds=1,
                    calls_per_round=1)
    )  # fmt: skip
    assert result.base_size == 224  # no data: the model's own input size
    macs = {(p.width, p.resolution): p.macs for p in result.points}
    for (alpha, rho), m in macs.items():
        assert m == mobilenet_v1_macs(alpha, round(224 * rho), classes=1000)
    assert all(p.top1 is None and p.netscore is None for p in result.points)
    # the paper's Table 6: 569 / 149 / 41 M at 224²
    assert [round(macs[a, 1.0] / 1e6) for a in (1, 0.5, 0.25)] == [569, 149, 41]
    for alpha in (0.5, 0.25):
        ratio = macs[alpha, 1.0] / macs[1, 1.0]
        # ≈ α²: the 1×1 convs scale as α², the depthwise convs and the stem only as α
        assert alpha**2 < ratio < 1.2 * alpha**2
    assert 0.25 < macs[1, 0.5] / macs[1, 1.0] < 0.27  # ≈ ρ² (7² → 4², not 3.5², at the end)


def test_resized_resamples_to_the_point_size():
    test = load_embedded().test
    ds = rgb(test, 0, 8)
    assert resized(ds, (28, 28)) is ds
    small = resized(ds, (14, 14))
    assert small.images.shape == (8, 3, 14, 14) and small.images.dtype == torch.uint8
    assert torch.equal(small.labels, ds.labels)
    flat = ArrayDataset(torch.full((2, 3, 28, 28), 77, dtype=torch.uint8), ds.labels[:2],
                        ds.classes, ds.mean, ds.std)  # fmt: skip
    assert (resized(flat, (9, 9)).images == 77).all()  # a flat image stays flat


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"widths": (0.5, 0.0)}, "width multiplier α must be in (0, 1], got 0.0"),
        ({"widths": (1.5,)}, "width multiplier α must be in (0, 1], got 1.5"),
        ({"resolutions": (-0.5,)}, "resolution multiplier ρ must be in (0, 1], got -0.5"),
        ({"resolutions": (1.2,)}, "resolution multiplier ρ must be in (0, 1], got 1.2"),
        ({"widths": ()}, "give at least one width multiplier"),
        ({"widths": (0.5, 0.25, 0.5)}, "each width multiplier α once"),
        ({"resolutions": []}, "give at least one resolution multiplier"),
        ({"model": "resnet20"}, "'resnet20' has no width multiplier"),
        ({"model": "shufflenet_v2", "resolutions": (0.5,)}, "'shufflenet_v2' has a fixed input"),
        ({"threads": 0}, "threads must be an integer >= 1"),
    ],
)
def test_bad_config_is_one_clear_line(kwargs, needle):
    with pytest.raises(ConfigError) as exc:
        SweepConfig(**kwargs)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_model_and_training_without_data():
    with pytest.raises(UnknownModelError, match="mobilenet_v9"):
        SweepConfig(model="mobilenet_v9")
    with pytest.raises(ConfigError, match="needs data"):
        sweep(SweepConfig(train=TrainConfig(epochs=1)))
    assert {"mobilenet_v1", "mobilenet_v2"} <= set(sweepable_models())
    assert "resnet20" not in sweepable_models()


def test_outputs_are_json_and_a_self_contained_page(trained, tmp_path):
    json_path, html_path = write_outputs(trained, tmp_path / "out")
    record = json.loads(json_path.read_text())
    assert [p["macs"] for p in record["points"]] == [p.macs for p in trained.points]
    assert record["config"]["train"]["epochs"] == 1
    page = html_path.read_text()
    assert page.count("<svg") == 2
    assert 'data-chart="acc-macs"' in page and 'data-chart="acc-latency"' in page
    assert page.count("<circle") == 2 * len(trained.points)
    assert page.count("<tr>") == 1 + len(trained.points)
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["sweep.html", "sweep.json"]


def test_cli_sweep_prints_the_table_and_writes_files(tmp_path, capsys):
    out = tmp_path / "sw"
    code = cli.main(["sweep", "--widths", "0.25,0.125", "--resolutions", "0.25", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["α", "ρ", "input", "params", "MACs", "p50", "ms", "top-1", "%",
                                "NetScore", "train", "s"]  # fmt: skip
    assert [line.split()[:3] for line in lines[1:3]] == [["0.25", "0.25", "56²"],
                                                         ["0.125", "0.25", "56²"]]  # fmt: skip
    assert (out / "sweep.json").is_file() and (out / "sweep.html").is_file()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sweep", "resnet20"], "no width multiplier"),
        (["sweep", "--widths", "1.5"], "(0, 1]"),
        (["sweep", "--widths", "a,b"], "--widths takes comma-separated numbers"),
        (["sweep", "--resolutions", "0"], "resolution multiplier ρ must be in (0, 1]"),
        (["sweep", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["sweep", "--epochs", "2"], "needs data"),
    ],
)
def test_cli_bad_input_is_one_line(argv, needle, capsys, tmp_path):
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and err.startswith("slimkit: error:")
    assert not (tmp_path / "o").exists()
    assert issubclass(ConfigError, SlimkitError)
