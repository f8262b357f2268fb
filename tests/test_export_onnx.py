"""ONNX export and the ONNX Runtime runner, checked against the torch models they come from."""

import copy
import warnings

import onnx
import pytest
import torch
from torch import nn

import slimkit.export.onnx as onnx_export
from slimkit.data import ArrayDataset, load_embedded
from slimkit.default import default_model
from slimkit.errors import ConfigError, DataError, ShapeError, WeightsError
from slimkit.export import OnnxModel, check_parity, export_onnx, onnx_bytes
from slimkit.measure import compare_latency, evaluate, measure_latency
from slimkit.nn import create, list_models
from slimkit.prune import ChannelPruning, prune_channels

# Small variants where the factory allows it: same layer types, a fraction of the weights.
SMALL = {
    "mobilenet_v1": {"input_size": 32, "alpha": 0.25},
    "vgg11": {"width_mult": 0.25},
    "vgg16": {"width_mult": 0.25},
    "shufflenet_v2": {"width_mult": 0.5},
    "xception": {"middle_blocks": 1},
    "mobilenet_v2": {"width_mult": 0.35},
}
# Deeper copies of an architecture tested at a smaller depth (same ops, more blocks): exported
# in the slow suite only, to keep the default run fast.
DEEPER = {"resnet32", "resnet44", "resnet56", "resnet110", "vgg16"}


def zoo_params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in DEEPER else n for n in list_models()]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def tiny() -> nn.Module:
    """A conv-BN-linear net on 1×8×8 inputs that exports in a fraction of a second."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)
    )
    model.input_shape = (1, 8, 8)
    return model


@pytest.fixture(scope="module")
def mnist():
    return load_embedded()


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """The trained default LeNet-5 and its export, shared by the tests below."""
    trained = default_model()
    path = export_onnx(trained.model, tmp_path_factory.mktemp("lenet") / "lenet5.onnx")
    return trained, path


@pytest.mark.parametrize("name", zoo_params())
def test_zoo_model_exports_and_matches_torch(name, tmp_path, mnist):
    torch.manual_seed(0)
    model = create(name, **SMALL.get(name, {})).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx")

    # One self-contained file: no .data side-file, no temp file left behind.
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.onnx"]
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert onnx_bytes(path) == path.stat().st_size

    runner = OnnxModel(path)
    assert runner.input_shape == tuple(model.input_shape)
    assert runner.num_classes == model.num_classes
    if tuple(model.input_shape) == mnist.test.sample_shape:
        data = mnist.test.subset(torch.arange(500))
    else:
        data = torch.randn(32, *model.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scale = float(
            model(data if isinstance(data, torch.Tensor) else data.normalized()).abs().max()
        )
    parity = check_parity(model, runner, data)
    assert parity["max_abs_diff"] <= 1e-4 * max(1.0, scale)
    assert parity["top1_agreement"] == 100.0


def test_trained_lenet_evaluates_the_same_through_onnx(lenet):
    trained, path = lenet
    runner = OnnxModel(path)
    torch_result = evaluate(trained.model, trained.data.test)
    onnx_result = evaluate(runner, trained.data.test)
    assert onnx_result.top1 == torch_result.top1 > 90
    assert onnx_result.loss == pytest.approx(torch_result.loss, abs=1e-5)


def test_dynamic_batch_runs_any_batch_from_one_file(lenet):
    trained, path = lenet
    runner = OnnxModel(path)
    for batch in (1, 7):
        x = trained.data.test.normalized(torch.arange(batch))
        with torch.no_grad():
            expected = trained.model(x)
        out = runner(x)
        assert out.shape == (batch, 10)
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_fixed_batch_export_rejects_other_batches(tmp_path):
    model = tiny().eval()
    path = export_onnx(model, tmp_path / "fixed.onnx", torch.randn(3, 1, 8, 8), dynamic_batch=False)
    runner = OnnxModel(path)
    assert runner(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(ShapeError) as exc:
        runner(torch.randn(7, 1, 8, 8))
    assert "(3, 1, 8, 8)" in one_line(exc)


def test_export_leaves_the_model_untouched(tmp_path):
    model = tiny().train()
    model[0].eval()  # a mixed mode must survive too
    # In train mode BatchNorm would update its running stats: the export must not.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    export_onnx(model, tmp_path / "r.onnx")
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_channel_pruned_model_exports_its_smaller_shapes(tmp_path, mnist):
    torch.manual_seed(0)
    model = create("lenet5").eval()
    example = torch.randn(2, 1, 28, 28)
    pruned = prune_channels(model, ChannelPruning(ratio=0.5), example).eval()
    path = export_onnx(pruned, tmp_path / "pruned.onnx")

    shapes = [tuple(t.dims) for t in onnx.load(path).graph.initializer]
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    originals = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    shrunk = 0
    for small, big in zip(convs, originals, strict=True):
        assert tuple(small.weight.shape) in shapes
        if small.weight.shape != big.weight.shape:
            shrunk += 1
            assert tuple(big.weight.shape) not in shapes
    assert shrunk >= 2
    assert onnx_bytes(path) < 0.6 * onnx_bytes(export_onnx(model, tmp_path / "full.onnx"))
    parity = check_parity(pruned, OnnxModel(path), mnist.test.subset(torch.arange(200)))
    assert parity["max_abs_diff"] < 1e-4 and parity["top1_agreement"] == 100.0


def test_runner_works_with_the_latency_harness(lenet):
    trained, path = lenet
    runner = OnnxModel(path, threads=1)
    x = torch.randn(4, 1, 28, 28)
    stats = measure_latency(runner, x, warmup=2, calls=5)
    assert stats.calls == 5 and stats.batch_size == 4 and stats.p50_ms > 0
    both = compare_latency({"torch": trained.model, "onnx": runner}, x, rounds=2, calls_per_round=2)
    assert set(both) == {"torch", "onnx"}


def test_runner_survives_deepcopy(lenet):
    _, path = lenet
    runner = OnnxModel(path)
    clone = copy.deepcopy(runner)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(clone(x), runner(x))


def test_runner_rejects_wrong_input_in_one_line(lenet):
    _, path = lenet
    runner = OnnxModel(path)
    with pytest.raises(ShapeError) as exc:
        runner(torch.randn(2, 3, 32, 32))
    assert "(N, 1, 28, 28)" in one_line(exc) and "(2, 3, 32, 32)" in one_line(exc)
    with pytest.raises(ShapeError) as exc:
        runner(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert "float" in one_line(exc)


def test_runner_rejects_missing_and_non_onnx_files(tmp_path):
    with pytest.raises(WeightsError) as exc:
        OnnxModel(tmp_path / "nope.onnx")
    assert "not found" in one_line(exc)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(WeightsError) as exc:
        OnnxModel(junk)
    one_line(exc)


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python branch on a tensor value: torch.export cannot trace it
            return x * 2
        return x - 1


class NoOnnxOp(nn.Module):
    def forward(self, x):
        return torch.linalg.svd(x)[0]  # no ONNX translation exists


def test_unexportable_models_give_one_line_config_errors(tmp_path):
    target = tmp_path / "bad.onnx"
    with pytest.raises(ConfigError) as exc:
        export_onnx(DataDependent(), target, torch.randn(2, 3, 4, 4))
    message = one_line(exc)
    assert "data-dependent" in message and "if x.sum() > 0" in message and "torch.where" in message
    with pytest.raises(ConfigError) as exc:
        export_onnx(NoOnnxOp(), target, torch.randn(2, 3, 4, 4))
    assert "svd" in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_one_line_errors(tmp_path):
    model = create("lenet5")
    with pytest.raises(ShapeError) as exc:
        export_onnx(model, tmp_path / "m.onnx", torch.randn(2, 3, 32, 32))
    one_line(exc)
    with pytest.raises(ConfigError) as exc:
        export_onnx(model, tmp_path / "m.onnx", opset=3)
    one_line(exc)
    with pytest.raises(ShapeError):
        export_onnx(nn.Linear(3, 2), tmp_path / "m.onnx")  # no input_shape, no example


def test_opset_is_honoured_or_refused(tmp_path):
    path = export_onnx(tiny().eval(), tmp_path / "m17.onnx", opset=17)
    opsets = {o.domain: o.version for o in onnx.load(path).opset_import}
    assert opsets[""] == 17
    OnnxModel(path)(torch.randn(2, 1, 8, 8))
    # The exporter cannot go that high: it would silently fall back to its default.
    with pytest.raises(ConfigError) as exc:
        export_onnx(tiny().eval(), tmp_path / "m99.onnx", opset=99)
    assert "opset 99" in one_line(exc)
    assert not (tmp_path / "m99.onnx").exists()


def test_export_is_quiet(tmp_path, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(tiny(), tmp_path / "m.onnx")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert caught == []


def test_model_past_the_embed_limit_gets_a_counted_side_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "_EMBED_LIMIT", 0)
    model = tiny().eval()
    path = export_onnx(model, tmp_path / "big.onnx")
    side = tmp_path / "big.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert side.stat().st_size >= 4 * 1440  # the Linear's weights at least
    assert onnx_bytes(path) == path.stat().st_size + side.stat().st_size
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(OnnxModel(path)(x), model(x), atol=1e-4, rtol=1e-4)


def test_check_parity_rejects_empty_data(lenet):
    trained, path = lenet
    empty = trained.data.test.subset(torch.arange(0))
    assert isinstance(empty, ArrayDataset)
    with pytest.raises(DataError) as exc:
        check_parity(trained.model, OnnxModel(path), empty)
    one_line(exc)
