"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

The student learns from the teachers' softened distributions at temperature T mixed with the
hard labels: loss = (1 − α)·CE(student, y) + α·T²·KL(p_teacher^T ‖ p_student^T). The T² keeps
the soft term's gradients on the same scale as the hard term's when T changes. Several teachers
form an ensemble by averaging their softened distributions; with mirror=True each teacher also sees
the batch flipped left-right and both views are averaged, the test-time augmentation that makes an
image classifier's soft targets more accurate for the price of one more teacher forward (a
CIFAR-10 ResNet-20: 87.33% alone, 88.33% with its mirror). Teachers run in eval mode without
gradients, so distillation is also the recovery step after pruning, quantization or
factorization, with the original model as the teacher. FitNets' hints (Romero et al. 2015) add a
feature-regression term from an intermediate layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError
from slimkit.measure.common import model_device
from slimkit.train import History, TrainConfig, fit


def check_same_device(teachers: Sequence[nn.Module], x: torch.Tensor) -> None:
    """One line instead of torch's device-mismatch error deep inside a teacher's forward."""
    for i, teacher in enumerate(teachers):
        if (device := model_device(teacher)) != x.device:
            raise ConfigError(
                f"teacher {i} is on {device} but the student trains on {x.device}: "
                "move the teachers to the student's device"
            )


def soft_targets(
    teachers: Sequence[nn.Module], x: torch.Tensor, temperature: float, mirror: bool = False
) -> torch.Tensor:
    """Average of the teachers' softmax(logits / T), computed without gradients; with `mirror`,
    over x and x flipped along its last (width) axis as well, in one batched forward."""
    if mirror and x.dim() != 4:
        raise ConfigError(
            f"mirror flips images (N, C, H, W) left-right, but the input is {tuple(x.shape)}: "
            "turn mirror off for this data"
        )
    views = torch.cat([x, x.flip(-1)]) if mirror else x
    with torch.no_grad():
        probs = torch.stack([F.softmax(t(views) / temperature, dim=1) for t in teachers])
    return probs.view(-1, len(x), *probs.shape[2:]).mean(0)  # (teachers · views, B, ...)


def kd_loss(
    student_logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² · KL(targets ‖ softmax(student_logits / T)), averaged over the batch."""
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p, targets, reduction="batchmean") * temperature**2


class Distillation:
    """The soft-target term as a `fit(extra_loss=...)` hook: α·T²·KL to the teachers' average."""

    def __init__(
        self,
        teachers: nn.Module | Sequence[nn.Module],
        temperature: float = 4.0,
        alpha: float = 0.9,
        mirror: bool = False,
    ) -> None:
        self.teachers = [teachers] if isinstance(teachers, nn.Module) else list(teachers)
        if not self.teachers:
            raise ConfigError("distillation needs at least one teacher model")
        if not temperature > 0:
            raise ConfigError(f"distillation temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.temperature = temperature
        self.alpha = alpha
        self.mirror = mirror
        for teacher in self.teachers:
            teacher.eval()

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        check_same_device(self.teachers, x)
        targets = soft_targets(self.teachers, x, self.temperature, self.mirror)
        if targets.shape != logits.shape:
            raise ConfigError(
                f"teacher outputs {tuple(targets.shape)} but student outputs "
                f"{tuple(logits.shape)}: teacher and student must predict the same classes"
            )
        return self.alpha * kd_loss(logits, targets, self.temperature)


class HintLoss:
    """FitNets (Romero et al. 2015): the student's hint layer, through a learned adapter, regresses
    the teacher's guided layer: β·MSE(adapter(s), t). The adapter (1×1 conv for feature maps,
    linear for vectors; feature maps pooled to the teacher's size) is attached to the student
    as `hint_adapter` so the student's optimizer trains it; `remove()` detaches it afterwards.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        student_layer: str,
        teacher_layer: str,
        example: torch.Tensor,
        weight: float = 1.0,
    ) -> None:
        if not weight > 0:
            raise ConfigError(f"hint weight must be > 0, got {weight}")
        example = example.to(model_device(student))
        check_same_device([teacher], example)
        self.student, self.teacher, self.weight = student, teacher.eval(), weight
        self._features: dict[str, torch.Tensor] = {}
        self._handles = [
            _capture(student, student_layer, "student", self._features),
            _capture(teacher, teacher_layer, "teacher", self._features),
        ]
        with torch.no_grad():
            was_training = student.training
            student.eval()
            student(example[:2])
            teacher(example[:2])
            student.train(was_training)
        s, t = self._features["student"], self._features["teacher"]
        if s.dim() != t.dim() or s.dim() not in (2, 3, 4):
            raise ConfigError(
                f"hint layers disagree: student {student_layer!r} gives {tuple(s.shape)}, teacher "
                f"{teacher_layer!r} gives {tuple(t.shape)}; pick layers of the same kind"
            )
        if s.dim() == 4:
            adapter = nn.Conv2d(s.shape[1], t.shape[1], 1)
        else:
            adapter = nn.Linear(s.shape[-1], t.shape[-1])
        self.target_size = tuple(t.shape[2:]) if s.dim() == 4 else None
        student.add_module("hint_adapter", adapter.to(s.device))

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        check_same_device([self.teacher], x)
        with torch.no_grad():
            self.teacher(x)
        s = self.student.hint_adapter(self._features["student"])
        if self.target_size is not None and tuple(s.shape[2:]) != self.target_size:
            s = F.adaptive_avg_pool2d(s, self.target_size)
        return self.weight * F.mse_loss(s, self._features["teacher"])

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        if hasattr(self.student, "hint_adapter"):
            del self.student.hint_adapter


def _capture(model: nn.Module, name: str, slot: str, store: dict[str, torch.Tensor]):
    modules = dict(model.named_modules())
    if name not in modules:
        raise ConfigError(
            f"{type(model).__name__} has no layer {name!r}; layers: "
            f"{', '.join(n for n in list(modules)[1:12])}, ..."
        )

    def hook(_m, _inp, out):
        store[slot] = out[0] if isinstance(out, tuple) else out

    return modules[name].register_forward_hook(hook)


def distill(
    student: nn.Module,
    teachers: nn.Module | Sequence[nn.Module],
    train: ArrayDataset,
    config: TrainConfig | None = None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    mirror: bool = False,
    hint: tuple[str, str] | None = None,
    hint_weight: float = 1.0,
    val: ArrayDataset | None = None,
    **fit_kwargs,
) -> History:
    """Train `student` in place on `train` against the teachers' soft targets and the labels.

    mirror=True averages each teacher over the batch and its left-right mirror (image inputs).
    hint=(student_layer, teacher_layer) adds FitNets' hint loss from the first teacher; its
    adapter is trained along and removed at the end. fit's `extra_loss` is added as well.
    """
    terms = [Distillation(teachers, temperature, alpha, mirror)]
    hints = None
    if hint is not None:
        first = teachers if isinstance(teachers, nn.Module) else teachers[0]
        example = train.normalized(torch.arange(min(2, len(train))))
        hints = HintLoss(student, first, hint[0], hint[1], example, hint_weight)
        terms.append(hints)
    if "extra_loss" in fit_kwargs:
        terms.append(fit_kwargs.pop("extra_loss"))
    cfg = replace(config or TrainConfig(), label_loss_weight=1.0 - alpha)

    def loss(model, x, y, logits):
        return sum(term(model, x, y, logits) for term in terms)

    try:
        return fit(student, train, cfg, val=val, extra_loss=loss, **fit_kwargs)
    finally:
        if hints is not None:
            hints.remove()
