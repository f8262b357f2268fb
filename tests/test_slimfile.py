"""The .slim file: exact round trips for the zoo, the paper's rate formula, the per-layer report,
and clear errors — never another exception — for damaged, truncated or foreign files."""

import contextlib
import json
import math
import time
import zlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimkit.errors import ConfigError, WeightsError
from slimkit.nn import create, list_models
from slimkit.prune import MagnitudePruning, prune_magnitude
from slimkit.share import (
    SlimFileError,
    WeightSharing,
    compressed_bytes,
    compression_report,
    is_slim_file,
    load_compressed,
    read_compressed,
    save_compressed,
    share_weights,
)
from slimkit.share.codebook import pack_codebook, read_codebook
from slimkit.share.slimfile import FORMAT_VERSION, MAGIC, _section
from slimkit.weights import save_weights

# Small variants where the factory allows it: the same layer types, a fraction of the weights.
SMALL = {
    "mobilenet_v1": {"input_size": 32, "alpha": 0.25},
    "mobilenet_v2": {"width_mult": 0.35},
    "efficientnet": {"base_size": 8},
    "vgg11": {"width_mult": 0.125},
    "vgg16": {"width_mult": 0.125},
    "shufflenet_v1": {"width_mult": 0.5},
    "shufflenet_v2": {"width_mult": 0.5},
    "xception": {"middle_blocks": 1, "width_mult": 0.25},
    "resnet110": {"width": 4},
    "resnet56": {"width": 4},
    "resnet44": {"width": 4},
}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def compressed(name: str, sparsity: float = 0.9, bits: int = 4, **share) -> nn.Module:
    torch.manual_seed(0)
    model = create(name, **SMALL.get(name, {})).eval()
    with torch.no_grad():  # bell-shaped like trained weights, not uniform like their init
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, float(p.std()))
    # Per layer: global ranking of untrained weights would strip whole layers by their init.
    prune_magnitude(model, MagnitudePruning(sparsity=sparsity))
    return share_weights(model, WeightSharing(bits=bits, **share)).eval()


def shared_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as a plain model would have it: shared tensors by their plain names."""
    state = {}
    for key, value in model.state_dict().items():
        if ".parametrizations." not in key:
            state[key] = value
    for name, module in model.named_modules():
        for tensor in getattr(module, "parametrizations", {}):
            state[f"{name}.{tensor}"] = getattr(module, tensor).detach()
    return state


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key].view(-1).view(torch.uint8), b[key].view(-1).view(torch.uint8)), (
            key
        )


@pytest.fixture(scope="module")
def lenet_file(tmp_path_factory):
    model = compressed("lenet300_100", sparsity=0.95)
    path = save_compressed(
        model, tmp_path_factory.mktemp("slim") / "lenet.slim", arch={"zoo": "lenet300_100"}
    )
    return model, path


# --- round trips ---------------------------------------------------------------------------------


# Deeper copies of an architecture (same layers, more blocks) round-trip in the slow suite only.
DEEPER = {"resnet44", "resnet56", "resnet110", "vgg16"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEPER else n for n in list_models()]
)
def test_every_zoo_model_round_trips_bit_for_bit(name, tmp_path):
    model = compressed(name, bias_bits=6 if name == "lenet5" else None)
    arch = {"zoo": name, "kwargs": SMALL.get(name, {})}
    path = save_compressed(model, tmp_path / f"{name}.slim", arch=arch)
    loaded = load_compressed(path).eval()
    assert_bit_identical(loaded.state_dict(), shared_state(model))
    x = torch.randn(2, *model.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_factory_models_and_channel_pruned_shapes(tmp_path):
    def factory(width: int = 6) -> nn.Module:
        m = nn.Sequential(
            nn.Conv2d(1, width, 3),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(width * 36, 10),
        )
        m.input_shape = (1, 8, 8)
        return m

    torch.manual_seed(0)
    model = factory(width=5).eval()
    model[1].running_mean.uniform_()
    shared = share_weights(model, WeightSharing(bits=2, codebook="float16"))
    path = save_compressed(shared, tmp_path / "m.slim", arch={"kwargs": {"width": 6}})
    with pytest.raises(ConfigError, match="pass factory="):
        load_compressed(path)
    loaded = load_compressed(path, factory=factory)  # described layers: width 6 → 5
    assert loaded[0].out_channels == 5
    assert_bit_identical(loaded.state_dict(), shared_state(shared))
    report = compression_report(path)
    assert {t.codebook_dtype for t in report.tensors} == {"float16"}


def test_read_compressed_needs_no_model(lenet_file):
    model, path = lenet_file
    meta, state = read_compressed(path)
    assert meta["arch"] == {"zoo": "lenet300_100"}
    assert_bit_identical(state, shared_state(model))
    assert is_slim_file(path) and not is_slim_file(__file__)


# --- sizes and the report -------------------------------------------------------------------------


def test_rate_formula_matches_a_dense_layer_without_coding(tmp_path):
    """Han et al. eq. 1: r = n·b / (n·log2 k + k·b), b = 32 bits, for k = 2^bits clusters."""
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(300, 200, bias=False))
    for bits in (2, 4, 5, 8):
        shared = share_weights(layer, WeightSharing(bits=bits))
        path = save_compressed(shared, tmp_path / f"{bits}.slim", arch={}, coders=("fixed",))
        (t,) = compression_report(path).tensors
        n, k = 60_000, 2**bits
        assert t.clusters == k and t.kept == n and t.gaps is None and t.index.coder == "fixed"
        formula = n * 32 / (n * math.log2(k) + k * 32)
        measured = n * 32 / (8 * (t.index.payload_bytes + t.codebook_bytes))
        assert measured == pytest.approx(formula, rel=1e-12)
        # The section adds only framing: kind, length, flags, counts, two checksums.
        overhead = t.section_bytes - t.index.payload_bytes - t.codebook_bytes
        assert overhead <= 24
        assert t.rate_coded == pytest.approx(formula, rel=0.002)


def test_report_adds_up_to_the_file_and_beats_the_fixed_width_rate(lenet_file):
    _, path = lenet_file
    report = compression_report(path)
    assert report.file_bytes == path.stat().st_size
    parts = report.header_bytes + report.metadata_bytes + report.raw_bytes
    assert parts + sum(t.section_bytes for t in report.tensors) == report.file_bytes
    assert report.dense_bytes == 266_610 * 4
    assert report.compression == pytest.approx(report.dense_bytes / report.file_bytes)
    fc1 = report.tensors[0]
    assert fc1.name == "fc1.weight" and fc1.kept_percent == pytest.approx(100 * fc1.kept / 235_200)
    assert fc1.rate_coded > fc1.rate_shared > 1  # coding beats fixed-width gaps and indices
    assert fc1.weight_bits_bound <= fc1.weight_bits_coded < fc1.weight_bits_shared
    assert fc1.index_bits_bound <= fc1.index_bits_coded < fc1.index_bits_fixed
    assert report.bound_bits <= report.coded_bits <= 1.1 * report.bound_bits
    beyond = report.codebook_bytes + report.framing_bytes + parts
    assert report.coded_bits // 8 + beyond == report.file_bytes  # every byte accounted for
    assert report.payload_bits + report.table_bits < report.coded_bits
    text = report.format()
    assert "fc1.weight" in text and "MB/s" in text
    assert "Shannon bound (order-0 entropy of the gap and cluster-index symbols)" in text
    assert f"codebooks {report.codebook_bytes:,} B" in text and "whole file" in text
    json.dumps(report.to_dict())
    assert compressed_bytes(lenet_file[0], {"zoo": "lenet300_100"}) == report.file_bytes


@pytest.mark.parametrize("half", [True, False])
def test_codebooks_are_delta_coded_bit_for_bit(half):
    book = np.concatenate([np.linspace(-0.3, -0.01, 8), [-0.0, 0.0], np.linspace(0.02, 0.4, 8)])
    book = book.astype(np.float16 if half else np.float32).astype(np.float32)
    data, delta = pack_codebook(book, half)
    assert delta and len(data) < 0.9 * len(book) * (2 if half else 4)
    back, end = read_codebook(memoryview(data), 0, len(book), half, True)
    assert end == len(data) and np.array_equal(back.view(np.int32), book.view(np.int32))
    assert pack_codebook(np.array([0.5, np.nan], np.float32), False)[1] is False  # unordered


def test_coding_shrinks_the_file(tmp_path):
    model = compressed("lenet5", sparsity=0.9)
    sizes = {
        coders: save_compressed(model, tmp_path / "a.slim", arch={"zoo": "lenet5"}, coders=coders)
        .stat()
        .st_size
        for coders in [("fixed",), ("fixed", "huffman"), ("constant", "fixed", "huffman", "ans")]
    }
    fixed, huffman, best = sizes.values()
    assert best <= huffman < fixed


# --- writing errors -------------------------------------------------------------------------------


def test_save_rejects_models_it_cannot_store(tmp_path):
    with pytest.raises(ConfigError, match="share_weights it first"):
        save_compressed(create("lenet5"), tmp_path / "a.slim", arch={"zoo": "lenet5"})
    twice = compressed("lenet5", exclude=("fc3",))
    parametrize.register_parametrization(twice.fc3, "weight", nn.Identity())
    with pytest.raises(ConfigError, match="freeze it before encoding"):
        save_compressed(twice, tmp_path / "a.slim", arch={"zoo": "lenet5"})
    with pytest.raises(ConfigError, match="JSON values"):
        save_compressed(compressed("lenet5"), tmp_path / "a.slim", arch={"zoo": object()})
    with pytest.raises(ConfigError, match="must include 'fixed'"):
        save_compressed(compressed("lenet5"), tmp_path / "a.slim", arch={}, coders=("ans",))
    assert not (tmp_path / "a.slim").exists()


# --- reading errors -------------------------------------------------------------------------------


def split(data: bytes) -> list[tuple[bytes, bytes]]:
    """(kind, payload) of each section."""
    from slimkit.share.coding import read_varint

    out, offset = [], len(MAGIC) + 1
    while offset < len(data):
        size, start = read_varint(data, offset + 1)
        out.append((data[offset : offset + 1], data[start : start + size]))
        offset = start + size + 4
    return out


def join(sections: list[tuple[bytes, bytes]], version: int = FORMAT_VERSION) -> bytes:
    return MAGIC + bytes([version]) + b"".join(_section(k, p) for k, p in sections)


def with_metadata(data: bytes, change) -> bytes:
    sections = split(data)
    kind, payload = sections[0]
    meta = json.loads(zlib.decompress(payload[1:]) if payload[0] else payload[1:])
    change(meta)
    sections[0] = (kind, b"\0" + json.dumps(meta).encode())
    return join(sections)


def test_clear_errors_for_bad_files(lenet_file, tmp_path):
    _, path = lenet_file
    data = path.read_bytes()
    bad = tmp_path / "bad.slim"

    def error(content: bytes) -> str:
        bad.write_bytes(content)
        with pytest.raises(SlimFileError) as exc:
            load_compressed(bad)
        return one_line(exc)

    assert "truncated" in error(data[:5])
    assert "truncated" in error(data[: len(data) // 2])
    assert "truncated" in error(data[: len(data) - 1])
    assert "wrong magic number" in error(b"PK\x03\x04" + data[4:])
    assert "version 3, newer than the 2" in error(data[:8] + b"\x03" + data[9:])
    assert "encode the model again" in error(data[:8] + b"\x01" + data[9:])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    assert "fails its checksum" in error(bytes(flipped))
    at = len(MAGIC) + 1 + len(_section(*split(data)[0])) + 3  # inside the second section
    assert "section 2 fails its checksum" in error(
        data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    )
    with pytest.raises(SlimFileError, match="does not exist"):
        load_compressed(tmp_path / "missing.slim")
    # Metadata that does not match the architecture, with valid checksums.
    other = with_metadata(data, lambda m: m["arch"].update(zoo="lenet5"))
    assert "for another model" in error(other)
    assert "unknown model 'os.system'" in error(
        with_metadata(data, lambda m: m["arch"].update(zoo="os.system"))
    )
    assert "num_classes" in error(
        with_metadata(data, lambda m: m["arch"].update(kwargs={"num_classes": -1}))
    )
    wrong_shape = with_metadata(data, lambda m: m["shared"][0].__setitem__(1, [300, 783]))
    assert "fc1.weight" in error(wrong_shape)
    missing = with_metadata(data, lambda m: m["raw"].pop(0))
    assert "expected size" in error(missing)
    wrong_layers = with_metadata(data, lambda m: m["layers"]["fc1"].update(out_features=301))
    assert "fc1" in error(wrong_layers)
    sections = split(data)
    assert "expected" in error(join(sections[:1] + sections[2:]))
    assert "truncated" in error(join(sections[:2]))
    assert "beyond its streams" in error(
        join([sections[0], (b"S", sections[1][1] + b"\0"), *sections[2:]])
    )
    assert "is empty, not a .slim file" in error(b"")


def test_a_newer_version_and_foreign_files_are_not_weights(tmp_path):
    path = save_weights(create("lenet5"), tmp_path / "w.safetensors")
    with pytest.raises(SlimFileError, match="wrong magic number"):
        load_compressed(path)
    assert issubclass(SlimFileError, WeightsError)


# --- fuzzing --------------------------------------------------------------------------------------


def corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(0, 4)
    if kind == 0:  # truncate
        return data[: rng.integers(0, len(data))]
    out = bytearray(data)
    if kind == 1:  # flip a few bits
        for _ in range(rng.integers(1, 4)):
            out[rng.integers(0, len(out))] ^= 1 << rng.integers(0, 8)
    elif kind == 2:  # overwrite a run with random bytes
        start = rng.integers(0, len(out))
        run = rng.integers(1, 16)
        out[start : start + run] = rng.integers(
            0, 256, min(run, len(out) - start), np.uint8
        ).tobytes()
    else:  # insert or delete bytes
        at = rng.integers(0, len(out))
        if rng.integers(0, 2):
            out[at:at] = rng.integers(0, 256, rng.integers(1, 8), np.uint8).tobytes()
        else:
            del out[at : at + rng.integers(1, 8)]
    return bytes(out)


def fuzz(path, tmp_path, cases: int, seed: int) -> None:
    data = path.read_bytes()
    rng = np.random.default_rng(seed)
    target = tmp_path / "fuzz.slim"
    slowest = 0.0
    for i in range(cases):
        damaged = corrupt(data, rng)
        if damaged == data:
            continue
        target.write_bytes(damaged)
        t0 = time.perf_counter()
        with pytest.raises(SlimFileError):
            load_compressed(target)
        slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 1.0, f"case {i} took {slowest:.2f} s"


def fuzz_rechecksummed(path, tmp_path, cases: int, seed: int) -> None:
    """Damage inside a section whose checksum is then made valid again: the deeper checks must
    catch it (or the file still decodes to some model), never another exception."""
    sections = split(path.read_bytes())
    rng = np.random.default_rng(seed)
    target = tmp_path / "fuzz.slim"
    for _ in range(cases):
        i = rng.integers(0, len(sections))
        kind, payload = sections[i]
        damaged = list(sections)
        damaged[i] = (kind, corrupt(payload, rng))
        target.write_bytes(join(damaged))
        t0 = time.perf_counter()
        with contextlib.suppress(SlimFileError):
            load_compressed(target)
        assert time.perf_counter() - t0 < 1.0


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A pruned, shared LeNet-5 with every section kind and both gap and index streams."""
    model = compressed("lenet5", sparsity=0.8, bias_bits=5)
    return save_compressed(
        model, tmp_path_factory.mktemp("fuzz") / "lenet5.slim", arch={"zoo": "lenet5"}
    )


def test_fuzz_1000_corruptions_end_in_slim_file_error(small_file, tmp_path):
    fuzz(small_file, tmp_path, 1000, seed=0)
    fuzz_rechecksummed(small_file, tmp_path, 300, seed=0)


@pytest.mark.slow
def test_fuzz_10000_corruptions_end_in_slim_file_error(small_file, tmp_path):
    fuzz(small_file, tmp_path, 10_000, seed=1)
    fuzz_rechecksummed(small_file, tmp_path, 3000, seed=1)
