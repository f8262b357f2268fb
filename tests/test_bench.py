"""Backend comparison and the per-layer latency lookup table."""

import pytest
import torch
from torch import nn

from slimkit.bench import BACKENDS, fastest, format_table, run_bench
from slimkit.data import load_embedded
from slimkit.errors import ConfigError
from slimkit.measure.lookup import LatencyTable, layer_key, leaf_calls
from slimkit.nn import create


@pytest.fixture(scope="module")
def data():
    return load_embedded()


def test_rows_cover_every_backend_and_batch(data):
    model = create("lenet300_100").eval()
    example = data.test.normalized(torch.arange(2))
    backends = ["eager", "onnxruntime", "ort-int8", "int8-eager"]
    rows = run_bench(
        model,
        example,
        calib=data.train.subset(torch.arange(64)),
        backends=backends,
        batches=(1, 8),
        rounds=2,
        calls=3,
    )
    assert {(r.backend, r.batch) for r in rows} == {(b, n) for b in backends for n in (1, 8)}
    for r in rows:
        assert r.throughput_per_s == pytest.approx(r.batch * 1000 / r.p50_ms)
        assert r.precision == ("int8" if "int8" in r.backend else "fp32")
        if r.backend == "eager":
            assert r.speedup_vs_eager == 1.0
    table = format_table(rows)
    assert all(b in table for b in backends)
    best = fastest(rows)
    assert set(best) == {"threads=1 batch=1", "threads=1 batch=8"}


def test_bad_backend_requests(data):
    model = create("lenet5").eval()
    x = data.test.normalized(torch.arange(1))
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        run_bench(model, x, backends=["tensorrt"])
    with pytest.raises(ConfigError, match="calibration images"):
        run_bench(model, x, backends=["ort-int8"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            run_bench(model, x, backends=["cuda"])
    assert "cuda" in BACKENDS


class Twice(nn.Module):
    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.other = nn.Linear(4, 4)

    def forward(self, x):
        return self.other(self.fc(self.fc(x)))


def test_leaf_calls_count_repeated_layers_once_per_call():
    calls = leaf_calls(Twice(), torch.randn(3, 4))
    assert sorted(n for _, _, n in calls.values()) == [3]  # fc ×2 and other share one key
    key = layer_key(nn.Linear(4, 4), (1, 4))
    assert key == "Linear(in_features=4, out_features=4, bias=True)@1x4"
    assert layer_key(nn.Linear(4, 4), (1, 2, 4)) != key  # the input shape is part of the key


def test_table_predicts_saves_and_reuses(tmp_path):
    table = LatencyTable(calls=5)
    model = create("lenet5").eval()
    x = torch.randn(1, 1, 28, 28)
    first = table.predict(model, x)
    entries = dict(table.entries)
    assert first > 0 and len(entries) == len(leaf_calls(model, x))
    assert table.predict(model, x) == first  # no re-timing: the table answers
    path = table.save(tmp_path / "table.json")
    loaded = LatencyTable.load(path)
    assert loaded.entries == entries and loaded.predict(model, x) == first
    (tmp_path / "junk.json").write_text("{not json")
    assert LatencyTable.load(tmp_path / "junk.json").entries == {}


def test_calibration_scales_the_layer_sum():
    table = LatencyTable(calls=5)
    models = [(create(n).eval(), torch.randn(1, 1, 28, 28)) for n in ("lenet5", "lenet300_100")]
    summed = table.predict(*models[0])
    scale = table.calibrate(models)
    assert scale > 0 and table.predict(*models[0]) == pytest.approx(scale * summed)
