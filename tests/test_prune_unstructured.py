"""Unstructured magnitude pruning, its schedules, and sparse storage."""

import copy

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from slimkit.data import load_embedded
from slimkit.errors import ConfigError, WeightsError
from slimkit.measure import count_macs, evaluate
from slimkit.nn import create
from slimkit.prune.sparse import from_sparse, load_sparse, save_sparse, sparse_bytes, to_sparse
from slimkit.prune.unstructured import (
    MagnitudePruning,
    apply_masks,
    cubic_sparsity,
    current_masks,
    gradual_prune,
    iterative_prune,
    make_permanent,
    prune_magnitude,
    reapply_masks,
)
from slimkit.train import TrainConfig, fit
from slimkit.weights import save_weights

SGD = TrainConfig(epochs=1, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9)


@pytest.fixture(scope="module")
def digits():
    data = load_embedded()
    return data.train.subset(torch.arange(512)), data.test.subset(torch.arange(500))


def layers() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(50, 40), nn.Conv2d(3, 8, 3), nn.Conv1d(4, 6, 5))


def zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


# --- thresholds -------------------------------------------------------------------------------


def test_layer_scope_prunes_each_layer_to_the_target():
    model = layers()
    masks = prune_magnitude(model, MagnitudePruning(sparsity=0.37))
    assert list(masks) == ["0", "1", "2"]
    for name, module in model.named_children():
        n = module.weight.numel()
        assert abs(zeros(module.weight) - round(0.37 * n)) <= 1
        assert torch.equal(module.weight != 0, masks[name])
        assert zeros(module.bias) == 0  # biases stay dense


def test_global_scope_uses_one_threshold_across_layers():
    model = layers()
    with torch.no_grad():
        model[0].weight.mul_(0.1)  # a small-weight layer must end up sparser than the others
    prune_magnitude(model, MagnitudePruning(sparsity=0.6, scope="global"))
    weights = [m.weight.detach().flatten() for m in model]
    total = sum(w.numel() for w in weights)
    assert abs(sum(zeros(w) for w in weights) - round(0.6 * total)) <= 1
    flat = torch.cat(weights)
    kept_min = flat[flat != 0].abs().min()
    before = layers()
    with torch.no_grad():
        before[0].weight.mul_(0.1)
    original = torch.cat([m.weight.detach().flatten() for m in before])
    assert original[flat == 0].abs().max() <= kept_min  # one threshold: every pruned ≤ every kept
    sparsity = [zeros(m.weight) / m.weight.numel() for m in model]
    assert sparsity[0] > 0.6 and max(sparsity[1:]) < 0.2


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_std_rule_prunes_below_factor_times_std(scope):
    model, reference = layers(), layers()
    prune_magnitude(model, MagnitudePruning(std_factor=0.8, scope=scope))
    ws = [m.weight.detach() for m in reference]
    pooled = torch.cat([w.flatten() for w in ws]).std()
    for module, w in zip(model, ws, strict=True):
        threshold = 0.8 * (pooled if scope == "global" else w.std())
        assert zeros(module.weight) == int((w.abs() < threshold).sum()) > 0


def test_layer_overrides_and_exclude_are_honoured():
    model = layers()
    config = MagnitudePruning(sparsity=0.7, layer_sparsity={"0": 0.2}, exclude=("2",))
    masks = prune_magnitude(model, config)
    assert list(masks) == ["0", "1"]
    assert abs(zeros(model[0].weight) - round(0.2 * model[0].weight.numel())) <= 1
    assert abs(zeros(model[1].weight) - round(0.7 * model[1].weight.numel())) <= 1
    assert zeros(model[2].weight) == 0 and not hasattr(model[2], "weight_mask")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sparsity": 1.0}, "1.0"),
        ({"sparsity": -0.1}, "-0.1"),
        ({"sparsity": 0.5, "std_factor": 1.0}, "std_factor=1.0"),
        ({}, "sparsity=None"),
        ({"std_factor": -1.0}, "-1.0"),
        ({"sparsity": 0.5, "scope": "model"}, "'model'"),
        ({"sparsity": 0.5, "layer_sparsity": {"fc1": 1.5}}, "1.5"),
        ({"sparsity": 0.5, "exclude": "fc1"}, "'fc1'"),
    ],
)
def test_bad_configs_raise_one_line(kwargs, named):
    with pytest.raises(ConfigError) as err:
        MagnitudePruning(**kwargs)
    assert "\n" not in str(err.value) and named in str(err.value)


@pytest.mark.parametrize("field", ["exclude", "layer_sparsity"])
def test_unknown_layer_name_lists_valid_names(field):
    value = ("fc4",) if field == "exclude" else {"fc4": 0.5}
    with pytest.raises(ConfigError) as err:
        prune_magnitude(create("lenet300_100"), MagnitudePruning(sparsity=0.5, **{field: value}))
    message = str(err.value)
    assert "\n" not in message and "'fc4'" in message and "fc1, fc2, fc3" in message


def test_apply_masks_checks_shapes():
    model = layers()
    with pytest.raises(ConfigError, match="shape"):
        apply_masks(model, {"0": torch.ones(3, 3, dtype=torch.bool)})


# --- masks through training -------------------------------------------------------------------


def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay(digits):
    train, _ = digits
    model = create("lenet300_100")
    masks = prune_magnitude(model, MagnitudePruning(sparsity=0.8))
    before = {n: m.weight.detach().clone() for n, m in model.named_children() if n in masks}
    fit(model, train, SGD, after_step=reapply_masks, progress=False)  # 4 steps
    for name, mask in masks.items():
        weight = getattr(model, name).weight.detach()
        assert torch.equal(weight == 0, ~mask)  # exactly the pruned weights are zero
        assert (weight != before[name])[mask].float().mean() > 0.99  # survivors trained


def test_gradient_hook_blocks_updates_and_reapply_undoes_momentum():
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 20)

    def step():
        optimizer.zero_grad()
        layer(x).pow(2).sum().backward()
        optimizer.step()

    step()  # momentum from before pruning
    (mask,) = prune_magnitude(layer, MagnitudePruning(sparsity=0.5)).values()
    step()
    assert torch.all(layer.weight.grad[~mask] == 0)  # the hook masks the gradient
    assert zeros(layer.weight) < (~mask).sum()  # ...but momentum still moved pruned weights
    reapply_masks(layer)
    assert torch.equal(layer.weight == 0, ~mask)


def test_iterative_pruning_keeps_earlier_zeros_and_ranks_survivors():
    model = layers()
    first = prune_magnitude(model, MagnitudePruning(sparsity=0.5))
    with torch.no_grad():  # pruned weights drifting large must not be revived by re-ranking
        for name, module in model.named_children():
            module.weight[~first[name]] = 100.0
    second = prune_magnitude(model, MagnitudePruning(sparsity=0.8))
    for name, module in model.named_children():
        assert not torch.any(second[name] & ~first[name])  # earlier zeros stay zero
        assert abs(zeros(module.weight) - round(0.8 * module.weight.numel())) <= 1
        survivors = module.weight.detach()[second[name]].abs()
        newly_pruned = layers()[int(name)].weight.detach()[first[name] & ~second[name]].abs()
        assert newly_pruned.max() <= survivors.min()
    lower = prune_magnitude(model, MagnitudePruning(sparsity=0.3))  # cannot un-prune
    assert all(torch.equal(lower[n], second[n]) for n in lower)


def test_iterative_prune_retrains_between_rounds(digits):
    train, val = digits
    model = create("lenet300_100")
    records = iterative_prune(
        model, train, MagnitudePruning(sparsity=0.75), steps=[0.5, 0.75], finetune=SGD, val=val
    )
    assert [r["target"] for r in records] == [0.5, 0.75]
    assert [round(r["sparsity"], 3) for r in records] == [0.5, 0.75]
    assert all(r["time_s"] > 0 and 0 <= r["val_top1"] <= 100 for r in records)
    assert records[1]["nonzero_params"] < records[0]["nonzero_params"]
    masks = current_masks(model)
    assert all(torch.equal(getattr(model, n).weight != 0, m) for n, m in masks.items())
    cubic = MagnitudePruning(sparsity=0.9)
    rounds = iterative_prune(create("lenet300_100"), train, cubic, steps=3, finetune=SGD)
    levels = [r["target"] for r in rounds]
    assert levels[-1] == pytest.approx(0.9) and levels == sorted(levels)


def test_gradual_prune_follows_the_cubic_schedule(digits):
    train, val = digits
    model = create("lenet300_100")
    finetune = TrainConfig(epochs=2, batch_size=128, lr=0.05)  # 4 steps per epoch
    config = MagnitudePruning(sparsity=0.8)
    records = gradual_prune(
        model, train, config, epochs=1, finetune=finetune, prune_every_steps=2, val=val
    )
    assert [r["step"] for r in records] == [2, 4, 8]  # prunes at 2 and 4, then trains to 8
    assert records[0]["target"] == pytest.approx(cubic_sparsity(2, 4, 0.8))
    assert records[1]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert records[-1]["sparsity"] == pytest.approx(0.8, abs=1e-4) and "val_top1" in records[-1]
    for name, mask in current_masks(model).items():
        assert torch.equal(getattr(model, name).weight != 0, mask)
    with pytest.raises(ConfigError, match="epochs"):
        gradual_prune(model, train, config, epochs=3, finetune=finetune, prune_every_steps=1)


def test_cubic_schedule():
    values = [cubic_sparsity(t, 10, 0.9, initial=0.1, begin=5) for t in range(20)]
    assert values[0] == values[5] == pytest.approx(0.1)
    assert values[15] == values[19] == pytest.approx(0.9)
    assert values == sorted(values) and values[6] - values[5] > values[15] - values[14]
    assert cubic_sparsity(10, 10, 0.8, begin=5) == pytest.approx(0.8 - 0.8 * 0.5**3)
    for bad in [{"total_steps": 0}, {"final": 1.0}, {"initial": 0.95}, {"begin": -1}]:
        with pytest.raises(ConfigError):
            cubic_sparsity(**{"step": 1, "total_steps": 10, "final": 0.9, **bad})


# --- after pruning ----------------------------------------------------------------------------


def test_make_permanent_drops_masks_and_hooks_keeps_zeros():
    model = create("lenet300_100")
    prune_magnitude(model, MagnitudePruning(sparsity=0.9))
    twin = copy.deepcopy(model)  # a copy re-hooks itself on the next reapply
    reapply_masks(twin)
    assert twin.fc1.weight._backward_hooks
    pruned = {n: p.detach() == 0 for n, p in model.named_parameters()}
    make_permanent(model)
    assert not list(model.buffers()) and not any(p._backward_hooks for p in model.parameters())
    assert list(model.state_dict()) == list(create("lenet300_100").state_dict())  # no doubles
    assert all(torch.equal(p.detach() == 0, pruned[n]) for n, p in model.named_parameters())
    model.fc1.weight.sum().backward()
    assert torch.all(model.fc1.weight.grad == 1)  # gradients flow to all weights again


def test_effective_macs_fall_with_sparsity():
    layer = nn.Linear(1000, 100)
    x = torch.randn(1, 1000)
    dense = count_macs(layer, x)
    prune_magnitude(layer, MagnitudePruning(sparsity=0.9))
    sparse = count_macs(layer, x)
    assert sparse.dense == dense.dense == 100_000
    assert sparse.effective == pytest.approx(0.1 * dense.dense, abs=1)
    model = create("lenet300_100")
    example = torch.randn(1, 1, 28, 28)
    effective = []
    for s in (0.0, 0.5, 0.9):
        prune_magnitude(model, MagnitudePruning(sparsity=s))
        effective.append(count_macs(model, example).effective)
    assert effective[0] > effective[1] > effective[2]


# --- sparse storage ---------------------------------------------------------------------------


def test_index_value_form_of_the_example():
    w = torch.tensor([0.1, 0.9, 0.05, 0.01, 0.7, 0.001])
    pruned = w.masked_fill(w.abs() < 0.5, 0.0)
    flat = to_sparse(pruned, encoding="flat")
    assert flat.indices.tolist() == [1, 4] and flat.indices.dtype == torch.int32
    assert flat.values.tolist() == pytest.approx([0.9, 0.7])
    auto = to_sparse(pruned)  # 2 × (1 + 4) bytes as uint8 deltas beats 2 × (4 + 4)
    assert auto.encoding == "delta" and auto.indices.tolist() == [1, 3]
    assert auto.positions.tolist() == [1, 4]
    assert torch.equal(from_sparse(auto), pruned) and torch.equal(from_sparse(flat), pruned)


def test_delta_coding_bridges_long_gaps_with_fillers():
    torch.manual_seed(0)
    w = torch.randn(4000) * (torch.rand(4000) < 0.3)
    w[1000:3000] = 0.0  # one gap far wider than uint8 holds
    w[5] = -0.0  # a signed zero is kept, so the round trip is bit-identical
    packed = to_sparse(w)
    assert packed.encoding == "delta" and packed.indices.dtype == torch.uint8
    assert len(packed.values) > int((w != 0).sum()) + 1  # fillers store zeros inside the gap
    assert torch.equal(bits(from_sparse(packed)), bits(w))
    dense = torch.randn(3, 4)
    assert torch.equal(from_sparse(to_sparse(dense)), dense)
    empty = torch.zeros(2, 5)
    assert to_sparse(empty).nbytes == 0 and torch.equal(from_sparse(to_sparse(empty)), empty)


def test_sparse_file_round_trip_is_exact_and_small(tmp_path):
    model = create("lenet300_100")
    prune_magnitude(model, MagnitudePruning(sparsity=0.9))
    path = save_sparse(model, tmp_path / "sparse.safetensors")
    dense_file = save_weights(model, tmp_path / "dense.safetensors").stat().st_size
    assert path.stat().st_size == sparse_bytes(model) < 0.25 * dense_file
    stored = load_file(str(path))
    assert "fc1.weight::indices" in stored and "fc1.bias" in stored  # biases stay dense
    restored = load_sparse(create("lenet300_100"), path)
    for (ka, a), (kb, b) in zip(
        model.state_dict().items(), restored.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(bits(a), bits(b))
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(model(x), restored(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_load_sparse_names_the_bad_key(tmp_path):
    model = create("lenet300_100")
    prune_magnitude(model, MagnitudePruning(sparsity=0.9))
    path = save_sparse(model, tmp_path / "s.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    del tensors["fc1.weight::values"]
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match=r"'fc1\.weight'"):
        load_sparse(create("lenet300_100"), tmp_path / "broken.safetensors")
    with pytest.raises(WeightsError, match="fc3"):
        load_sparse(create("lenet300_100", num_classes=5), path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_sparse(model, tmp_path / "missing.safetensors")


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
def test_iterative_pruning_to_90_percent_keeps_accuracy():
    data = load_embedded()
    torch.manual_seed(0)
    model = create("lenet300_100")
    train = TrainConfig(epochs=4, batch_size=64, lr=0.05)
    fit(model, data.train, train, progress=False)
    dense_top1 = evaluate(model, data.test).top1
    records = iterative_prune(
        model,
        data.train,
        MagnitudePruning(sparsity=0.9),
        steps=[0.5, 0.75, 0.9],
        finetune=TrainConfig(epochs=2, batch_size=64, lr=0.01),
        val=data.test,
        progress=False,
    )
    assert records[-1]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    # 8000 training digits: within 2 points of dense (measured ~0.6-1.0 lower), and retraining
    # recovers most of what the last pruning round cost.
    assert records[-1]["val_top1"] > dense_top1 - 2.0
    assert records[-1]["val_top1"] > records[-1]["val_top1_pruned"] + 2.0
