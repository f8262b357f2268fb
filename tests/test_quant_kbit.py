"""K-bit / binary / ternary fake quantization, its packed file format, and fp16/bf16 copies."""

import copy
import json
import math
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from slimkit.data import load_embedded
from slimkit.errors import ConfigError, WeightsError
from slimkit.measure import evaluate
from slimkit.nn import create
from slimkit.prune import ChannelPruning, prune_channels
from slimkit.quant.kbit import (
    KBitConfig,
    dequantize,
    freeze_kbit,
    kbit_layers,
    quantize_kbit,
    quantize_kbit_,
)
from slimkit.quant.kbit_file import kbit_bytes, load_kbit, save_kbit
from slimkit.quant.precision import to_half
from slimkit.train import TrainConfig, fit
from slimkit.weights import save_weights

SMALL_MOBILENET = {"input_size": 32, "alpha": 0.25, "num_classes": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    # Fixed thread count: bit-exact comparisons, and no contention with other jobs.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def layers() -> nn.Sequential:
    """Odd sizes on purpose: 37-long rows split into groups of 16 leave a ragged last group."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(37, 19), nn.Conv2d(3, 8, 3), nn.Conv1d(4, 6, 5), nn.Linear(9, 5))


def tiny(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(37, 11), nn.ReLU(), nn.Linear(11, 5))


def latent(module: nn.Module) -> torch.Tensor:
    return module.parametrizations.weight.original


def per_weight(scales: torch.Tensor, shape: torch.Size, group: int) -> torch.Tensor:
    """Each weight's scale, from (out, groups) scales: float64 (out, row)."""
    row = math.prod(shape[1:])
    return scales.double().repeat_interleave(group, dim=1)[:, :row]


def rows(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(t.shape[0], -1)


# --- config and layer selection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 0}, "bits must be an int in 1..8, got 0"),
        ({"bits": 9}, "bits must be an int in 1..8, got 9"),
        ({"bits": 1}, "for 1-bit weights use scheme='binary'"),
        ({"bits": 4, "scheme": "binary"}, "binary weights take 1 bit"),
        ({"bits": 3, "scheme": "ternary"}, "ternary weights take 2 bit"),
        ({"scheme": "fp4"}, "scheme must be one of"),
        ({"granularity": "group"}, "granularity='group' needs group_size"),
        ({"group_size": 32}, "group_size applies only to granularity='group'"),
        ({"layer_bits": {"0": 12}}, r"layer_bits\['0'\] must be an int in 1..8"),
        ({"layer_bits": {"0": 4}, "exclude": ("0",)}, "both excluded and given layer_bits"),
        ({"act_bits": 9}, "act_bits must be None or an int in 1..8"),
        ({"exclude": "fc"}, "exclude must be a tuple of module names"),
    ],
)
def test_bad_configs_name_the_problem(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        KBitConfig(**kwargs)


def test_implied_bits_per_scheme():
    assert [KBitConfig(scheme=s).bits for s in ("uniform", "lsq", "binary", "ternary")] == [
        4,
        4,
        1,
        2,
    ]


def test_unknown_layer_names_are_errors_with_a_hint():
    with pytest.raises(ConfigError, match=r"exclude names 'fc4', not a quantizable .* 'fc3'"):
        quantize_kbit(create("lenet5"), KBitConfig(exclude=("fc4",)))
    with pytest.raises(ConfigError, match="layer_bits names 'act1'"):
        quantize_kbit(create("lenet5"), KBitConfig(layer_bits={"act1": 4}))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_errors(bad):
    model = layers()
    with torch.no_grad():
        model[2].weight[1, 0, 3] = bad
    with pytest.raises(WeightsError, match="layer '2' has NaN or Inf weights"):
        quantize_kbit(model, KBitConfig())
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_quantizing_twice_is_an_error():
    model = quantize_kbit(layers(), KBitConfig())
    with pytest.raises(ConfigError, match="already k-bit quantized"):
        quantize_kbit_(model, KBitConfig())
    with pytest.raises(ConfigError, match="no Conv/Linear layer to quantize outside `exclude`"):
        quantize_kbit(nn.Sequential(nn.ReLU()), KBitConfig())


def test_copy_leaves_the_model_alone():
    model = layers()
    before = copy.deepcopy(model.state_dict())
    quantized = quantize_kbit(model, KBitConfig(bits=2))
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(kbit_layers(quantized)) == {"0", "1", "2", "3"}


def test_keep_first_last_overrides_and_exclude():
    def plan(config: KBitConfig) -> list[tuple[str, int]]:
        return [(q.scheme, q.bits) for q in kbit_layers(quantize_kbit(layers(), config)).values()]

    assert plan(KBitConfig(bits=3)) == [
        ("uniform", 8),
        ("uniform", 3),
        ("uniform", 3),
        ("uniform", 8),
    ]
    config = KBitConfig(scheme="ternary", keep_first_last=False, layer_bits={"1": 1, "2": 5})
    assert plan(config) == [("ternary", 2), ("binary", 1), ("uniform", 5), ("ternary", 2)]
    assert plan(KBitConfig(scheme="binary"))[:2] == [("uniform", 8), ("binary", 1)]
    resnet = kbit_layers(quantize_kbit(create("resnet20"), KBitConfig(bits=3)))
    assert resnet["stem.conv"].bits == resnet["fc"].bits == 8
    assert {q.bits for n, q in resnet.items() if n not in ("stem.conv", "fc")} == {3}
    model = quantize_kbit(layers(), KBitConfig(scheme="lsq", exclude=("0",)))
    assert sorted(kbit_layers(model)) == ["1", "2", "3"]
    assert type(model[0]) is nn.Linear and torch.equal(model[0].weight, layers()[0].weight)
    assert {q.scheme for q in kbit_layers(model).values()} == {"lsq"}


# --- the quantizers -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [None, 16])
def test_uniform_error_is_at_most_half_a_step(bits, group):
    config = (
        KBitConfig(bits=bits, keep_first_last=False)
        if group is None
        else KBitConfig(bits=bits, keep_first_last=False, granularity="group", group_size=group)
    )
    model = quantize_kbit(layers(), config)
    qmax = 2 ** (bits - 1) - 1
    for module in model:
        quantizer = module.parametrizations.weight[0]
        w = rows(latent(module)).double()
        codes, scales = quantizer.encode(latent(module))
        assert scales.dtype == torch.float16 and scales.shape[0] == w.shape[0]
        s = per_weight(scales, module.weight.shape, quantizer.group_size)
        assert bool((w.abs() <= qmax * s).all())  # max-abs scales: every weight is in range
        error = (w - rows(module.weight).double()).abs()
        assert bool((error <= s / 2 * (1 + 1e-6)).all())
        levels = rows(codes).long() - 2 ** (bits - 1)
        assert int(levels.abs().max()) == qmax and int(levels.min()) >= -qmax


def test_group_granularity_has_one_scale_per_group_with_a_ragged_tail():
    model = quantize_kbit(
        layers(), KBitConfig(bits=4, keep_first_last=False, granularity="group", group_size=16)
    )
    quantizer = model[0].parametrizations.weight[0]
    _, scales = quantizer.encode(latent(model[0]))
    assert scales.shape == (19, 3)  # 37 = 16 + 16 + 5
    w = rows(latent(model[0]))
    expected = (w[:, 32:].abs().amax(1) / 7).half()
    assert torch.allclose(scales[:, 2].float(), expected.float(), rtol=2**-10)
    assert bool((scales[:, 2].float() >= w[:, 32:].abs().amax(1) / 7 * (1 - 2**-20)).all())


def test_lsq_clips_outside_the_learned_range_and_scales_the_step_gradient():
    torch.manual_seed(1)
    linear = nn.Linear(24, 6)
    config = KBitConfig(bits=3, scheme="lsq", keep_first_last=False)
    model = quantize_kbit(nn.Sequential(linear), config)
    module = model[0]
    quantizer = module.parametrizations.weight[0]
    w = latent(module).detach()
    init = 2 * w.abs().mean(1) / math.sqrt(3)  # Esser et al.: 2·mean|w|/√Qp
    assert torch.allclose(quantizer.step.detach(), init, rtol=1e-6)
    with torch.no_grad():
        quantizer.step.mul_(0.5)  # a small step: some weights now fall outside [-4s, 3s]
    _, scales = quantizer.encode(latent(module))
    s = per_weight(scales, w.shape, 24)
    wq = module.weight.detach().double()
    inside = (w >= -4 * s) & (w <= 3 * s)
    assert int((~inside).sum()) > 0 and bool(((w - wq).abs()[inside] <= s[inside] / 2).all())
    assert torch.equal(wq[~inside], torch.where(w > 0, 3 * s, -4 * s)[~inside])

    # Reference: LSQ with the usual detach idioms, in float64, fp16 steps as the module uses.
    x = torch.randn(5, 24)
    model(x).pow(2).sum().backward()
    step = quantizer.step.detach().double().requires_grad_()
    g = 1 / math.sqrt(24 * 3)
    scaled = (step - step * g).detach() + step * g
    s16 = (scaled.half().double() - scaled).detach() + scaled
    v = (w.double() / s16[:, None]).clamp(-4, 3)
    ref = ((v.round() - v).detach() + v) * s16[:, None]
    nn.functional.linear(x.double(), ref, linear.bias.double()).pow(2).sum().backward()
    assert torch.allclose(quantizer.step.grad.double(), step.grad, rtol=1e-4, atol=1e-8)


def test_binary_weights_are_plus_minus_mean_abs_per_filter():
    model = layers()
    with torch.no_grad():
        model[0].weight[:, :5] = 0.0  # sign(0) must give +α, not a third value
    model = quantize_kbit(model, KBitConfig(scheme="binary", keep_first_last=False))
    for module in model:
        w, wq = rows(latent(module)), rows(module.weight)
        alpha = w.abs().mean(1, keepdim=True)
        for row, qrow in zip(w, wq, strict=True):
            assert len(torch.unique(qrow)) == 2 or bool((row >= 0).all() | (row < 0).all())
        assert torch.allclose(wq.abs(), alpha.expand_as(wq), rtol=2**-11)  # α in fp16
        assert torch.equal(wq > 0, w >= 0)


def test_ternary_weights_use_the_07_mean_threshold():
    model = quantize_kbit(layers(), KBitConfig(scheme="ternary", keep_first_last=False))
    for module in model:
        w, wq = rows(latent(module)).double(), rows(module.weight).double()
        delta = 0.7 * w.abs().mean(1, keepdim=True)
        kept = w.abs() > delta
        assert torch.equal(wq == 0, ~kept)
        assert torch.equal(torch.sign(wq[kept]), torch.sign(w[kept]))
        alpha = (w.abs() * kept).sum(1) / kept.sum(1)
        for qrow, a in zip(wq, alpha, strict=True):
            magnitudes = set(qrow.abs().unique().tolist())
            assert magnitudes == {0.0, max(magnitudes)}
            assert math.isclose(max(magnitudes), float(a), rel_tol=2**-11)
        assert 0.2 < float((~kept).double().mean()) < 0.6  # the threshold zeroes a real share


def test_group_binary_and_ternary_use_one_alpha_per_group():
    config = KBitConfig(scheme="binary", keep_first_last=False, granularity="group", group_size=16)
    module = quantize_kbit(layers(), config)[0]
    w, wq = rows(latent(module)), rows(module.weight)
    for start in (0, 16, 32):
        chunk = slice(start, start + 16)
        alpha = w[:, chunk].abs().mean(1, keepdim=True)
        assert torch.allclose(wq[:, chunk].abs(), alpha.expand_as(wq[:, chunk]), rtol=2**-11)


# --- training through the straight-through estimator ----------------------------------------------


@pytest.mark.parametrize("scheme", ["uniform", "lsq", "binary", "ternary"])
def test_gradients_reach_the_latent_weights(scheme):
    model = quantize_kbit(create("lenet5"), KBitConfig(scheme=scheme, act_bits=4))
    model(torch.randn(3, 1, 28, 28)).logsumexp(1).sum().backward()
    for name in kbit_layers(model):
        grad = latent(model.get_submodule(name)).grad
        assert grad is not None and bool(grad.abs().sum() > 0), name
    if scheme == "lsq":
        assert all(float(q.step.grad.abs().sum()) > 0 for q in kbit_layers(model).values())
    clips = [m.act_quant.clip for m in model.modules() if hasattr(m, "act_quant")]
    assert len(clips) == 4 and all(c.grad is not None for c in clips)  # all but the first layer


def test_fit_trains_latent_weights_while_the_forward_stays_quantized():
    data = load_embedded()
    train, test = data.train.subset(torch.arange(512)), data.test.subset(torch.arange(500))
    torch.manual_seed(0)
    model = quantize_kbit(create("lenet300_100"), KBitConfig(bits=2))
    fc2 = model.fc2
    before = latent(fc2).detach().clone()
    config = TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=3e-3, weight_decay=0)
    fit(model, train, config, progress=False)
    after = latent(fc2).detach()
    assert not torch.equal(before, after)
    assert all(len(torch.unique(r)) <= 3 for r in rows(fc2.weight))  # 2 bits: −s, 0, +s
    codes, scales = fc2.parametrizations.weight[0].encode(after)
    assert torch.equal(fc2.weight, dequantize(codes, scales, "uniform", 2, 300))
    assert evaluate(model, test).top1 > 50  # ~78 % after 16 steps; 10 % is chance


def test_activation_quantization_limits_input_levels():
    model = quantize_kbit(create("lenet300_100"), KBitConfig(bits=4, act_bits=3)).eval()
    assert not hasattr(model.fc1, "act_quant")  # the first layer sees the data
    assert model.fc2.act_quant.bits == 3 and model.fc3.act_quant.bits == 8  # kept last layer
    seen = {}
    model.fc2.register_forward_hook(lambda m, args, out: seen.update(x=args[0].detach()))
    model(torch.randn(16, 1, 28, 28))
    x = seen["x"]
    assert len(torch.unique(x)) <= 8 and float(x.min()) >= 0
    assert bool(model.fc2.act_quant.calibrated)
    step = model.fc2.act_quant.clip.detach() / 7
    assert torch.allclose(x / step, (x / step).round(), atol=1e-4)


def test_freeze_makes_plain_layers_with_the_quantized_weights():
    model = quantize_kbit(create("lenet5"), KBitConfig(bits=3, scheme="lsq", act_bits=4)).eval()
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    copy_ = copy.deepcopy(model)
    frozen = freeze_kbit(copy_)
    assert frozen is copy_ and not kbit_layers(frozen)
    assert type(frozen.conv2) is nn.Conv2d and isinstance(frozen.conv2.weight, nn.Parameter)
    assert torch.equal(frozen(x), expected)
    assert torch.equal(model(x), expected)  # freezing a deepcopy must not break the original
    assert "conv2.weight" in frozen.state_dict() and all(
        "parametrizations" not in k for k in frozen.state_dict()
    )


# --- the packed file ----------------------------------------------------------------------------


def tensor_bytes_in_file(path) -> dict[str, int]:
    """Bytes of each tensor's data, from the safetensors header's data offsets."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()}


def test_a_3_bit_layer_takes_ceil_3n_over_8_bytes_plus_fp16_scales(tmp_path):
    model = quantize_kbit(tiny(), KBitConfig(bits=3, keep_first_last=False))
    path = save_kbit(model, tmp_path / "m.safetensors", arch={"kwargs": {}})
    sizes = tensor_bytes_in_file(path)
    assert sizes["0.weight::codes"] == math.ceil(3 * 37 * 11 / 8) == 153
    assert sizes["0.weight::scales"] == 11 * 2
    assert sizes["2.weight::codes"] == math.ceil(3 * 11 * 5 / 8) == 21
    assert sizes["0.bias"] == 11 * 4
    kinds = ("weight::codes", "weight::scales", "bias")
    assert set(sizes) == {f"{i}.{k}" for i in (0, 2) for k in kinds}  # no float weights stored
    assert kbit_bytes(model) == path.stat().st_size
    loaded = load_kbit(path, factory=tiny)
    assert torch.equal(loaded[0].weight, model[0].weight)
    assert torch.equal(loaded[2].weight, model[2].weight)


@pytest.mark.parametrize(
    ("name", "kwargs", "config"),
    [
        ("lenet5", {}, KBitConfig(bits=3)),
        ("lenet5", {}, KBitConfig(scheme="ternary", act_bits=4)),
        ("lenet300_100", {}, KBitConfig(bits=4, scheme="lsq", granularity="group", group_size=64)),
        ("resnet20", {}, KBitConfig(scheme="binary", layer_bits={"stages.1.0.conv1": 5})),
        ("mobilenet_v1", SMALL_MOBILENET, KBitConfig(bits=4, granularity="group", group_size=32)),
    ],
)
def test_save_load_round_trip_is_bit_exact(tmp_path, name, kwargs, config):
    torch.manual_seed(0)
    model = quantize_kbit(create(name, **kwargs), config)
    x = torch.randn(2, *model.input_shape)
    model.train()
    model(x)  # one training step's forward: BN statistics and activation clips move off init
    model.eval()
    path = save_kbit(model, tmp_path / "m.safetensors", arch={"zoo": name, "kwargs": kwargs})
    loaded = load_kbit(path).eval()
    assert torch.equal(loaded(x), model(x))
    assert not kbit_layers(loaded)
    dense = save_weights(create(name, **kwargs), tmp_path / "f.safetensors").stat().st_size
    assert path.stat().st_size < dense / 2


def test_channel_pruned_then_quantized_model_reloads(tmp_path):
    base = create("resnet20")
    pruned = prune_channels(base, ChannelPruning(ratio=0.5), torch.randn(1, 3, 32, 32))
    model = quantize_kbit(pruned, KBitConfig(bits=4, act_bits=4)).eval()
    path = save_kbit(model, tmp_path / "m.safetensors", arch={"zoo": "resnet20"})
    loaded = load_kbit(path).eval()
    x = torch.randn(2, 3, 32, 32)
    assert loaded.stages[0][0].conv1.out_channels < base.stages[0][0].conv1.out_channels
    assert torch.equal(loaded(x), model(x))


def test_reloaded_uniform_model_requantizes_to_itself(tmp_path):
    model = quantize_kbit(create("lenet5"), KBitConfig(bits=3)).eval()
    loaded = load_kbit(save_kbit(model, tmp_path / "m.safetensors", arch={"zoo": "lenet5"}))
    again = quantize_kbit(loaded, KBitConfig(bits=3))
    for name in kbit_layers(model):
        assert torch.equal(again.get_submodule(name).weight, model.get_submodule(name).weight)


def test_save_errors(tmp_path):
    with pytest.raises(ConfigError, match="no k-bit layers to save: quantize_kbit it first"):
        save_kbit(create("lenet5"), tmp_path / "m.safetensors", arch={"zoo": "lenet5"})
    model = quantize_kbit(create("lenet5"), KBitConfig())
    with pytest.raises(ConfigError, match="arch must be a dict"):
        save_kbit(model, tmp_path / "m.safetensors", arch="lenet5")
    with pytest.raises(ConfigError, match="JSON"):
        save_kbit(model, tmp_path / "m.safetensors", arch={"kwargs": {"x": object()}})
    with torch.no_grad():
        latent(model.fc1)[0, 0] = math.nan
    with pytest.raises(WeightsError, match="'fc1' has NaN or Inf"):
        save_kbit(model, tmp_path / "m.safetensors", arch={"zoo": "lenet5"})
    assert not (tmp_path / "m.safetensors").exists()


def test_load_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_kbit(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_kbit(junk)
    plain = save_weights(create("lenet5"), tmp_path / "plain.safetensors")
    with pytest.raises(WeightsError, match="has no k-bit model description"):
        load_kbit(plain)

    model = quantize_kbit(create("resnet20"), KBitConfig(bits=3))
    good = save_kbit(model, tmp_path / "m.safetensors", arch={"zoo": "resnet20"})
    tensors = load_file(str(good))
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()

    def variant(change_meta=None, change_tensors=None):
        m, t = json.loads(meta["slimkit.kbit"]), dict(tensors)
        if change_meta:
            change_meta(m)
        if change_tensors:
            change_tensors(t)
        path = tmp_path / "bad.safetensors"
        save_file(t, str(path), metadata={"slimkit.kbit": json.dumps(m)})
        return path

    other = variant(lambda m: m.update(arch={"zoo": "lenet5"}))
    with pytest.raises(WeightsError, match="for another architecture"):
        load_kbit(other)
    codes = "stages.0.0.conv1.weight::codes"
    short = variant(change_tensors=lambda t: t.update({codes: t[codes][:-1].clone()}))
    with pytest.raises(WeightsError, match=r"'stages.0.0.conv1' codes .* \(863\), not the 864 "):
        load_kbit(short)
    missing = variant(change_tensors=lambda t: t.pop("stages.0.0.conv1.weight::scales"))
    with pytest.raises(WeightsError, match="lacks its codes or scales"):
        load_kbit(missing)
    future = variant(lambda m: m.update(format="slimkit.kbit/9"))
    with pytest.raises(WeightsError, match=r"holds format 'slimkit\.kbit/9'"):
        load_kbit(future)
    wrong_bits = variant(lambda m: m["quantized"]["fc"].update(bits=9))
    with pytest.raises(WeightsError, match=r"layer 'fc': bits 9 is not in 1\.\.8"):
        load_kbit(wrong_bits)


def test_factory_models_need_a_factory(tmp_path):
    model = quantize_kbit(tiny(), KBitConfig(scheme="ternary"))
    path = save_kbit(model, tmp_path / "m.safetensors", arch={"kwargs": {}})
    with pytest.raises(ConfigError, match="pass factory="):
        load_kbit(path)
    x = torch.randn(3, 37)
    assert torch.equal(load_kbit(path, factory=tiny)(x), model(x))


# --- fp16 / bf16 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 0.01), (torch.bfloat16, 0.05)])
@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_half_copies_run_on_float32_input_and_halve_the_file(tmp_path, dtype, tolerance, name):
    torch.manual_seed(0)
    model = create(name).eval()
    x = torch.randn(4, *model.input_shape)
    half = to_half(model, dtype)
    with torch.no_grad():
        expected, out = model(x), half(x)
    assert out.dtype == torch.float32
    assert float((out - expected).abs().max()) <= tolerance * float(expected.abs().max())
    assert next(model.parameters()).dtype == torch.float32  # the original is untouched
    kinds = {type(m).__name__: m.weight.dtype for m in half.modules() if hasattr(m, "weight")}
    assert kinds.get("Conv2d") == dtype
    assert kinds.get("BatchNorm2d", torch.float32) == torch.float32
    full = save_weights(model, tmp_path / "full.safetensors").stat().st_size
    small = save_weights(half, tmp_path / "half.safetensors").stat().st_size
    assert 0.45 < small / full < 0.56
    assert to_half(half, dtype)(x).dtype == torch.float32  # converting again stacks no casts


def test_half_errors():
    with pytest.raises(ConfigError, match=r"dtype must be torch\.float16 or torch\.bfloat16"):
        to_half(create("lenet5"), torch.float64)
    with pytest.raises(ConfigError, match="freeze_kbit the model first"):
        to_half(quantize_kbit(create("lenet5"), KBitConfig()))
