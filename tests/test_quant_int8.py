"""Static int8 (torchao PT2E): PTQ and QAT accuracy vs fp32, real int8 graph, exact save/load."""

import copy

import pytest
import torch
from torch import nn

from slimkit.compiled import CompiledModel
from slimkit.data import ArrayDataset
from slimkit.default import default_model
from slimkit.errors import ConfigError, DataError, ShapeError, WeightsError
from slimkit.measure import file_bytes
from slimkit.nn import create
from slimkit.prune import ChannelPruning, prune_channels
from slimkit.quant.int8 import (
    Int8Config,
    Int8Model,
    convert_qat,
    load_int8,
    prepare_qat,
    quantize_int8,
    save_int8,
)
from slimkit.train import TrainConfig, fit
from slimkit.weights import save_weights


@pytest.fixture(scope="module")
def trained():
    return default_model()


@pytest.fixture(scope="module")
def ptq(trained):
    return quantize_int8(trained.model, trained.data.train, Int8Config(samples=256), compiled=False)


def images(x: torch.Tensor) -> ArrayDataset:
    c = x.shape[1]
    return ArrayDataset(x, torch.zeros(len(x), dtype=torch.long), ("a",), (0.5,) * c, (0.25,) * c)


def top1_agreement(a, b, x) -> float:
    with torch.no_grad():
        return (a(x).argmax(1) == b(x).argmax(1)).float().mean().item()


def test_ptq_agrees_with_fp32_on_embedded_digits(trained, ptq):
    x = trained.data.test.normalized(torch.arange(len(trained.data.test)))
    assert top1_agreement(trained.model, ptq, x) >= 0.99


def test_graph_runs_int8_weights_and_drops_fp32_copies(trained, ptq):
    gm = ptq.graph_module
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets)
    assert any("dequantize_per_channel" in t for t in targets)
    int8 = [t for t in gm.state_dict().values() if t.dtype == torch.int8]
    n_weights = sum(
        m.weight.numel() for m in trained.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    assert sum(t.numel() for t in int8) == n_weights
    floats = sum(t.numel() for t in gm.state_dict().values() if t.is_floating_point())
    assert floats < 0.05 * n_weights  # only scales and biases stay float


def test_compiled_int8_matches_reference_graph(trained, ptq):
    compiled = CompiledModel(ptq.graph_module)
    x = trained.data.test.normalized(torch.arange(64))
    with torch.no_grad():
        ref, out = ptq(x), compiled(x)
    assert (ref.argmax(1) == out.argmax(1)).float().mean() >= 0.98
    assert (ref - out).abs().max() < 0.1 * ref.abs().max()


def test_save_load_is_exact_and_four_times_smaller(trained, ptq, tmp_path):
    path = save_int8(ptq, tmp_path / "lenet5.int8", arch={"zoo": "lenet5"})
    fp32 = save_weights(trained.model, tmp_path / "lenet5.safetensors")
    assert file_bytes(fp32) / file_bytes(path) > 3.5
    loaded = load_int8(path, compiled=False)
    x = trained.data.test.normalized(torch.arange(200))
    with torch.no_grad():
        assert torch.equal(loaded(x), ptq(x))


def test_quantize_leaves_the_model_untouched(trained):
    model = trained.model
    before = copy.deepcopy(model.state_dict())
    quantize_int8(model, trained.data.train, Int8Config(samples=32, observer="minmax"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.Conv2d) for m in model.modules())


def test_pruned_resnet_with_bn_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create("resnet20", width=8).eval()
    x = torch.randn(4, 3, 32, 32)
    pruned = prune_channels(model, ChannelPruning(0.5), x)
    calib = images(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8))
    q = quantize_int8(pruned, calib, Int8Config(samples=32), compiled=False)
    path = save_int8(q, tmp_path / "r.int8", arch={"zoo": "resnet20", "kwargs": {"width": 8}})
    loaded = load_int8(path, compiled=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))
        assert torch.allclose(q(x), pruned(x), atol=0.2 * pruned(x).abs().max().item())


def test_qat_trains_and_converts_exactly(trained, tmp_path):
    data = trained.data
    qat = prepare_qat(trained.model, data.train.normalized(torch.arange(2)))
    weight = next(p for n, p in qat.graph_module.named_parameters() if n.endswith("weight"))
    start = weight.detach().clone()
    fit(qat, data.train.subset(torch.arange(256)), TrainConfig(epochs=1, lr=0.01, batch_size=64))
    assert not torch.equal(weight.detach(), start)
    int8 = convert_qat(qat, compiled=False)
    x = data.test.normalized(torch.arange(500))
    assert top1_agreement(trained.model, int8, x) >= 0.97
    loaded = load_int8(
        save_int8(int8, tmp_path / "qat.int8", arch={"zoo": "lenet5"}), compiled=False
    )
    with torch.no_grad():
        assert torch.equal(loaded(x), int8(x))


# --- bad input --------------------------------------------------------------------------------


def test_bad_calibration_data(trained):
    empty = trained.data.train.subset(torch.arange(0))
    with pytest.raises(DataError, match="empty"):
        quantize_int8(trained.model, empty)
    cifar = images(torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="expects input of shape"):
        quantize_int8(trained.model, cifar)
    with pytest.raises(DataError, match="ArrayDataset"):
        quantize_int8(trained.model, torch.zeros(4, 1, 28, 28))


def test_nan_weights_and_bad_config(trained):
    model = copy.deepcopy(trained.model)
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        quantize_int8(model, trained.data.train, Int8Config(samples=8))
    with pytest.raises(ConfigError, match="observer"):
        Int8Config(observer="kl")


def test_unexportable_model_names_the_problem(trained):
    class Branchy(nn.Module):
        input_shape = (1, 28, 28)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return x.flatten(1)[:, :10]
            return -x.flatten(1)[:, :10]

    with pytest.raises(ConfigError, match="cannot export Branchy"):
        quantize_int8(Branchy(), trained.data.train, Int8Config(samples=8))


def test_int8_model_refuses_training_and_wrong_shapes(ptq):
    with pytest.raises(ConfigError, match="cannot train"):
        ptq.train()
    with pytest.raises(ShapeError):
        ptq(torch.zeros(1, 3, 28, 28))


def test_bad_files(ptq, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_int8(tmp_path / "missing.int8")
    junk = tmp_path / "junk.int8"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_int8(junk)
    plain = save_weights(create("lenet5"), tmp_path / "plain.safetensors")
    with pytest.raises(WeightsError, match="has no int8 model description"):
        load_int8(plain)
    other = save_int8(ptq, tmp_path / "other.int8", arch={"zoo": "lenet300_100"})
    with pytest.raises(WeightsError, match=r"another architecture|does not have"):
        load_int8(other)
    assert isinstance(ptq, Int8Model)


def test_layers_left_float_are_named_in_a_warning(trained):
    calib = trained.data.train.subset(torch.arange(32))
    with pytest.warns(UserWarning, match=r"stay float .*blocks\.0\.attn\.out_proj"):
        quantize_int8(create("transformer_mnist"), calib, Int8Config(samples=32), compiled=False)
