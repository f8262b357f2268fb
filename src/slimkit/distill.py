"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

The student learns from the teachers' softened distributions at temperature T mixed with the
hard labels: loss = (1 − α)·CE(student, y) + α·T²·KL(p_teacher^T ‖ p_student^T). The T² keeps
the soft term's gradients on the same scale as the hard term's when T changes. Several teachers
form an ensemble by averaging their softened distributions. Teachers run in eval mode without
gradients, so distillation is also the recovery step after pruning, quantization or
factorization, with the original model as the teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError
from slimkit.train import History, TrainConfig, fit


def soft_targets(
    teachers: Sequence[nn.Module], x: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Average of the teachers' softmax(logits / T), computed without gradients."""
    with torch.no_grad():
        return torch.stack([F.softmax(t(x) / temperature, dim=1) for t in teachers]).mean(0)


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
        for teacher in self.teachers:
            teacher.eval()

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        targets = soft_targets(self.teachers, x, self.temperature)
        if targets.shape != logits.shape:
            raise ConfigError(
                f"teacher outputs {tuple(targets.shape)} but student outputs "
                f"{tuple(logits.shape)}: teacher and student must predict the same classes"
            )
        return self.alpha * kd_loss(logits, targets, self.temperature)


def distill(
    student: nn.Module,
    teachers: nn.Module | Sequence[nn.Module],
    train: ArrayDataset,
    config: TrainConfig | None = None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    val: ArrayDataset | None = None,
    **fit_kwargs,
) -> History:
    """Train `student` in place on `train` against the teachers' soft targets and the labels."""
    hook = Distillation(teachers, temperature, alpha)
    cfg = replace(config or TrainConfig(), label_loss_weight=1.0 - alpha)
    if "extra_loss" in fit_kwargs:
        extra = fit_kwargs.pop("extra_loss")

        def combined(model, x, y, logits):
            return hook(model, x, y, logits) + extra(model, x, y, logits)

        return fit(student, train, cfg, val=val, extra_loss=combined, **fit_kwargs)
    return fit(student, train, cfg, val=val, extra_loss=hook, **fit_kwargs)
