"""Accuracy of a classifier on a data set: top-1, top-5 and mean cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import ArrayDataset, batches
from slimkit.errors import ConfigError
from slimkit.measure.common import check_input, eval_mode, model_device


@dataclass(frozen=True)
class EvalResult:
    top1: float  # %
    top5: float  # %
    loss: float
    samples: int


def evaluate(model: nn.Module, data: ArrayDataset, *, batch_size: int = 500) -> EvalResult:
    """Top-1/top-5 accuracy (%) and mean cross-entropy of `model` on `data`, in eval mode, on
    the device the model is on."""
    if len(data) == 0:
        raise ConfigError("cannot evaluate on an empty data set")
    check_input(model, data.normalized(torch.arange(1)))
    correct1 = correct5 = 0
    loss_sum = 0.0
    device = model_device(model)
    with eval_mode(model), torch.inference_mode():
        for x, y in batches(data, batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(dim=1).sum())
    n = len(data)
    return EvalResult(100.0 * correct1 / n, 100.0 * correct5 / n, loss_sum / n, n)
