"""fit / evaluate on the embedded MNIST digits."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from slimkit.data import load_embedded
from slimkit.errors import ConfigError, TrainingError
from slimkit.measure import evaluate
from slimkit.measure.common import model_device
from slimkit.nn import create
from slimkit.train import TrainConfig, fit, lr_factor

FAST = TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0)


@pytest.fixture(scope="module")
def digits():
    data = load_embedded()
    return data.train.subset(torch.arange(3000)), data.test


def test_fit_learns_real_digits(digits):
    train, test = digits
    model = create("lenet300_100")
    before = evaluate(model, test)
    history = fit(model, train, FAST, val=test)
    after = evaluate(model, test)
    assert before.top1 < 30.0
    assert after.top1 > 88.0 and after.top5 > 98.0
    assert history.epochs[-1].loss < history.epochs[0].loss
    assert history.epochs[-1].val_top1 == pytest.approx(after.top1)
    assert len(history.epochs) == 2 and history.time_per_epoch_s > 0


def test_fit_is_deterministic(digits):
    train, _ = digits
    small = train.subset(torch.arange(512))
    a, b = create("lenet5"), create("lenet5")
    b.load_state_dict(a.state_dict())
    fit(a, small, FAST)
    fit(b, small, FAST)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_interrupted_run_resumes_from_checkpoint(digits, tmp_path):
    train, _ = digits
    small = train.subset(torch.arange(512))
    start = create("lenet300_100")
    reference = create("lenet300_100")
    reference.load_state_dict(start.state_dict())
    fit(reference, small, FAST)

    interrupted = create("lenet300_100")
    interrupted.load_state_dict(start.state_dict())
    steps = {"n": 0}

    def crash_in_second_epoch(_model):
        steps["n"] += 1
        if steps["n"] == 10:  # epoch 1 has 8 steps
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, small, FAST, checkpoint=ckpt, after_step=crash_in_second_epoch)
    resumed = create("lenet300_100")
    history = fit(resumed, small, FAST, checkpoint=ckpt)
    assert [e.epoch for e in history.epochs] == [1, 2]
    for x, y in zip(resumed.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(x, y, atol=1e-6)


AVERAGED = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="constant", average_epochs=2)


def _epoch_end_snapshots(store: list, steps_per_epoch: int = 8):
    steps = {"n": 0}

    def after_step(model):
        steps["n"] += 1
        if steps["n"] % steps_per_epoch == 0:
            store.append([p.detach().clone() for p in model.parameters()])

    return after_step


def test_weight_averaging_leaves_the_mean_of_the_last_epochs(digits):
    train, test = digits
    small = train.subset(torch.arange(512))  # 8 steps an epoch
    start = create("lenet300_100")
    plain, averaged = create("lenet300_100"), create("lenet300_100")
    plain.load_state_dict(start.state_dict())
    averaged.load_state_dict(start.state_dict())
    snaps: list = []
    fit(plain, small, replace(AVERAGED, average_epochs=0), after_step=_epoch_end_snapshots(snaps))
    history = fit(averaged, small, AVERAGED, val=test)
    assert len(snaps) == 3
    for p, last in zip(plain.parameters(), snaps[2], strict=True):
        assert torch.equal(p, last)  # without averaging the model is the last iterate
    for p, a, b in zip(averaged.parameters(), snaps[1], snaps[2], strict=True):
        assert torch.allclose(p, (a + b) / 2, atol=1e-6)
    assert not torch.allclose(snaps[1][0], snaps[2][0])  # the two really differ
    assert history.epochs[-1].val_top1 == pytest.approx(evaluate(averaged, test).top1)


def test_weight_averaging_resumes_mid_average(digits, tmp_path):
    train, _ = digits
    small = train.subset(torch.arange(512))
    start = create("lenet300_100")
    reference, interrupted, resumed = (create("lenet300_100") for _ in range(3))
    for m in (reference, interrupted, resumed):
        m.load_state_dict(start.state_dict())
    fit(reference, small, AVERAGED)
    steps = {"n": 0}

    def crash_in_third_epoch(_model):
        steps["n"] += 1
        if steps["n"] == 20:  # the second epoch's weights are in the average already
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, small, AVERAGED, checkpoint=ckpt, after_step=crash_in_third_epoch)
    fit(resumed, small, AVERAGED, checkpoint=ckpt)
    for x, y in zip(resumed.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(x, y, atol=1e-6)


def test_update_bn_gives_the_plain_average_of_the_batches_statistics():
    # fit re-estimates BatchNorm after weight averaging with torch's update_bn: pin what it does
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=0.3)).eval()
    data = [(torch.randn(8, 1, 6, 6) * k + k, None) for k in (1, 2, 3)]
    with torch.no_grad():
        outs = [model[0](x) for x, _ in data]
    update_bn(data, model)
    bn = model[1]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs])
    variances = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-4)
    assert bn.momentum == 0.3 and not model.training  # restored


def test_average_epochs_beyond_the_run_is_refused():
    with pytest.raises(ConfigError, match=r"average_epochs must be in \[0, epochs\]"):
        TrainConfig(epochs=3, average_epochs=4)


def test_checkpoint_from_another_config_is_refused(digits, tmp_path):
    train, _ = digits
    small = train.subset(torch.arange(128))
    ckpt = tmp_path / "run.ckpt"
    fit(create("lenet300_100"), small, TrainConfig(epochs=1, batch_size=64), checkpoint=ckpt)
    with pytest.raises(ConfigError, match="another training config"):
        fit(create("lenet300_100"), small, TrainConfig(epochs=2, batch_size=64), checkpoint=ckpt)


def test_checkpoint_from_before_an_option_existed_resumes(digits, tmp_path):
    """A checkpoint written before clip_grad_norm existed lacks the key; it held the default."""
    train, _ = digits
    small = train.subset(torch.arange(128))
    ckpt = tmp_path / "run.ckpt"
    cfg = TrainConfig(epochs=1, batch_size=64)
    fit(create("lenet300_100"), small, cfg, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    del state["config"]["clip_grad_norm"]
    torch.save(state, ckpt)
    assert len(fit(create("lenet300_100"), small, cfg, checkpoint=ckpt).epochs) == 1
    with pytest.raises(ConfigError, match="another training config"):
        fit(create("lenet300_100"), small, TrainConfig(epochs=1, batch_size=64,
            clip_grad_norm=1.0), checkpoint=ckpt)  # fmt: skip


def test_divergence_stops_with_one_line_and_finite_weights(digits):
    train, _ = digits
    model = create("lenet300_100")
    wild = TrainConfig(epochs=1, batch_size=64, lr=1e4, momentum=0.0, weight_decay=0.0)
    with pytest.raises(TrainingError, match=r"training diverged: the loss is .* lower lr") as e:
        fit(model, train.subset(torch.arange(512)), wild)
    assert "\n" not in str(e.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_clip_grad_norm_bounds_every_step(digits):
    train, _ = digits
    norms = []

    def record(model):  # after the step the clipped gradients are still in .grad
        norms.append(torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.parameters()])).item())  # fmt: skip

    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.01, clip_grad_norm=0.05)
    fit(create("lenet300_100"), train.subset(torch.arange(512)), cfg, after_step=record)
    assert len(norms) == 8 and max(norms) <= 0.05 * 1.001


def test_extra_loss_hook_shapes_training(digits):
    train, _ = digits
    small = train.subset(torch.arange(256))
    calls = []

    def l1(model, x, y, logits):
        calls.append(logits.shape)
        return 1.0 * sum(p.abs().sum() for p in model.parameters())

    plain, shrunk = create("lenet300_100"), create("lenet300_100")
    shrunk.load_state_dict(plain.state_dict())
    fit(plain, small, FAST)
    fit(shrunk, small, FAST, extra_loss=l1)
    assert calls and calls[0] == (64, 10)
    norm = lambda m: sum(float(p.detach().abs().sum()) for p in m.parameters())  # noqa: E731
    assert norm(shrunk) < 0.7 * norm(plain)


def test_schedules():
    cfg = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=1)
    assert lr_factor(cfg, 0, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 100, 10) == pytest.approx(0.0, abs=1e-9)
    step = TrainConfig(epochs=10, schedule="step", step_epochs=3, gamma=0.5)
    assert lr_factor(step, 65, 10) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lion"}, "optimizer must be one of"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"augment": "mixup"}, "augment"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm must be > 0"),
    ],
)
def test_bad_config_is_one_clear_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as e:
        TrainConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_wrong_input_shape_names_expected_shape(digits):
    train, _ = digits
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, 32, 32\)"):
        fit(create("resnet20"), train.subset(torch.arange(8)), FAST)


def test_evaluate_restores_training_mode(digits):
    _, test = digits
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).train()
    evaluate(model, test.subset(torch.arange(10)))
    assert model.training


@pytest.mark.slow
def test_lenet300_on_full_mnist_reaches_paper_range(shared_data, tmp_path, monkeypatch):
    from slimkit.data import load

    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path))
    data = load(shared_data / "mnist")
    model = create("lenet300_100")
    cfg = TrainConfig(epochs=3, batch_size=128, lr=0.05, weight_decay=1e-4)
    history = fit(model, data.train, cfg, val=data.test)
    assert history.epochs[-1].val_top1 > 97.5  # 30 epochs reach 98.5 (BENCHMARKS.md)


def test_model_device_is_where_the_weights_are():
    assert model_device(create("lenet5")) == torch.device("cpu")
    assert model_device(create("lenet5").to("meta")) == torch.device("meta")
    assert model_device(nn.ReLU()) == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_fit_and_evaluate_on_cuda_match_cpu(digits):
    train, test = digits
    small = train.subset(torch.arange(512))
    cpu, gpu = create("lenet300_100"), create("lenet300_100")
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    sgd = TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=0.0)  # no Adam: it
    fit(cpu, small, sgd)  # amplifies rounding differences in near-zero gradients
    history = fit(gpu, small, sgd, val=test)
    assert all(p.is_cuda for p in gpu.parameters())
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(a, b.cpu(), atol=2e-3, rtol=1e-3)
    assert abs(evaluate(gpu, test).top1 - evaluate(cpu, test).top1) < 0.5
    assert history.epochs[-1].val_top1 == pytest.approx(evaluate(gpu, test).top1)
