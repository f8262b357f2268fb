"""`slimkit prune --split-attention` and `--keep`: whole attention heads removed from the command
line, named layers left whole, and an artifact that reloads into the model the CLI measured.

One CLI run on a randomly initialised transformer_mnist (embedded MNIST, no fine-tuning) serves
the structural tests; bad input is checked for its one-line errors.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from slimkit.cli import main
from slimkit.data import load_embedded
from slimkit.measure import count_params, evaluate
from slimkit.nn import create
from slimkit.prune import (
    ChannelPruning,
    HeadAttention,
    load_pruned,
    load_sparse,
    prune_channels,
    split_attention,
)
from slimkit.weights import load_weights, save_weights

E, H, D, MLP = 64, 4, 16, 128  # transformer_mnist: embed dim, heads, head dim, MLP width
KEEP = ["blocks.1.attn.q_proj", "blocks.0.fc1"]  # block 1's heads, block 0's MLP units


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_weights(create("transformer_mnist"), tmp_path_factory.mktemp("w") / "t.safetensors")


@pytest.fixture(scope="module")
def pruned_run(weights, tmp_path_factory):
    """Half the heads and MLP units of every block, except what KEEP names."""
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLIMKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        code, stdout, _ = run(
            "prune", "transformer_mnist", "--weights", str(weights), "--method", "channel",
            "--split-attention", "--amount", "0.5", "--scope", "layer", "--keep", *KEEP,
            "--finetune-epochs", "0", "--out", str(out),
        )  # fmt: skip
    assert code == 0
    return load_pruned(out / "transformer_mnist-channels.safetensors").eval(), stdout


def images(n: int = 4) -> torch.Tensor:
    return load_embedded().test.normalized(torch.arange(n))


def test_whole_heads_are_removed_except_where_kept(pruned_run):
    model, stdout = pruned_run
    attn = [m for m in model.modules() if isinstance(m, HeadAttention)]
    assert [a.num_heads for a in attn] == [H // 2, H]
    for a in attn:  # a head is D rows of q, k and v and D columns of out_proj, all or none
        widths = {a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features}
        assert widths == {a.num_heads * D} and a.out_proj.in_features == a.num_heads * D
        assert a.out_proj.out_features == E
    assert "heads kept: blocks.0.attn 2/4, blocks.1.attn 4/4" in stdout


def test_keep_leaves_that_modules_channels_whole(pruned_run):
    model, _ = pruned_run
    assert model.blocks[0].fc1.out_features == MLP and model.blocks[0].fc2.in_features == MLP
    assert model.blocks[1].fc1.out_features == MLP // 2


def test_parameters_fall_by_the_removed_heads_and_units(pruned_run):
    model, _ = pruned_run
    heads = 2 * (3 * D * (E + 1) + D * E)  # q/k/v rows with biases, out_proj columns
    units = (MLP // 2) * (E + 1 + E)  # fc1 rows with biases, fc2 columns
    dense = count_params(create("transformer_mnist")).total
    assert dense - count_params(model).total == heads + units
    with torch.no_grad():
        assert model(images()).shape == (4, 10)


def test_artifact_reloads_into_the_model_the_cli_pruned_and_measured(pruned_run, weights):
    model, stdout = pruned_run
    split = split_attention(load_weights(create("transformer_mnist"), weights)).eval()
    config = ChannelPruning(0.5, layer_ratios=dict.fromkeys(KEEP, 0.0))
    expected = prune_channels(split, config, images(2)).eval()
    with torch.no_grad():
        assert torch.equal(model(images(64)), expected(images(64)))
    top1 = evaluate(model, load_embedded().test).top1
    after = next(line for line in stdout.splitlines() if "top-1 accuracy" in line).split()[-2]
    assert after == f"{top1:.2f}"  # the figure printed is the reloaded model's


def test_keep_with_magnitude_leaves_the_layer_dense(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    code, _, _ = run(
        "prune", "transformer_mnist", "--weights", str(weights), "--method", "magnitude",
        "--amount", "0.9", "--keep", "blocks.0.fc1", "--finetune-epochs", "0",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    model = load_sparse(
        create("transformer_mnist"), tmp_path / "transformer_mnist-sparse.safetensors"
    )
    assert int((model.blocks[0].fc1.weight == 0).sum()) == 0
    assert float((model.blocks[1].fc1.weight == 0).float().mean()) > 0.5


def one_line_error(*argv: str) -> str:
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slimkit: error:")
    return lines[0]


def test_unknown_keep_name_is_one_line_with_the_closest(weights, tmp_path):
    line = one_line_error(
        "prune", "transformer_mnist", "--weights", str(weights), "--method", "channel",
        "--split-attention", "--keep", "blocks.0.atn.q_proj", "--out", str(tmp_path),
    )  # fmt: skip
    assert "--keep names 'blocks.0.atn.q_proj'" in line
    assert "did you mean 'blocks.0.attn.q_proj'?" in line
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_split_attention_refusals_are_one_line(weights, tmp_path):
    line = one_line_error(
        "prune", "transformer_mnist", "--weights", str(weights), "--method", "magnitude",
        "--split-attention", "--out", str(tmp_path),
    )  # fmt: skip
    assert "--method channel" in line
    lenet = save_weights(create("lenet5"), tmp_path / "lenet5.safetensors")
    line = one_line_error(
        "prune", "lenet5", "--weights", str(lenet), "--method", "channel", "--split-attention",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert "no nn.MultiheadAttention" in line
