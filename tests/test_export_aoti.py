"""AOTInductor packages: a compiled .pt2 that reloads and matches eager, and one-line errors."""

import pytest
import torch
from torch import nn

from slimkit.bench import run_bench
from slimkit.errors import ConfigError, ShapeError, WeightsError
from slimkit.export import AotiModel, aoti_unavailable, export_aoti


def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    model.input_shape = (4,)
    return model


def test_no_compiler_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    reason = aoti_unavailable()
    assert reason is not None and "C++ compiler" in reason and "\n" not in reason
    with pytest.raises(ConfigError, match=r"C\+\+ compiler"):
        export_aoti(tiny(), tmp_path / "m.pt2")
    with pytest.raises(ConfigError, match=r"backend 'aoti': AOTInductor needs a C\+\+ compiler"):
        run_bench(tiny(), torch.randn(1, 4), backends=["aoti"])
    assert not (tmp_path / "m.pt2").exists()


def test_a_file_that_is_not_a_package(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        AotiModel(tmp_path / "missing.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"PK\x03\x04 not a package")
    with pytest.raises(WeightsError, match="not an AOTInductor package"):
        AotiModel(junk)


@pytest.mark.slow  # three C++ builds: ~15-35 s each on two shared cores
@pytest.mark.skipif(aoti_unavailable() is not None, reason="no C++ compiler")
def test_packages_match_eager_and_bench(tmp_path):
    model = tiny()
    runner = AotiModel.from_model(model, tmp_path / "tiny.pt2")  # static: batch 1
    assert runner.compile_s > 0 and runner.package_bytes == (tmp_path / "tiny.pt2").stat().st_size
    x = torch.randn(1, 4)
    torch.testing.assert_close(runner(x), model(x).detach())
    with pytest.raises(ShapeError, match="compiled for batch 1, got 7"):
        runner(torch.randn(7, 4))
    with pytest.raises(ShapeError, match=r"expects input of shape \(N, 4\)"):
        runner(torch.randn(1, 5))
    with pytest.raises(ConfigError, match="inference"):
        runner.train()
    dynamic = AotiModel.from_model(model, tmp_path / "any.pt2", dynamic_batch=True)
    for batch in (1, 7):
        x = torch.randn(batch, 4)
        torch.testing.assert_close(dynamic(x), model(x).detach())
    rows = run_bench(model, torch.randn(1, 4), backends=["aoti"], batches=(1,), rounds=2, calls=3)
    aoti = next(r for r in rows if r.backend == "aoti")
    assert aoti.build_s > 0 and aoti.file_bytes > 0 and aoti.p50_ms > 0
