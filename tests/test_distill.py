"""Knowledge distillation: Hinton's loss, ensembles, FitNets hints, teacher untouched."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import load_embedded
from slimkit.distill import Distillation, HintLoss, distill, kd_loss, soft_targets
from slimkit.errors import ConfigError
from slimkit.nn import create
from slimkit.train import TrainConfig


@pytest.fixture(scope="module")
def data():
    d = load_embedded()
    return d.train.subset(torch.arange(512)), d.test.subset(torch.arange(256))


def test_kd_loss_is_t_squared_kl():
    torch.manual_seed(0)
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    temperature = 3.0
    p = F.softmax(t / temperature, 1)
    expected = (p * (p.log() - F.log_softmax(s / temperature, 1))).sum(1).mean() * 9
    assert torch.allclose(kd_loss(s, p, temperature), expected, atol=1e-6)
    assert kd_loss(t, p, temperature).abs() < 1e-6  # matching the teacher costs nothing


def test_ensemble_averages_softened_distributions():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(6, 4)
    expected = (F.softmax(a(x) / 2, 1) + F.softmax(b(x) / 2, 1)) / 2
    assert torch.allclose(soft_targets([a, b], x, 2.0), expected.detach())


def test_mirror_averages_each_teacher_over_the_flipped_batch():
    torch.manual_seed(0)
    a, b = nn.Conv2d(2, 3, (1, 3)), nn.Conv2d(2, 3, (1, 3))  # width-asymmetric kernels
    x = torch.randn(4, 2, 5, 7)
    views = [m(v) / 2 for m in (a, b) for v in (x, x.flip(-1))]
    expected = torch.stack([F.softmax(v, 1) for v in views]).mean(0).detach()
    got = soft_targets([a, b], x, 2.0, mirror=True)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, soft_targets([a, b], x, 2.0), atol=1e-3)  # the mirror counts
    with pytest.raises(ConfigError, match=r"mirror flips images .* is \(6, 4\)"):
        soft_targets([nn.Linear(4, 3)], torch.randn(6, 4), 2.0, mirror=True)


def test_distillation_pulls_student_to_teacher(data):
    train, test = data
    torch.manual_seed(0)
    teacher = create("lenet5").eval()
    with torch.no_grad():  # a teacher with confident, arbitrary opinions
        teacher.fc3.weight.mul_(20)
    before = copy.deepcopy(teacher.state_dict())
    student = create("lenet300_100")
    x = test.normalized(torch.arange(len(test)))

    def agreement():
        with torch.no_grad():
            return (student.eval()(x).argmax(1) == teacher(x).argmax(1)).float().mean().item()

    start = agreement()
    distill(student, teacher, train, TrainConfig(epochs=3, lr=0.05), alpha=1.0, progress=False)
    assert agreement() > max(start, 0.5)
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())


def test_mismatched_classes_and_bad_settings():
    teacher, student = create("lenet5"), create("lenet5", num_classes=7)
    hook = Distillation(teacher)
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(
        ConfigError, match=r"teacher outputs \(2, 10\) but student outputs \(2, 7\)"
    ):
        hook(student, x, None, student(x))
    with pytest.raises(ConfigError, match="alpha"):
        Distillation(teacher, alpha=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        Distillation(teacher, temperature=0)
    with pytest.raises(ConfigError, match="at least one teacher"):
        Distillation([])


def test_fitnets_hint_trains_an_adapter_then_removes_it(data):
    train, _ = data
    teacher, student = create("lenet5_caffe").eval(), create("lenet5")
    example = train.normalized(torch.arange(4))
    hint = HintLoss(student, teacher, "conv2", "conv2", example)
    assert isinstance(student.hint_adapter, nn.Conv2d)
    assert student.hint_adapter.in_channels == 16 and student.hint_adapter.out_channels == 50
    student(example)
    first = hint(student, example, None, None).item()
    hint.remove()
    assert not hasattr(student, "hint_adapter")

    distill(student, teacher, train, TrainConfig(epochs=1, lr=0.01), hint=("conv2", "conv2"),
            progress=False)  # fmt: skip
    assert not hasattr(student, "hint_adapter") and first > 0
    with pytest.raises(ConfigError, match="has no layer 'conv9'"):
        HintLoss(student, teacher, "conv9", "conv2", example)


def test_teacher_on_another_device_is_one_line(data):
    train, _ = data
    teacher, student = create("lenet5").to("meta"), create("lenet5")
    x = train.normalized(torch.arange(2))
    with pytest.raises(ConfigError, match="teacher 0 is on meta but the student trains on cpu"):
        Distillation(teacher)(student, x, None, student(x))
    with pytest.raises(ConfigError, match="move the teachers to the student's device"):
        HintLoss(student, teacher, "conv2", "conv2", x)
    assert not student._forward_hooks and not hasattr(student, "hint_adapter")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_distillation_with_hints_runs_on_cuda(data):
    train, test = data
    teacher, student = create("lenet5_caffe").cuda().eval(), create("lenet5").cuda()
    distill(student, teacher, train, TrainConfig(epochs=1, lr=0.01), hint=("conv2", "conv2"),
            val=test, progress=False)  # fmt: skip
    assert all(p.is_cuda for p in student.parameters()) and not hasattr(student, "hint_adapter")
