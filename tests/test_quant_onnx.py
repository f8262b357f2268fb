"""Int8 ONNX Runtime quantization: static QDQ with calibration, and dynamic."""

import warnings
from collections import Counter

import onnx
import pytest
import torch
from torch import nn

from slimkit.data import ArrayDataset
from slimkit.default import default_model
from slimkit.errors import ConfigError, DataError, ShapeError
from slimkit.export import OnnxModel, check_parity, export_onnx, onnx_bytes
from slimkit.measure import evaluate
from slimkit.nn import create
from slimkit.quant.cpu import default_reduce_range
from slimkit.quant.int8_onnx import (
    float_nodes,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)

INT8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def op_counts(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(path).graph.node)


@pytest.fixture(scope="module")
def trained():
    return default_model()


@pytest.fixture(scope="module")
def static_lenet(trained, tmp_path_factory):
    """The trained LeNet-5 as fp32 ONNX and as int8 static QDQ (minmax), made once."""
    folder = tmp_path_factory.mktemp("static")
    fp32 = export_onnx(trained.model, folder / "fp32.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LeNet-5 quantizes completely: no float-node warning
        int8 = quantize_onnx_static(trained.model, trained.data.train, folder / "int8.onnx")
    return fp32, int8


def test_static_int8_agrees_with_fp32_on_the_test_split(trained, static_lenet):
    fp32, int8 = static_lenet
    parity = check_parity(trained.model, int8, trained.data.test)
    assert parity["samples"] == len(trained.data.test) == 2000
    assert parity["top1_agreement"] >= 99.0
    assert parity["max_abs_diff"] > 0  # it really is a different (quantized) model
    drop = (
        evaluate(OnnxModel(fp32), trained.data.test).top1 - evaluate(int8, trained.data.test).top1
    )
    assert drop <= 1.0


def test_static_graph_holds_int8_weights_and_qdq_nodes(trained, static_lenet):
    _, int8 = static_lenet
    ops = op_counts(int8.path)
    assert ops["QuantizeLinear"] >= 5 and ops["DequantizeLinear"] >= 5
    inits = {t.name: t for t in onnx.load(int8.path).graph.initializer}
    weights = [m.weight for m in trained.model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for w in weights:  # every weight matrix is stored as int8, at its torch shape
        match = [t for t in inits.values() if tuple(t.dims) == tuple(w.shape)]
        assert match and all(t.data_type == onnx.TensorProto.INT8 for t in match)
    # Activations are uint8: the zero points of QuantizeLinear nodes.
    zero_points = [
        inits[n.input[2]] for n in onnx.load(int8.path).graph.node if n.op_type == "QuantizeLinear"
    ]
    assert zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)
    assert float_nodes(onnx.load(int8.path)) == []
    assert int8.input_shape == (1, 28, 28) and int8.num_classes == 10


def test_static_file_is_3_5x_smaller_for_a_conv_heavy_model(trained, tmp_path):
    torch.manual_seed(0)
    model = create("lenet5_caffe").train()  # 2 convs + 2 FCs, 431k parameters
    fp32 = export_onnx(model, tmp_path / "fp32.onnx")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    int8 = quantize_onnx_static(model, trained.data.train, tmp_path / "int8.onnx", samples=128)
    # The caller's model is untouched: still training, same weights.
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    model.eval()
    assert onnx_bytes(fp32) / onnx_bytes(int8.path) >= 3.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "int8.onnx"]
    parity = check_parity(model, int8, trained.data.test.subset(torch.arange(500)))
    assert parity["top1_agreement"] >= 90  # untrained: small logit margins, yet mostly agreeing


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods(trained, tmp_path, method):
    int8 = quantize_onnx_static(
        trained.model, trained.data.train, tmp_path / "int8.onnx", method=method, samples=128
    )
    assert check_parity(trained.model, int8, trained.data.test)["top1_agreement"] >= 99.0


def test_ops_without_int8_kernels_are_named_in_a_warning(trained, tmp_path):
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    ).eval()
    with pytest.warns(UserWarning, match=r"stayed float.*ReduceMean") as record:
        int8 = quantize_onnx_static(model, trained.data.train, tmp_path / "q.onnx", samples=64)
    assert "\n" not in str(record[0].message)
    assert int8.input_shape == (1, 28, 28)  # learned from the calibration images
    assert op_counts(int8.path)["QuantizeLinear"] >= 2  # the conv and the linear still quantized


def test_dynamic_int8_of_a_linear_model(trained, tmp_path):
    torch.manual_seed(0)
    model = create("lenet300_100").eval()
    fp32 = export_onnx(model, tmp_path / "fp32.onnx")
    int8 = quantize_onnx_dynamic(model, tmp_path / "dyn.onnx")
    ops = op_counts(int8.path)
    assert ops["MatMulInteger"] == 3 and ops["DynamicQuantizeLinear"] == 3
    assert onnx_bytes(fp32) / onnx_bytes(int8.path) >= 3.5
    parity = check_parity(model, int8, trained.data.test)
    assert parity["top1_agreement"] >= 98.0
    assert int8(torch.randn(7, 1, 28, 28)).shape == (7, 10)  # dynamic batch kept


def test_dynamic_leaves_convolutions_float_by_default(trained, tmp_path):
    int8 = quantize_onnx_dynamic(trained.model, tmp_path / "dyn.onnx")
    ops = op_counts(int8.path)
    assert ops["Conv"] == 2 and ops["ConvInteger"] == 0 and ops["MatMulInteger"] == 3
    assert check_parity(trained.model, int8, trained.data.test)["top1_agreement"] >= 99.0


def test_empty_calibration_data_is_a_data_error(trained, tmp_path):
    empty = trained.data.train.subset(torch.arange(0))
    with pytest.raises(DataError) as exc:
        quantize_onnx_static(trained.model, empty, tmp_path / "q.onnx")
    assert "empty" in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_wrong_shaped_calibration_data_is_a_shape_error(trained, tmp_path):
    cifar_like = ArrayDataset(
        images=torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
        labels=torch.zeros(4, dtype=torch.int64),
        classes=("a",),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    with pytest.raises(ShapeError) as exc:
        quantize_onnx_static(trained.model, cifar_like, tmp_path / "q.onnx")
    assert "(3, 32, 32)" in one_line(exc) and "(1, 28, 28)" in one_line(exc)
    with pytest.raises(ShapeError):  # an explicit example decides the expected shape too
        quantize_onnx_static(
            nn.Flatten(), cifar_like, tmp_path / "q.onnx", example=torch.randn(2, 1, 28, 28)
        )


def test_bad_options_are_config_errors(trained, tmp_path):
    data = trained.data.train
    for kwargs in ({"method": "kl"}, {"samples": 0}, {"reduce_range": "yes"}):
        with pytest.raises(ConfigError) as exc:
            quantize_onnx_static(trained.model, data, tmp_path / "q.onnx", **kwargs)
        one_line(exc)
    with pytest.raises(ConfigError) as exc:
        quantize_onnx_dynamic(trained.model, tmp_path / "q.onnx", op_types="MatMul")
    one_line(exc)


class DataDependent(nn.Module):
    input_shape = (1, 28, 28)

    def forward(self, x):
        return x.flatten(1) if x.mean() > 0 else -x.flatten(1)


def test_unexportable_model_is_a_config_error(trained, tmp_path):
    with pytest.raises(ConfigError) as exc:
        quantize_onnx_static(DataDependent(), trained.data.train, tmp_path / "q.onnx")
    assert "data-dependent" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        quantize_onnx_dynamic(DataDependent(), tmp_path / "q.onnx")
    assert "data-dependent" in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_reduce_range_follows_the_cpu(tmp_path, monkeypatch):
    import slimkit.quant.cpu as q

    monkeypatch.setattr(q.platform, "machine", lambda: "x86_64")
    old = tmp_path / "avx2"
    old.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    vnni = tmp_path / "vnni"
    vnni.write_text("flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n")
    assert default_reduce_range(old) is True
    assert default_reduce_range(vnni) is False
    assert default_reduce_range(tmp_path / "missing") is True  # cannot tell: the safe choice
    monkeypatch.setattr(q.platform, "machine", lambda: "aarch64")
    assert default_reduce_range(old) is False
