"""Tests for slimkit.data: loaders, the embedded MNIST split, batching and splitting."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slimkit.data import (
    ArrayDataset,
    batches,
    cache_dir,
    calibration_subset,
    load,
    load_embedded,
    load_idx,
    load_image_folder,
    load_npz,
    random_crop_flip,
    random_shift,
    read_idx,
    train_val_split,
    unpack_tarball,
)
from slimkit.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_TARBALL = SHARED_DATA / "cifar10-jpeg" / "CIFAR-10-images-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep every test's cache writes inside its own tmp folder."""
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------- IDX


def _idx_bytes(arr: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = bytes([0, 0, dtype_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx(path: Path, arr: np.ndarray) -> Path:
    data = _idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    got_images = read_idx(_write_idx(tmp_path / f"img-idx3-ubyte{suffix}", images))
    got_labels = read_idx(_write_idx(tmp_path / f"lab-idx1-ubyte{suffix}", labels))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda b: b[:-7], "truncated"),
        (lambda b: b + b"\0\0", "trailing"),
        (lambda b: b[:6], "header"),
        (lambda b: b"\x00\x01" + b[2:], "magic"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "magic"),
        (lambda b: b"PK", "truncated"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, mutate, needle):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(_idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))))
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    message = _one_line_error(excinfo)
    assert needle in message and "bad-idx3-ubyte" in message


def test_read_idx_rejects_damaged_gzip_and_missing_file(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.arange(10)))[:-12])
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx(path)
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


def _idx_folder(root: Path, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 6, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(12, dtype=np.uint8) % 3,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([0, 1, 2, 2], dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, arr) in enumerate(arrays.items()):
        # Mix compressed and raw files: both spellings must be found.
        _write_idx(root / (name + (".gz" if gz and i % 2 == 0 else "")), arr)
    return arrays


def test_load_idx_folder_and_autodetect(tmp_path):
    arrays = _idx_folder(tmp_path / "mnistish")
    for splits in (load_idx(tmp_path / "mnistish"), load(tmp_path / "mnistish")):
        assert splits.name == "mnist"
        assert splits.train.images.shape == (12, 1, 6, 5)
        assert splits.test.images.shape == (4, 1, 6, 5)
        np.testing.assert_array_equal(
            splits.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"]
        )
        assert splits.test.labels.tolist() == [0, 1, 2, 2]
        assert splits.train.labels.dtype == torch.int64
        assert splits.train.classes == ("0", "1", "2")
        expected = arrays["train-images-idx3-ubyte"] / 255.0
        assert splits.train.mean[0] == pytest.approx(expected.mean())
        assert splits.train.std[0] == pytest.approx(expected.std())


def test_load_idx_names_missing_files(tmp_path):
    _idx_folder(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as excinfo:
        load_idx(tmp_path / "d")
    assert "t10k-labels-idx1-ubyte[.gz]" in _one_line_error(excinfo)


# ---------------------------------------------------------------------------------- npz


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_load_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(2)
    channels = 1 if layout == "NHW" else 3
    nchw_train = rng.integers(0, 256, (6, channels, 5, 7), dtype=np.uint8)
    nchw_test = rng.integers(0, 256, (2, channels, 5, 7), dtype=np.uint8)
    to_layout = {
        "NHW": lambda a: a[:, 0],
        "NHWC": lambda a: a.transpose(0, 2, 3, 1),
        "NCHW": lambda a: a,
    }[layout]
    path = tmp_path / "toy.npz"
    np.savez(
        path,
        x_train=to_layout(nchw_train),
        y_train=np.array([0, 1, 2, 0, 1, 2]),
        x_test=to_layout(nchw_test),
        y_test=np.array([2, 0]),
    )
    splits = load_npz(path)
    assert splits.name == "toy"
    np.testing.assert_array_equal(splits.train.images.numpy(), nchw_train)
    np.testing.assert_array_equal(splits.test.images.numpy(), nchw_test)
    assert splits.train.classes == ("0", "1", "2")
    assert splits.test.labels.tolist() == [2, 0]
    assert splits.train.mean == pytest.approx(tuple(nchw_train.mean(axis=(0, 2, 3)) / 255.0))
    assert load(path).train.images.shape == (6, channels, 5, 7)


def test_load_npz_float_images_and_class_names(tmp_path):
    x = np.array([[[0.0, 1.0], [0.5, 0.25]]] * 2, dtype=np.float32)
    path = tmp_path / "f.npz"
    y = np.array([0, 1])
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, classes=np.array(["cat", "dog"]))
    splits = load_npz(path)
    assert splits.train.images[0, 0].tolist() == [[0, 255], [128, 64]]
    assert splits.train.classes == ("cat", "dog")


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"x_train": np.zeros((2, 3, 3)), "y_train": np.zeros(2, int)}, "lacks key"),
        ({"x_train": np.full((2, 3, 3), 2.0), "y_train": np.zeros(2, int)}, "[0, 1]"),
        ({"x_train": np.zeros((2, 3, 3), np.uint8), "y_train": np.zeros(3, int)}, "3 labels"),
        ({"x_train": np.zeros((2, 5, 5, 5), np.uint8), "y_train": np.zeros(2, int)}, "shape"),
    ],
)
def test_load_npz_rejects_bad_content(tmp_path, arrays, needle):
    path = tmp_path / "bad.npz"
    test = {"x_test": np.zeros((1, 3, 3), np.uint8), "y_test": np.zeros(1, int)}
    if needle == "lacks key":
        test = {"x_test": test["x_test"]}
    np.savez(path, **arrays, **test)
    with pytest.raises(DataError) as excinfo:
        load_npz(path)
    assert needle in _one_line_error(excinfo)


def test_load_npz_never_unpickles(tmp_path):
    path = tmp_path / "pickled.npz"
    objects = np.array([{"a": 1}, None], dtype=object)
    np.savez(path, x_train=objects, y_train=objects, x_test=objects, y_test=objects)
    with pytest.raises(DataError, match="cannot read arrays"):
        load_npz(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"as \.npz"):
        load_npz(garbage)


# ---------------------------------------------------------------------------------- image folders


def _image_tree(root: Path, size=(5, 4), mode="RGB", per_class=(3, 1)) -> dict[str, np.ndarray]:
    """Write root/{train,test}/{ant,bee}/NN.png; return {relative path: pixels}."""
    rng = np.random.default_rng(3)
    written = {}
    for split, count in zip(("train", "test"), per_class, strict=True):
        for cls in ("bee", "ant"):  # written out of order: classes must come back sorted
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels, mode).save(folder / f"{i:02d}.png")
                written[f"{split}/{cls}/{i:02d}.png"] = pixels
    return written


def test_load_image_folder_exact_pixels_and_cache(tmp_path, monkeypatch):
    written = _image_tree(tmp_path / "toy")
    splits = load_image_folder(tmp_path / "toy")
    assert splits.train.classes == ("ant", "bee")
    assert splits.name == "toy"
    assert splits.train.images.shape == (6, 3, 4, 5)
    assert splits.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert splits.test.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(
        splits.train.images[3].permute(1, 2, 0).numpy(), written["train/bee/00.png"]
    )
    np.testing.assert_array_equal(
        splits.test.images[0].permute(1, 2, 0).numpy(), written["test/ant/00.png"]
    )
    cached = list((cache_dir() / "image-folders").glob("toy-*.npz"))
    assert len(cached) == 1

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is warm")

    monkeypatch.setattr("slimkit.data.images._decode_image", no_decoding)
    again = load(tmp_path / "toy")
    assert torch.equal(again.train.images, splits.train.images)
    assert torch.equal(again.test.labels, splits.test.labels)
    assert again.train.mean == pytest.approx(splits.train.mean)


def test_image_folder_cache_invalidated_by_new_file(tmp_path):
    _image_tree(tmp_path / "toy")
    assert len(load_image_folder(tmp_path / "toy").train) == 6
    Image.new("RGB", (5, 4), (9, 9, 9)).save(tmp_path / "toy" / "train" / "ant" / "99.png")
    splits = load_image_folder(tmp_path / "toy")
    assert len(splits.train) == 7
    assert splits.train.images[3, :, 0, 0].tolist() == [9, 9, 9]


def test_load_image_folder_grayscale_and_mixed(tmp_path):
    grey = _image_tree(tmp_path / "grey", mode="L")
    splits = load_image_folder(tmp_path / "grey")
    assert splits.train.sample_shape == (1, 4, 5)
    np.testing.assert_array_equal(splits.test.images[1, 0].numpy(), grey["test/bee/00.png"])
    # One colour image turns the whole set RGB; grey images repeat their channel.
    Image.new("RGB", (5, 4), (1, 2, 3)).save(tmp_path / "grey" / "test" / "bee" / "01.png")
    mixed = load_image_folder(tmp_path / "grey")
    assert mixed.test.sample_shape == (3, 4, 5)
    for c in range(3):
        np.testing.assert_array_equal(mixed.test.images[1, c].numpy(), grey["test/bee/00.png"])
    assert mixed.test.images[2, :, 0, 0].tolist() == [1, 2, 3]


def test_image_folder_size_mismatch_names_file(tmp_path):
    _image_tree(tmp_path / "toy")
    Image.new("RGB", (6, 6)).save(tmp_path / "toy" / "test" / "bee" / "odd.png")
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path / "toy")
    message = _one_line_error(excinfo)
    assert "odd.png" in message and "6x6" in message


def test_image_folder_corrupt_image_and_layout_errors(tmp_path):
    _image_tree(tmp_path / "toy")
    (tmp_path / "toy" / "train" / "ant" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        load_image_folder(tmp_path / "toy")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="train or test/"):
        load_image_folder(tmp_path / "flat")


# ---------------------------------------------------------------------------------- tarballs


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (3, 3), value).save(buf, "PNG")
    return buf.getvalue()


def _image_tarball(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for cls, value in (("a", 10), ("b", 200)):
                _add_bytes(tar, f"top/{split}/{cls}/0.png", _png_bytes(value))
        for name, data in (extra or {}).items():
            _add_bytes(tar, name, data)
    return path


def test_unpack_tarball_finds_root_and_does_not_reextract(tmp_path, monkeypatch):
    tarball = _image_tarball(tmp_path / "toy-images.tar.gz")
    root = unpack_tarball(tarball)
    assert root == cache_dir() / "toy-images" / "top"
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    assert not list(cache_dir().glob(".toy-images*"))  # no temp folders left behind

    def no_extract(*args):
        raise AssertionError("extracted again")

    monkeypatch.setattr("slimkit.data.tarball._extract", no_extract)
    assert unpack_tarball(tarball) == root
    splits = load(tarball)
    assert splits.train.classes == ("a", "b")
    assert splits.train.images[:, 0, 0, 0].tolist() == [10, 200]


def test_unpack_tarball_keeps_an_unpack_another_process_finished_first(tmp_path, monkeypatch):
    # Two processes unpack the same tarball at once: the later one must not swap out the tree
    # the first is already reading (that made its image reads fail with "No such file").
    import slimkit.data.tarball as tarball_module

    tarball = _image_tarball(tmp_path / "toy-images.tar.gz")
    real_extract = tarball_module._extract

    def racing_extract(tar_path, into):
        monkeypatch.setattr(tarball_module, "_extract", real_extract)
        first = unpack_tarball(tarball)  # the other process finishes first
        (first / "in-use").write_text("")  # and is reading its tree
        real_extract(tar_path, into)

    monkeypatch.setattr(tarball_module, "_extract", racing_extract)
    root = unpack_tarball(tarball)
    assert (root / "in-use").exists()
    assert not list(cache_dir().glob(".toy-images*"))  # our copy was discarded


def test_unpack_tarball_replaces_stale_unpack_when_tarball_changes(tmp_path):
    tarball = tmp_path / "t.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for split in ("train", "test"):
            _add_bytes(tar, f"{split}/a/0.png", _png_bytes(1))
    root = unpack_tarball(tarball)
    assert root == cache_dir() / "t"
    with tarfile.open(tarball, "w:gz") as tar:
        for split in ("train", "test"):
            _add_bytes(tar, f"{split}/a/0.png", _png_bytes(77))
            _add_bytes(tar, f"{split}/a/1.png", _png_bytes(78))
    assert unpack_tarball(tarball) == root
    assert load(tarball).train.images[:, 0, 0, 0].tolist() == [77, 78]
    assert sorted(p.name for p in cache_dir().iterdir()) == ["image-folders", "t"]


@pytest.mark.parametrize(
    ("member", "kind"),
    [("../escape.txt", "file"), ("/abs/escape.txt", "file"), ("top/link", "symlink")],
)
def test_unpack_tarball_rejects_unsafe_members(tmp_path, member, kind):
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        _add_bytes(tar, "top/train/a/0.png", _png_bytes(1))
        _add_bytes(tar, "top/test/a/0.png", _png_bytes(1))
        if kind == "file":
            _add_bytes(tar, member, b"pwned")
        else:
            info = tarfile.TarInfo(member)
            info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
            tar.addfile(info)
    dest = tmp_path / "out" / "evil"
    with pytest.raises(DataError) as excinfo:
        unpack_tarball(tarball, dest)
    assert "unsafe member" in _one_line_error(excinfo)
    assert not dest.exists()
    assert not (tmp_path / "out" / "escape.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # temp folder cleaned up


def test_unpack_tarball_refuses_foreign_dest_and_non_image_tarball(tmp_path):
    tarball = _image_tarball(tmp_path / "t.tgz")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not unpacked by slimkit"):
        unpack_tarball(tarball, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        _add_bytes(tar, "readme.txt", b"hi")
    with pytest.raises(DataError, match="no train/ and test/"):
        unpack_tarball(plain)


# ---------------------------------------------------------------------------------- load()


def test_load_missing_path_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load(tmp_path / "missing")
    message = _one_line_error(excinfo)
    assert "does not exist" in message and "IDX" in message and ".npz" in message


def test_load_unknown_forms(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unrecognised data file"):
        load(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither IDX files nor train/ and test/"):
        load(tmp_path / "empty")


def test_load_finds_image_tree_one_level_down(tmp_path):
    _image_tree(tmp_path / "outer" / "inner")
    assert len(load(tmp_path / "outer").train) == 6


# ---------------------------------------------------------------------------------- embedded


def test_embedded_split():
    splits = load_embedded()
    assert splits.name == "mnist-embedded"
    assert (len(splits.train), len(splits.test)) == (8000, 2000)
    assert splits.train.sample_shape == (1, 28, 28)
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.classes == tuple(str(d) for d in range(10))
    for ds in (splits.train, splits.test):
        assert sorted(ds.labels.unique().tolist()) == list(range(10))
        x = ds.normalized()
        assert x.dtype == torch.float32
        assert abs(float(x.mean())) < 0.05
        assert abs(float(x.std()) - 1.0) < 0.05
    # The split is a partition of the 10k test set: label histogram of both parts adds up to it.
    counts = torch.bincount(torch.cat([splits.train.labels, splits.test.labels]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_embedded_is_deterministic_and_tamper_proof():
    first = load_embedded()
    first.train.images.zero_()
    first.test.labels.fill_(0)
    second = load_embedded()
    assert int(second.train.images.sum()) > 0
    assert sorted(second.test.labels.unique().tolist()) == list(range(10))
    third = load_embedded()
    assert torch.equal(second.train.images, third.train.images)
    assert torch.equal(second.test.labels, third.test.labels)


def test_embedded_license_and_files_ship():
    from importlib.resources import files

    embedded = files("slimkit.data") / "embedded"
    assert "CC BY-SA 3.0" in (embedded / "LICENSE.md").read_text()
    assert len((embedded / "t10k-images-idx3-ubyte.gz").read_bytes()) == 1648877


# ---------------------------------------------------------------------------------- dataset helpers


def _toy(n: int = 10, classes: int = 2) -> ArrayDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    labels = torch.arange(n) % classes
    return ArrayDataset(images, labels, tuple("abcdefghij"[:classes]), (0.0,), (1 / 255,))


def test_array_dataset_normalized_and_validation():
    ds = _toy()
    assert ds.normalized(torch.tensor([3]))[0, 0, 0, 0].item() == pytest.approx(3.0)
    assert ds.normalized(slice(0, 2)).shape == (2, 1, 2, 2)
    sub = ds.subset(torch.tensor([4, 5]))
    sub.images.zero_()
    assert ds.images[4, 0, 0, 0].item() == 4  # subset copies
    with pytest.raises(DataError, match="uint8"):
        ArrayDataset(ds.images.float(), ds.labels, ds.classes, ds.mean, ds.std)
    with pytest.raises(DataError, match="labels span"):
        ArrayDataset(ds.images, ds.labels + 5, ds.classes, ds.mean, ds.std)
    with pytest.raises(DataError, match="one value per channel"):
        ArrayDataset(ds.images, ds.labels, ds.classes, (0.1, 0.2), (1.0, 1.0))


def test_batches_cover_every_sample_with_partial_last_batch():
    ds = _toy(10)
    got = list(batches(ds, 4, shuffle=True, seed=1, epoch=0))
    assert [len(y) for _, y in got] == [4, 4, 2]
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in got]).round().long()
    assert sorted(seen.tolist()) == list(range(10))
    for x, y in got:  # labels travel with their images
        assert torch.equal(x[:, 0, 0, 0].round().long() % 2, y)
    assert [len(y) for _, y in batches(ds, 4, drop_last=True)] == [4, 4]
    plain = torch.cat([x[:, 0, 0, 0] for x, _ in batches(ds, 3)]).round().long()
    assert plain.tolist() == list(range(10))


def test_batches_shuffle_is_deterministic_per_seed_and_epoch():
    ds = _toy(50)

    def order(**kw):
        return torch.cat([x[:, 0, 0, 0] for x, _ in batches(ds, 7, shuffle=True, **kw)]).tolist()

    assert order(seed=3, epoch=2) == order(seed=3, epoch=2)
    assert order(seed=3, epoch=2) != order(seed=3, epoch=3)
    assert order(seed=3, epoch=2) != order(seed=4, epoch=2)
    assert order(seed=1, epoch=0) != order(seed=0, epoch=1)
    with pytest.raises(ConfigError, match="batch_size"):
        next(batches(ds, 0))


def test_random_crop_flip():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    flip_only = random_crop_flip(padding=0)
    out = flip_only(x, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    aug = random_crop_flip(padding=2)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # every output is some crop of the padded input, maybe mirrored
        crops = [padded[i, :, dy : dy + 4, dx : dx + 4] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(a[i], c) or torch.equal(a[i], c.flip(-1)) for c in crops)
    # Across many samples both flips and several offsets occur.
    many = aug(torch.ones(64, 1, 4, 4), torch.Generator().manual_seed(1))
    assert len({tuple(m.flatten().tolist()) for m in many}) > 5
    with pytest.raises(ConfigError):
        random_crop_flip(-1)


def test_random_shift_translates_without_mirroring():
    x = torch.randn(32, 1, 6, 6)
    out = random_shift(2)(x, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    offsets = set()
    for i in range(len(x)):  # each output is one shifted window of the edge-padded input
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6])
        ]
        assert len(hits) == 1, "not a pure translation (a mirror or a mix)"
        offsets |= set(hits)
    assert len(offsets) > 5  # many offsets drawn, not one
    # The border repeats the edge, never the data-set mean (0): an all-background image stays so.
    background = torch.full((4, 1, 6, 6), -0.42)
    assert torch.equal(random_shift(2)(background, torch.Generator()), background)
    with pytest.raises(ConfigError, match="random_shift"):
        random_shift(-1)


def test_batches_apply_augment_deterministically():
    ds = load_embedded().test.subset(torch.arange(300))
    aug = random_crop_flip(4)
    first = [x for x, _ in batches(ds, 128, seed=2, epoch=1, augment=aug)]
    second = [x for x, _ in batches(ds, 128, seed=2, epoch=1, augment=aug)]
    other = [x for x, _ in batches(ds, 128, seed=2, epoch=2, augment=aug)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], ds.normalized(slice(0, 128)))


def test_train_val_split_deterministic_stratified():
    ds = load_embedded().train
    train, val = train_val_split(ds, 0.1, seed=7)
    assert (len(train), len(val)) == (7200, 800)
    again_train, again_val = train_val_split(ds, 0.1, seed=7)
    assert torch.equal(val.images, again_val.images) and torch.equal(
        train.labels, again_train.labels
    )
    assert not torch.equal(train_val_split(ds, 0.1, seed=8)[1].labels, val.labels)
    # Stratified: each class keeps its share of the data within one sample.
    expected = ds.class_counts().double() * 0.1
    assert (val.class_counts().double() - expected).abs().max() <= 1
    # Disjoint and complete: pixel sums add up.
    total = train.images.sum(dtype=torch.int64) + val.images.sum(dtype=torch.int64)
    assert int(total) == int(ds.images.sum(dtype=torch.int64))
    for bad in (0.0, 1.0, -0.5, "0.1"):
        with pytest.raises(ConfigError, match="val_fraction"):
            train_val_split(ds, bad)


def test_calibration_subset_balanced_and_deterministic():
    ds = load_embedded().train
    calib = calibration_subset(ds, 256, seed=0)
    assert len(calib) == 256
    counts = calib.class_counts()
    assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(calib.images, calibration_subset(ds, 256, seed=0).images)
    assert not torch.equal(calib.images, calibration_subset(ds, 256, seed=1).images)
    assert len(calibration_subset(ds, 10**6)) == len(ds)


def test_calibration_subset_small_class_gives_all_it_has():
    labels = torch.tensor([0] * 20 + [1] * 2 + [2] * 20)
    images = torch.zeros(len(labels), 1, 1, 1, dtype=torch.uint8)
    ds = ArrayDataset(images, labels, ("a", "b", "c"), (0.0,), (1.0,))
    assert calibration_subset(ds, 12).class_counts().tolist() == [5, 2, 5]


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit" and cache_dir().is_dir()
    monkeypatch.delenv("SLIMKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "slimkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "slimkit"


# ---------------------------------------------------------------------------------- slow

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared test data not found at {SHARED_DATA}"
)


@pytest.mark.slow
@needs_shared
def test_full_mnist_from_shared_data():
    splits = load(SHARED_DATA / "mnist")
    assert splits.name == "mnist"
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.train.sample_shape == (1, 28, 28)
    assert splits.train.mean[0] == pytest.approx(0.1307, abs=1e-4)
    assert splits.train.std[0] == pytest.approx(0.3081, abs=1e-4)
    assert splits.train.class_counts().sum() == 60000


@pytest.fixture(scope="module")
def cifar_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cifar-cache")


@pytest.mark.slow
@needs_shared
def test_cifar_tarball_cold_then_cached(cifar_cache, monkeypatch):
    if not CIFAR_TARBALL.is_file():
        pytest.skip(f"CIFAR-10 tarball not found at {CIFAR_TARBALL}")
    monkeypatch.setenv("SLIMKIT_CACHE", str(cifar_cache))
    splits = load(CIFAR_TARBALL)
    assert splits.name == "cifar10"
    assert (len(splits.train), len(splits.test)) == (50000, 10000)
    assert splits.train.sample_shape == (3, 32, 32)
    assert len(splits.train.classes) == 10 and splits.train.classes[0] == "airplane"
    assert splits.train.class_counts().tolist() == [5000] * 10
    assert splits.test.class_counts().tolist() == [1000] * 10
    # README: channel means match CIFAR-10 (0.4914, 0.4822, 0.4465).
    assert splits.train.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=2e-3)

    def no_decoding(path):
        raise AssertionError("decoded again although the cache is warm")

    monkeypatch.setattr("slimkit.data.images._decode_image", no_decoding)
    monkeypatch.setattr("slimkit.data.tarball._extract", no_decoding)
    warm = load(CIFAR_TARBALL)
    assert torch.equal(warm.train.images, splits.train.images)
    assert torch.equal(warm.test.labels, splits.test.labels)
