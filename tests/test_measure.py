"""Measurement harness against hand-computed references."""

import json
import math

import pytest
import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.measure import (
    count_macs,
    count_params,
    estimate_energy,
    information_density,
    measure,
    measure_latency,
    netscore,
    peak_memory,
    profile_layers,
)
from slimkit.measure.latency import percentile
from slimkit.nn import create


def macs_of(module: nn.Module, x: torch.Tensor, **kw) -> int:
    return count_macs(module, x, **kw).dense


# --- MACs: forward ---------------------------------------------------------------------------


def test_conv_macs_match_formula():
    conv = nn.Conv2d(3, 16, 3, padding=1)
    assert macs_of(conv, torch.randn(2, 3, 32, 32)) == 2 * 16 * 3 * 9 * 32 * 32


def test_depthwise_conv_macs_match_formula():
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16)
    assert macs_of(conv, torch.randn(1, 16, 8, 8)) == 16 * 9 * 8 * 8


def test_group_conv_macs_match_formula():
    conv = nn.Conv2d(16, 32, 3, groups=4)  # no padding: 10 -> 8
    assert macs_of(conv, torch.randn(1, 16, 10, 10)) == 32 * (16 // 4) * 9 * 8 * 8


def test_linear_macs_match_formula():
    assert macs_of(nn.Linear(128, 64), torch.randn(5, 128)) == 5 * 128 * 64


def test_sdpa_macs_on_cpu():
    class Attn(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, q, q)

    b, h, seq, d = 2, 4, 16, 8
    # QK^T and AV: 2 · B·H·L·L·D
    assert macs_of(Attn(), torch.randn(b, h, seq, d)) == 2 * b * h * seq * seq * d


def test_multihead_attention_macs_despite_fast_path():
    e, heads, seq = 32, 4, 10

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(e, heads, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    expected = 4 * seq * e * e + 2 * seq * seq * e  # q,k,v,out projections + QK^T, AV
    assert macs_of(SelfAttention(), torch.randn(1, seq, e)) == expected
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


def test_effective_macs_skip_zero_weights():
    layer = nn.Linear(100, 100, bias=False)
    with torch.no_grad():
        mask = torch.zeros(100 * 100)
        mask[torch.randperm(100 * 100)[:1000]] = 1
        layer.weight.mul_(mask.view(100, 100))
    counts = count_macs(layer, torch.randn(1, 100))
    assert counts.dense == 10_000
    assert counts.effective == 1_000


# --- MACs: training ----------------------------------------------------------------------------


def test_training_macs_of_grouped_convs():
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 3, padding=1, groups=8)
    )
    fwd = 8 * 9 * 6 * 6
    # forward 2F; backward: 2nd conv grad-input + grad-weight = 2F, 1st conv grad-weight = F
    assert macs_of(model, torch.randn(1, 8, 6, 6), training=True) == 5 * fwd


def test_training_macs_leave_model_untouched():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, torch.randn(8, 4) * 10 + 3, training=True)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_training_macs_of_a_model_with_nothing_to_train_are_its_forward():
    """Frozen weights, or a forward under no_grad (a teacher ensemble): no backward to count."""
    frozen = nn.Sequential(nn.Linear(4, 3)).requires_grad_(False)

    class NoGrad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.fc(x)

    for model in (frozen, NoGrad()):
        x = torch.randn(2, 4)
        assert macs_of(model, x, training=True) == macs_of(model, x) == 2 * 4 * 3


def test_measure_counts_training_macs_per_sample_with_batchnorm_on_1x1_maps():
    """Train-mode BN cannot normalize one value per channel; the count must still work and be
    per sample: forward, grad-input + grad-weight of the last conv, grad-weight of the first."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.Flatten(),
    )  # fmt: skip
    model.input_shape = (1, 7, 7)  # 7×7 → 3×3 → 1×1
    m = measure(model, latency_calls=5, throughput_batch=None, memory=False, layers=False)
    first, last = 4 * 9 * 9, 6 * 4 * 9
    assert m.macs == first + last
    assert m.macs_training == (first + last) + 2 * last + first


# --- parameters, scores ------------------------------------------------------------------------


def test_tied_weights_count_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.head = nn.Linear(8, 50, bias=False)
            self.head.weight = self.embed.weight

    assert count_params(Tied()).total == 50 * 8


def test_nonzero_params_and_sparsity():
    layer = nn.Linear(10, 10)
    with torch.no_grad():
        layer.weight[:5] = 0
        layer.bias.zero_()
    counts = count_params(layer)
    assert (counts.total, counts.nonzero) == (110, 50)
    assert counts.sparsity == pytest.approx(60 / 110)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_packed_quantized_weights_are_counted():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantLinear

    layer = DynamicQuantLinear(10, 5)
    assert not list(layer.parameters())
    assert count_params(nn.Sequential(layer)).total == 10 * 5 + 5


def test_netscore_of_mobilenet_reference():
    assert netscore(70.6, 4_200_000, 569_000_000) == pytest.approx(70.2, abs=0.05)


def test_netscore_formula_and_information_density():
    # a = 100 %, p = 1 M, m = 1 G → 20·log10(10^4) = 80
    assert netscore(100.0, 1_000_000, 1_000_000_000) == pytest.approx(80.0)
    assert information_density(90.0, 2_000_000) == pytest.approx(45.0)
    with pytest.raises(ValueError, match="positive"):
        netscore(0.0, 1, 1)


def test_energy_estimate_uses_the_45nm_table():
    e = estimate_energy(macs=1_000_000, weight_bytes=4_000, activation_elements=500)
    assert e.compute_uj == pytest.approx(1e6 * (3.7 + 0.9) / 1e6)
    assert e.weights_uj == pytest.approx(1000 * 640 / 1e6)
    assert e.activations_uj == pytest.approx(2 * 500 * 5 / 1e6)
    int8 = estimate_energy(
        macs=1_000_000, weight_bytes=1_000, activation_elements=500, precision="int8"
    )
    assert int8.total_uj < e.total_uj / 3


# --- latency and memory ------------------------------------------------------------------------


def test_percentile_interpolates():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 5.0


def test_latency_percentiles_ordered_and_threads_recorded():
    before = torch.get_num_threads()
    stats = measure_latency(nn.Linear(64, 64), torch.randn(1, 64), threads=1, calls=50, warmup=5)
    assert stats.calls == 50 and stats.threads == 1 and stats.batch_size == 1
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert torch.get_num_threads() == before


def test_end_to_end_latency_includes_pre_and_post_processing():
    import time

    model = nn.Identity()
    bare = measure_latency(model, torch.zeros(1, 4), calls=20, warmup=2)
    slow = measure_latency(
        model, torch.zeros(1, 4), calls=20, warmup=2, preprocess=lambda x: time.sleep(0.002) or x
    )
    assert slow.p50_ms >= 2.0 > bare.p50_ms


def test_memory_probe_sees_a_200mb_allocation():
    probe = peak_memory(lambda: torch.ones(50_000_000))  # 200 MB of float32
    assert probe.increase_bytes == pytest.approx(200e6, rel=0.10)


def test_memory_probe_reports_child_errors():
    from slimkit.errors import SlimkitError

    with pytest.raises(SlimkitError, match="ZeroDivisionError"):
        peak_memory(lambda: 1 / 0)


# --- per-layer profile and the Metrics record ---------------------------------------------------


def small_cnn() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    )
    model.input_shape = (1, 8, 8)
    return model


def test_profile_layers_macs_sum_and_trace(tmp_path):
    model = small_cnn()
    x = torch.randn(1, 1, 8, 8)
    rows = profile_layers(model, x, calls=3, warmup=1, trace_path=tmp_path / "trace.json")
    by_name = {r.name: r for r in rows}
    assert by_name["0"].macs == 4 * 9 * 64 and by_name["4"].macs == 256 * 10
    assert sum(r.macs for r in rows) == count_macs(model, x).dense
    assert all(r.time_ms > 0 for r in rows)
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "slimkit::0" in names and "slimkit::4" in names


def test_measure_returns_consistent_json_and_leaves_model_alone():
    model = small_cnn()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = measure(model, latency_calls=20, throughput_batch=8, memory=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert m.params == count_params(model).total
    assert m.size_dense_bytes == 4 * m.params
    assert m.size_file_bytes > m.size_dense_bytes  # BN buffers + safetensors header
    assert m.macs == 4 * 9 * 64 + 256 * 10
    assert m.macs_training > m.macs
    assert m.top1 is None and m.netscore is None
    record = json.loads(m.to_json())
    assert record["macs"] == m.macs and len(record["layers"]) == 5
    assert math.isfinite(record["energy_uj_estimate"])


def test_measure_end_to_end_latency_from_raw_input():
    import numpy as np

    raw = np.zeros((8, 8), dtype=np.uint8)  # e.g. a decoded camera frame

    def preprocess(frame):
        return torch.from_numpy(frame).float().div(255).view(1, 1, 8, 8)

    m = measure(
        small_cnn(),
        raw_input=raw,
        preprocess=preprocess,
        postprocess=lambda y: y.argmax(),
        latency_calls=20,
        throughput_batch=None,
        memory=False,
        layers=False,
    )
    assert m.latency_end_to_end_p50_ms > 0 and m.throughput_per_s is None
    assert m.latency_end_to_end_p50_ms <= m.latency_end_to_end_p99_ms
    plain = measure(small_cnn(), latency_calls=5, throughput_batch=None, memory=False, layers=False)
    assert plain.latency_end_to_end_p50_ms is None


def test_measure_memory_fields():
    m = measure(small_cnn(), latency_calls=5, throughput_batch=4, layers=False)
    assert m.memory_inference_bytes >= m.size_tensors_bytes
    assert m.memory_training_bytes >= m.size_tensors_bytes


def test_wrong_input_shape_is_named():
    from slimkit.errors import ShapeError

    with pytest.raises(ShapeError, match=r"expects input of shape \(N, 1, 8, 8\)"):
        measure(small_cnn(), example=torch.randn(1, 3, 32, 32), memory=False)


def test_compare_latency_interleaves_and_ranks():
    from slimkit.measure import compare_latency

    small, big = nn.Linear(32, 32), nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)])
    stats = compare_latency(
        {"small": nn.Sequential(nn.Linear(256, 32), small), "big": big},
        torch.randn(1, 256),
        rounds=4,
        calls_per_round=5,
        warmup=2,
    )
    assert stats["small"].calls == stats["big"].calls == 20
    assert stats["small"].p50_ms < stats["big"].p50_ms
    assert stats["big"].threads == 1


def test_measure_refuses_a_model_off_the_cpu():
    with pytest.raises(ConfigError, match=r"model is on meta: call model.cpu\(\) first"):
        measure(create("lenet5").to("meta"))
