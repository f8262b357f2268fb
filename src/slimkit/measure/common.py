"""Small helpers shared by the measurements: mode and thread guards, example inputs."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import nn

from slimkit.errors import ConfigError, ShapeError


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode and give every submodule its own training flag back afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Fix torch's intra-op thread count for a measurement, then restore it."""
    if n < 1:
        raise ConfigError(f"thread count must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def first_tensor(out: object) -> torch.Tensor:
    """The tensor a loss would be taken of: the output, or the first tensor in a tuple/dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        return first_tensor(next(iter(out.values())))
    raise TypeError(f"cannot find a tensor in the model's output of type {type(out).__name__}")


def example_input(model: nn.Module, batch_size: int = 1) -> torch.Tensor:
    """A random batch shaped for `model`, from its `input_shape` (C, H, W) attribute."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ShapeError(
            f"{type(model).__name__} has no `input_shape` attribute: pass an example input "
            "batch (e.g. example=torch.randn(1, 3, 32, 32))"
        )
    return torch.randn(batch_size, *shape)


def declare_input(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Set the (C, H, W) a model declares it takes, e.g. after a resolution multiplier; models
    that declare none are left alone. Returns `model`."""
    if getattr(model, "input_shape", None) is not None:
        model.input_shape = tuple(shape)
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model holding neither)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """Raise a one-line ShapeError when a batch does not fit the model's declared input shape."""
    shape = getattr(model, "input_shape", None)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ShapeError(
            f"{type(model).__name__} expects input of shape (N, {', '.join(map(str, shape))}), "
            f"got {tuple(x.shape)}: use data of that shape or a model made for this data"
        )
