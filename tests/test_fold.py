"""BatchNorm folding: exact outputs, BN gone, input model untouched."""

import copy

import pytest
import torch
from torch import nn

from slimkit.fold import fold_bn, fold_bn_
from slimkit.nn import create, list_models

FAST = {
    "vgg11": {"width_mult": 0.25},
    "vgg16": {"width_mult": 0.25},
    "resnet110": {"width": 8},
    "shufflenet_v2": {"width_mult": 0.5},
    "xception": {"middle_blocks": 1},
    "mobilenet_v2": {"width_mult": 0.35},
}


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial statistics so a wrong fold shows; moderate scales keep deep nets finite."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def n_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_folded_zoo_model_matches(name):
    model = randomize_bn(create(name, **FAST.get(name, {})))
    before = copy.deepcopy(model.state_dict())
    folded = fold_bn(model)
    x = torch.randn(3, *model.input_shape)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert n_bn(folded) == 0
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_bn_fed_by_two_consumers_is_left_alone():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv output is needed unnormalized too

    model = randomize_bn(Branch())
    pairs = fold_bn_(copy.deepcopy(model))
    assert pairs == []
    folded = fold_bn(model)
    assert n_bn(folded) == 1


def test_linear_bn1d_and_conv_without_bias_fold():
    model = randomize_bn(
        nn.Sequential(
            nn.Conv2d(3, 5, 3, bias=False),
            nn.BatchNorm2d(5),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(5 * 6 * 6, 7),
            nn.BatchNorm1d(7),
        )
    )
    folded = copy.deepcopy(model)
    assert fold_bn_(folded) == [("0", "1"), ("4", "5")]
    assert folded[0].bias is not None and isinstance(folded[1], nn.Identity)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
