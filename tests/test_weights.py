"""Weights files: safetensors and weights-only torch files load; nothing else does."""

import pytest
import torch
from torch import nn

from slimkit.errors import WeightsError
from slimkit.weights import load_weights, read_weights, save_weights


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_safetensors_round_trip_is_exact(tmp_path):
    a, b = net(), net()
    path = save_weights(a, tmp_path / "w.safetensors")
    load_weights(b, path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_tied_weights_saved_once_and_restored(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8, bias=False)
            self.b = nn.Linear(8, 8, bias=False)
            self.b.weight = self.a.weight

    model = Tied()
    path = save_weights(model, tmp_path / "tied.safetensors")
    assert path.stat().st_size < 8 * 8 * 4 * 2  # one copy, not two
    state = read_weights(path)
    assert torch.equal(state["a.weight"], state["b.weight"])
    load_weights(Tied(), path)


def test_torch_state_dict_loads_weights_only(tmp_path):
    a = net()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = load_weights(net(), tmp_path / "w.pt")
    assert torch.equal(a[0].weight, b[0].weight)


def test_pickled_model_object_is_refused(tmp_path):
    torch.save(net(), tmp_path / "model.pt")  # a whole module: loading it would run code
    with pytest.raises(WeightsError, match="not a weights file"):
        read_weights(tmp_path / "model.pt")


def test_garbage_file_is_not_a_weights_file(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x00\x01 definitely not tensors")
    with pytest.raises(WeightsError, match="is not a weights file") as e:
        read_weights(tmp_path / "x.safetensors")
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_weights(tmp_path / "nope.safetensors")


def test_mismatch_names_first_key_and_shapes(tmp_path):
    other = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    path = save_weights(other, tmp_path / "other.safetensors")
    expected = r"'0\.weight' has shape \(5, 4\) in the file but \(3, 4\)"
    with pytest.raises(WeightsError, match=expected):
        load_weights(net(), path)


def test_missing_and_extra_keys_are_named(tmp_path):
    path = save_weights(nn.Sequential(nn.Linear(4, 3)), tmp_path / "part.safetensors")
    with pytest.raises(WeightsError, match=r"lack '1\.weight'"):
        load_weights(net(), path)
    path = save_weights(net(), tmp_path / "full.safetensors")
    with pytest.raises(WeightsError, match=r"hold '1\."):
        load_weights(nn.Sequential(nn.Linear(4, 3)), path)
