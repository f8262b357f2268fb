"""Weight sharing: per-layer k-means, centroid fine-tuning with summed gradients, masks kept."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimkit.data import ArrayDataset
from slimkit.errors import ConfigError, WeightsError
from slimkit.prune import MagnitudePruning, prune_magnitude
from slimkit.quant import KBitConfig, quantize_kbit
from slimkit.share import (
    WeightSharing,
    freeze_shared,
    kmeans_1d,
    share_weights,
    share_weights_,
    shared_tensors,
)
from slimkit.train import TrainConfig, fit


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    model.input_shape = (1, 8, 8)
    model.num_classes = 10
    return model


def distinct_nonzero(t: torch.Tensor) -> int:
    return int(torch.unique(t[t != 0]).numel())


# --- k-means -------------------------------------------------------------------------------------


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    values = torch.cat([torch.randn(500) * 0.01 - 1, torch.randn(300) * 0.01 + 2])
    for init in ("linear", "density", "random"):
        centroids, clusters = kmeans_1d(values, 2, init)
        assert torch.allclose(centroids, torch.tensor([-1.0, 2.0]), atol=0.01), init
        assert clusters[:500].eq(0).all() and clusters[500:].eq(1).all()


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_assigns_each_value_its_nearest_sorted_centroid(init):
    values = torch.randn(2000, generator=torch.Generator().manual_seed(1)) ** 3
    centroids, clusters = kmeans_1d(values, 16, init, seed=3)
    assert centroids.dtype == torch.float32 and len(centroids) == 16
    assert torch.equal(centroids, centroids.sort().values)
    distance = (values[:, None] - centroids[None].double()).abs()
    chosen = distance.gather(1, clusters[:, None]).squeeze(1)
    assert torch.all(chosen <= distance.min(1).values + 1e-12)


def test_linear_init_keeps_the_large_weights_that_density_init_loses():
    """Han et al. §3.2: density-based centroids crowd the peak, linear ones reach the tails, and
    the few large weights are the important ones."""
    values = torch.randn(20_000, generator=torch.Generator().manual_seed(2))
    large = values.abs() > values.abs().quantile(0.99)
    errors = {}
    for init in ("linear", "density"):
        centroids, clusters = kmeans_1d(values, 8, init)
        errors[init] = (centroids[clusters] - values)[large].abs().mean()
    assert errors["linear"] < errors["density"]


def test_kmeans_rounds_to_fp16_codebooks_and_handles_tiny_inputs():
    values = torch.randn(100, generator=torch.Generator().manual_seed(3))
    centroids, _ = kmeans_1d(values, 4, codebook="float16")
    assert torch.equal(centroids.half().float(), centroids)
    assert kmeans_1d(torch.zeros(0), 4)[1].numel() == 0
    centroids, clusters = kmeans_1d(torch.tensor([0.5, 0.5]), 8)
    assert len(centroids) == 8 and torch.equal(centroids[clusters], torch.tensor([0.5, 0.5]))
    with pytest.raises(WeightsError, match="NaN or Inf"):
        kmeans_1d(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(ConfigError, match="init must be one of"):
        kmeans_1d(values, 2, "kmeans++")


# --- sharing a model ------------------------------------------------------------------------------


def test_share_weights_keeps_the_original_and_the_pruned_zeros():
    model = net()
    prune_magnitude(model, MagnitudePruning(sparsity=0.8))  # masks attached, not permanent
    zeros = {k: v == 0 for k, v in model.state_dict().items() if k.endswith("weight")}
    before = copy.deepcopy(model.state_dict())
    shared = share_weights(model, WeightSharing(bits=3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(shared_tensors(shared)) == {"0.weight", "3.weight", "5.weight"}
    for key, zero in zeros.items():
        module = shared.get_submodule(key.rpartition(".")[0])
        assert torch.equal(module.weight == 0, zero)
        assert distinct_nonzero(module.weight) <= 8


def test_bits_by_type_by_layer_and_for_biases():
    config = WeightSharing(
        bits=5, type_bits={nn.Conv2d: 2}, layer_bits={"5": 1}, bias_bits=2, codebook="float16"
    )
    shared = share_weights(net(), config)
    tensors = shared_tensors(shared)
    assert {k: s.bits for k, s in tensors.items()} == {
        "0.weight": 2,
        "0.bias": 2,
        "3.weight": 5,
        "3.bias": 2,
        "5.weight": 1,
        "5.bias": 2,
    }
    assert distinct_nonzero(shared[0].weight) <= 4 and distinct_nonzero(shared[5].weight) <= 2
    assert distinct_nonzero(shared[3].bias) <= 4
    for s in tensors.values():
        assert torch.equal(s.codebook_values().half().float(), s.codebook_values())


def test_centroid_gradient_is_the_sum_over_its_cluster():
    model = net()
    shared = share_weights(model, WeightSharing(bits=2))
    layer = shared[3]
    plain = nn.Linear(288, 32)
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
        plain.bias.copy_(layer.bias)
    x = torch.randn(16, 288, generator=torch.Generator().manual_seed(4))
    (layer(x) ** 2).sum().backward()
    (plain(x) ** 2).sum().backward()
    param = layer.parametrizations.weight[0]
    idx = param.indices.long().flatten()
    expected = torch.zeros(5).index_add_(0, idx, plain.weight.grad.flatten())[:4]
    assert torch.allclose(param.centroids.grad, expected, rtol=1e-5, atol=1e-6)
    assert layer.parametrizations.weight.original.grad is None


def test_fine_tuning_with_fit_moves_centroids_and_keeps_masks():
    model = net()
    prune_magnitude(model, MagnitudePruning(sparsity=0.7))
    shared = share_weights(model, WeightSharing(bits=3))
    zero = shared[3].weight == 0
    centroids = shared_tensors(shared)["3.weight"].centroids.detach().clone()
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 255, (256, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (256,), generator=g)
    data = ArrayDataset(images, labels, tuple("0123456789"), (0.5,), (0.25,))
    fit(shared, data, TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-2))
    assert torch.equal(shared[3].weight == 0, zero)
    assert distinct_nonzero(shared[3].weight) <= 8
    assert not torch.equal(shared_tensors(shared)["3.weight"].centroids, centroids)


def test_freeze_shared_gives_plain_layers_and_leaves_copies_working():
    shared = share_weights(net(), WeightSharing(bits=3, bias_bits=3))
    twin = copy.deepcopy(shared)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = shared(x)
    freeze_shared(shared)
    assert not any(parametrize.is_parametrized(m) for m in shared.modules())
    assert [n for n, _ in shared[3].named_parameters()] == ["weight", "bias"]
    with torch.no_grad():
        assert torch.equal(shared(x), expected)
        assert torch.equal(twin(x), expected)  # the deepcopy still has its parametrization
    assert shared_tensors(twin)


def test_config_and_model_errors():
    with pytest.raises(ConfigError, match=r"bits must be an int in 1..8, got 9"):
        WeightSharing(bits=9)
    with pytest.raises(ConfigError, match="init must be one of"):
        WeightSharing(init="kmeans++")
    with pytest.raises(ConfigError, match="codebook must be one of"):
        WeightSharing(codebook="int8")
    with pytest.raises(ConfigError, match=r"type_bits\[Linear\] must be an int"):
        WeightSharing(type_bits={nn.Linear: 0})
    with pytest.raises(ConfigError, match="did you mean '3'"):
        share_weights(net(), WeightSharing(layer_bits={"3 ": 4}))
    shared = share_weights(net(), WeightSharing())
    with pytest.raises(ConfigError, match="already shared"):
        share_weights_(shared, WeightSharing())
    quantized = quantize_kbit(net(), KBitConfig(bits=4))
    with pytest.raises(ConfigError, match=r"already parametrized \(quantized\?\)"):
        share_weights(quantized, WeightSharing())
    with pytest.raises(ConfigError, match=r"torch\.float64"):
        share_weights(net().double(), WeightSharing())
    tied = net()
    tied.append(nn.Linear(32, 10))
    tied[6].weight = tied[5].weight
    with pytest.raises(ConfigError, match="shares its weight with '5'"):
        share_weights(tied, WeightSharing())
