"""LeNet models for MNIST.

- LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-Based Learning Applied to Document
  Recognition", Proc. IEEE 1998; here modernized with ReLU and max-pooling.
- LeNet-300-100 and the Caffe LeNet-5: the MNIST baselines of Han, Pool, Tran, Dally, "Learning
  both Weights and Connections for Efficient Neural Networks", NeurIPS 2015 (also used in Han,
  Mao, Dally, "Deep Compression", ICLR 2016).

All take one 1×28×28 image per sample.
"""

from __future__ import annotations

from torch import Tensor, nn

from slimkit.nn.zoo import check_positive_int, register

MNIST_SHAPE = (1, 28, 28)


class LeNet300100(nn.Module):
    """MLP 784-300-100-classes with ReLU (266,610 parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.input_shape = MNIST_SHAPE
        self.num_classes = num_classes
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.act1 = act_layer()
        self.fc2 = nn.Linear(300, 100)
        self.act2 = act_layer()
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(x)  # (B, 784)
        x = self.act1(self.fc1(x))  # (B, 300)
        x = self.act2(self.fc2(x))  # (B, 100)
        return self.fc3(x)  # (B, num_classes)


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pool (61,706 parameters for 10 classes).

    conv 6@5×5 pad 2 → pool → conv 16@5×5 → pool → fc 120 → fc 84 → fc classes. The padding keeps
    the 28×28 MNIST digit at the 32×32 geometry of the original paper.
    """

    def __init__(self, num_classes: int = 10, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.input_shape = MNIST_SHAPE
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.act1 = act_layer()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act2 = act_layer()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.act3 = act_layer()
        self.fc2 = nn.Linear(120, 84)
        self.act4 = act_layer()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.act1(self.conv1(x)))  # (B, 6, 14, 14)
        x = self.pool2(self.act2(self.conv2(x)))  # (B, 16, 5, 5)
        x = self.flatten(x)  # (B, 400)
        x = self.act3(self.fc1(x))  # (B, 120)
        x = self.act4(self.fc2(x))  # (B, 84)
        return self.fc3(x)  # (B, num_classes)


class LeNet5Caffe(nn.Module):
    """The Caffe LeNet-5 of Han et al. (431,080 parameters for 10 classes).

    conv 20@5×5 → maxpool 2 → conv 50@5×5 → maxpool 2 → fc 500 → ReLU → fc classes. As in the
    Caffe model, the convs have no activation of their own: the only ReLU is after fc 500.
    """

    def __init__(self, num_classes: int = 10, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.input_shape = MNIST_SHAPE
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.act = act_layer()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.conv1(x))  # (B, 20, 12, 12)
        x = self.pool2(self.conv2(x))  # (B, 50, 4, 4)
        x = self.flatten(x)  # (B, 800)
        x = self.act(self.fc1(x))  # (B, 500)
        return self.fc2(x)  # (B, num_classes)


@register(
    "lenet300_100",
    dataset="mnist",
    paper="Han et al. 2015",
    description="MLP 784-300-100-10 with ReLU (LeNet-300-100)",
)
def lenet300_100(num_classes: int = 10) -> LeNet300100:
    return LeNet300100(check_positive_int("num_classes", num_classes))


@register(
    "lenet5",
    dataset="mnist",
    paper="LeCun et al. 1998",
    description="LeNet-5 with ReLU and max-pool: conv6-pool-conv16-pool-fc120-fc84-fc10",
)
def lenet5(num_classes: int = 10) -> LeNet5:
    return LeNet5(check_positive_int("num_classes", num_classes))


@register(
    "lenet5_caffe",
    dataset="mnist",
    paper="Han et al. 2015",
    description="Caffe LeNet-5 of Deep Compression: conv20-pool-conv50-pool-fc500-fc10",
)
def lenet5_caffe(num_classes: int = 10) -> LeNet5Caffe:
    return LeNet5Caffe(check_positive_int("num_classes", num_classes))
