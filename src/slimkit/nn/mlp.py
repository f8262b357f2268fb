"""Multilayer perceptron with dropout, for MNIST.

The nets of Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015, §3:
a 784-1200-1200-10 ReLU teacher trained with dropout (Srivastava et al. 2014: 20% on the input,
50% on the hidden units) and a 784-800-800-10 student without regularization. `hidden` sets the
layer widths, `dropout` / `input_dropout` the rates (0 gives `nn.Identity`, so module names stay
the same with and without dropout).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from slimkit.errors import ConfigError
from slimkit.nn.layers import init_kaiming_
from slimkit.nn.lenet import MNIST_SHAPE
from slimkit.nn.zoo import check_positive_int, register


def _dropout(name: str, p: float) -> nn.Module:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {p!r}")
    return nn.Dropout(float(p)) if p > 0 else nn.Identity()


class MLP(nn.Module):
    """flatten → input dropout → [fc_i → ReLU → dropout] per hidden width → fc (classes)."""

    def __init__(
        self,
        num_classes: int = 10,
        hidden: Sequence[int] = (1200, 1200),
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_shape = MNIST_SHAPE
        self.num_classes = num_classes
        self.flatten = nn.Flatten()
        self.drop_in = _dropout("input_dropout", input_dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = MNIST_SHAPE[0] * MNIST_SHAPE[1] * MNIST_SHAPE[2]
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            layers[f"act{i}"] = nn.ReLU()
            layers[f"drop{i}"] = _dropout("dropout", dropout)
            width = h
        self.hidden = nn.Sequential(layers)
        self.fc = nn.Linear(width, num_classes)
        init_kaiming_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop_in(self.flatten(x))  # (B, 784)
        x = self.hidden(x)  # (B, hidden[-1])
        return self.fc(x)  # (B, num_classes)


@register(
    "mlp",
    dataset="mnist",
    paper="Hinton et al. 2015",
    description="ReLU MLP with configurable hidden widths and dropout (default 784-1200-1200-10)",
)
def mlp(
    num_classes: int = 10,
    hidden: Sequence[int] = (1200, 1200),
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> MLP:
    """MLP with hidden layer widths `hidden` (none: a linear classifier) and dropout rates."""
    num_classes = check_positive_int("num_classes", num_classes)
    if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence):
        raise ConfigError(f"hidden must be a list of layer widths, got {hidden!r}")
    hidden = tuple(check_positive_int("hidden width", h) for h in hidden)
    return MLP(num_classes, hidden, dropout, input_dropout)
