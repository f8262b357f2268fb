"""Training and evaluation for image classification.

`fit` is deliberately plain: one loop, one optimizer, a per-step learning-rate schedule, and two
hooks that the compression techniques plug into — `extra_loss` (distillation, sparsity
regularizers) and `after_step` (re-applying pruning masks). Checkpoints hold only tensors and
plain values, so resuming never unpickles code.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn
from tqdm.auto import tqdm

from slimkit.data import ArrayDataset, batches, random_crop_flip, random_shift
from slimkit.errors import ConfigError, TrainingError
from slimkit.files import atomic_write
from slimkit.measure.accuracy import evaluate
from slimkit.measure.common import check_input, model_device

ExtraLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULES = ("cosine", "step", "constant")
_AUGMENTS = ("none", "crop_flip", "shift")  # shift: ±2 px, no mirroring (digits)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # one of _OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # one of _SCHEDULES, applied per step
    warmup_epochs: float = 0.0  # linear warm-up before the schedule
    step_epochs: int = 30  # "step": multiply lr by `gamma` every this many epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    label_loss_weight: float = 1.0  # weight of the cross-entropy on hard labels
    augment: str = "none"  # one of _AUGMENTS
    seed: int = 0
    clip_grad_norm: float | None = None  # rescale gradients to at most this global L2 norm
    # Stochastic weight averaging (Izmailov et al. 2018): the model fit leaves behind holds the
    # mean of the weights at the end of each of the last this many epochs, with BatchNorm
    # statistics re-estimated on the training data. Pair it with a constant schedule.
    average_epochs: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in _OPTIMIZERS, f"optimizer must be one of {_OPTIMIZERS}"),
            (self.schedule in _SCHEDULES, f"schedule must be one of {_SCHEDULES}"),
            (self.augment in _AUGMENTS, f"augment must be one of {_AUGMENTS}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.warmup_epochs < self.epochs, "warmup_epochs must be in [0, epochs)"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.step_epochs >= 1, f"step_epochs must be >= 1, got {self.step_epochs}"),
            (
                0 <= self.average_epochs <= self.epochs,
                f"average_epochs must be in [0, epochs], got {self.average_epochs}",
            ),
            (
                self.clip_grad_norm is None or self.clip_grad_norm > 0,
                f"clip_grad_norm must be > 0 (or None), got {self.clip_grad_norm}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"TrainConfig: {message}")


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_top1: float  # %, on the training batches as they went by
    val_top1: float | None
    val_top5: float | None
    time_s: float  # training time of the epoch, evaluation excluded


@dataclass
class History:
    epochs: list[EpochStats] = field(default_factory=list)

    @property
    def train_time_s(self) -> float:
        return sum(e.time_s for e in self.epochs)

    @property
    def time_per_epoch_s(self) -> float:
        return self.train_time_s / len(self.epochs) if self.epochs else 0.0


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm scales: standard practice, and it keeps BN-scale
    # importance (Network Slimming) meaningful.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based)."""
    epoch = step / steps_per_epoch
    if epoch < cfg.warmup_epochs:
        return (epoch + 1 / steps_per_epoch) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        progress = (epoch - cfg.warmup_epochs) / (cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.schedule == "step":
        return cfg.gamma ** int(epoch // cfg.step_epochs)
    return 1.0


def fit(
    model: nn.Module,
    train: ArrayDataset,
    config: TrainConfig | None = None,
    *,
    val: ArrayDataset | None = None,
    extra_loss: ExtraLoss | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> History:
    """Train `model` in place on `train`, on the device it is on (e.g. after `model.cuda()`);
    evaluate on `val` after every epoch.

    extra_loss(model, x, y, logits) is added to the weighted cross-entropy. after_step(model)
    runs after every optimizer step. With `checkpoint`, state is saved after each epoch and a
    run that finds a checkpoint from the same config resumes after its last finished epoch.
    progress=None shows a bar only on a terminal. With `average_epochs`, the last epoch's
    validation figures are those of the averaged weights, which the model holds at the end.
    """
    cfg = config or TrainConfig()
    if len(train) == 0:
        raise ConfigError("cannot train on an empty data set")
    check_input(model, train.normalized(torch.arange(1)))
    torch.manual_seed(cfg.seed)
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch)
    )
    augment = {"none": None, "crop_flip": random_crop_flip(), "shift": random_shift()}[cfg.augment]
    device = model_device(model)
    history = History()
    average = WeightAverage(model) if cfg.average_epochs else None
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        start_epoch, history = _resume(Path(checkpoint), cfg, model, optimizer, scheduler, average)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        # Running sums stay on the device: reading them each step would stall a GPU twice a step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        bar = tqdm(
            batches(
                train, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch, augment=augment
            ),
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=None if progress is None else not progress,
        )
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = cfg.label_loss_weight * F.cross_entropy(
                logits, y, label_smoothing=cfg.label_smoothing
            )
            if extra_loss is not None:
                loss = loss + extra_loss(model, x, y, logits)
            if not torch.isfinite(loss):  # stop before the step: the weights stay the last finite
                step, lr = seen // cfg.batch_size + 1, scheduler.get_last_lr()[0]
                raise TrainingError(
                    f"training diverged: the loss is {loss.item()} at epoch {epoch + 1}, step "
                    f"{step} (lr {lr:.3g}); lower lr or set clip_grad_norm"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step(model)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        epoch_loss, train_top1 = loss_sum.item() / seen, 100.0 * correct.item() / seen
        if average is not None and epoch >= cfg.epochs - cfg.average_epochs:
            average.add(model)
            if epoch == cfg.epochs - 1:
                average.apply(model)
                # Averaged weights invalidate the BatchNorm statistics gathered on the way.
                data = batches(train, cfg.batch_size, augment=augment, seed=cfg.seed)
                update_bn(data, model, device)
        elapsed = time.perf_counter() - t0  # after the reads above, which wait for the device
        result = evaluate(model, val) if val is not None else None
        history.epochs.append(
            EpochStats(
                epoch=epoch + 1,
                loss=epoch_loss,
                train_top1=train_top1,
                val_top1=result.top1 if result else None,
                val_top5=result.top5 if result else None,
                time_s=elapsed,
            )
        )
        if checkpoint is not None:
            _save_checkpoint(Path(checkpoint), cfg, model, optimizer, scheduler, history, average)
    model.eval()
    return history


class WeightAverage:
    """Running mean of a model's parameters, one snapshot per `add`."""

    def __init__(self, model: nn.Module) -> None:
        self.count = 0
        self.mean = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in
                     model.named_parameters()}  # fmt: skip

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        self.count += 1
        for name, p in model.named_parameters():
            self.mean[name] += (p.float() - self.mean[name]) / self.count

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            p.copy_(self.mean[name])

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.mean = {n: t.to(self.mean[n].device) for n, t in state["mean"].items()}


def _save_checkpoint(path, cfg, model, optimizer, scheduler, history, average) -> None:
    state = {
        "config": asdict(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": [asdict(e) for e in history.epochs],
        "average": average.state_dict() if average is not None else None,
    }
    atomic_write(path, lambda f: torch.save(state, f))


def _resume(path, cfg, model, optimizer, scheduler, average) -> tuple[int, History]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file: say which and how to proceed
        raise ConfigError(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}): delete it to start over"
        ) from None
    # Options added since the checkpoint was written held their defaults then.
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    if {**defaults, **state.get("config", {})} != asdict(cfg):
        raise ConfigError(
            f"checkpoint '{path}' was written with another training config: delete it or pass "
            "the same config to resume"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if average is not None:  # the config matched, so the checkpoint holds the average too
        average.load_state_dict(state["average"])
    history = History([EpochStats(**e) for e in state["history"]])
    return len(history.epochs), history
