"""Backend comparison and the per-layer latency lookup table."""

import pytest
import torch
from torch import nn

from slimkit.bench import BACKENDS, fastest, format_table, run_bench
from slimkit.data import load_embedded
from slimkit.errors import ConfigError
from slimkit.measure.lookup import LatencyTable, layer_key, leaf_calls, trace_calls
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


class Attention(nn.Module):
    """Functional ops between the leaf layers: the part a leaf-only table missed."""

    input_shape = (6, 8)

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return (attn @ v + x).relu()


def test_operations_between_leaf_layers_are_timed_too():
    model = Attention().eval()
    layers, ops = trace_calls(model, torch.randn(2, 6, 8))
    assert list(layers) == [layer_key(model.qkv, (1, 6, 8))]
    names = " ".join(ops)
    for op in ("chunk", "transpose", "matmul", "softmax", "add", "relu"):
        assert op in names, op
    assert all("[1x" in key or "float32[" not in key for key in ops)  # batch 1
    assert not any("Linear" in key or "linear" in key for key in ops)  # inside the leaf: not again
    table = LatencyTable(calls=5)
    total = table.predict(model, torch.randn(1, 6, 8))
    assert set(table.entries) == set(layers) | set(ops)
    assert all(v > 0 for v in table.entries.values())
    assert total == pytest.approx(sum(table.entries.values()))  # each runs once per forward


def test_cpu_clock_and_percentile_round_trip(tmp_path):
    table = LatencyTable(calls=5, clock="cpu", percentile=10)
    model = create("lenet300_100").eval()
    x = torch.randn(1, 1, 28, 28)
    assert table.predict(model, x) > 0 and table.measure(model, x) > 0
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert (loaded.clock, loaded.percentile, loaded.entries) == ("cpu", 10, table.entries)
    with pytest.raises(ConfigError, match="'cpu' with 1 thread"):
        LatencyTable(clock="cpu", threads=2).measure(model, x)
