"""MNIST-style IDX files: `read_idx`, `load_idx`, and the embedded MNIST split `load_embedded`."""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from slimkit.data.common import _as_path, _numbered_classes, _one_line, _require_file, _splits
from slimkit.data.dataset import ArrayDataset, DataSplits
from slimkit.errors import DataError

__all__ = [
    "EMBEDDED_TRAIN_SIZE",
    "MNIST_MEAN",
    "MNIST_STD",
    "load_embedded",
    "load_idx",
    "read_idx",
]

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
EMBEDDED_TRAIN_SIZE = 8000
# Fixed forever: changing it would silently change every "embedded" result.
_EMBEDDED_SEED = 0
_EMBEDDED_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _parse_idx(raw: bytes | bytearray, name: str) -> np.ndarray:
    """Decode an uncompressed IDX byte string; `name` is used in error messages."""
    if len(raw) < 4:
        raise DataError(
            f"IDX file '{name}' is truncated ({len(raw)} bytes, no header): re-fetch it"
        )
    ndim = raw[3]
    if raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE or ndim == 0:
        magic = int.from_bytes(raw[:4], "big")
        raise DataError(
            f"'{name}' is not an unsigned-byte IDX file (magic {magic}, expected e.g. 2051 for "
            "images or 2049 for labels): pass MNIST-style IDX files"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file '{name}' is truncated inside its header: re-fetch it")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected, actual = math.prod(dims), len(raw) - header
    if actual != expected:
        state = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"IDX file '{name}' declares shape {dims} ({expected} bytes) but holds {actual} "
            f"bytes of data ({state}): re-fetch it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _gunzip_if_needed(raw: bytes, name: str) -> bytes | bytearray:
    # Sniff the gzip magic instead of trusting the suffix: some mirrors serve raw files as .gz.
    if raw[:2] != _GZIP_MAGIC:
        return bytearray(raw)
    try:
        return bytearray(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"IDX file '{name}' is a damaged gzip file ({_one_line(exc)}): re-fetch it"
        ) from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) of unsigned bytes into a writable array.

    Images (magic 2051) come back as (N, H, W), labels (magic 2049) as (N,); any other number of
    dimensions is accepted too. A wrong magic, a non-ubyte type or a byte count that disagrees
    with the declared shape raises `DataError` naming the file.
    """
    path = _as_path(path)
    _require_file(path, "IDX file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file '{path}': {_one_line(exc.strerror or exc)}") from exc
    return _parse_idx(_gunzip_if_needed(raw, str(path)), str(path))


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_idx_files(folder: Path) -> bool:
    return any(_find_idx_file(folder, stem) for stem in _IDX_STEMS.values())


def _idx_pair(images: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an (N, H, W) image / (N,) label pair and put images in (N, 1, H, W) layout."""
    if images.ndim != 3:
        raise DataError(f"{what} images have shape {images.shape}: expected (N, H, W)")
    if labels.ndim != 1:
        raise DataError(f"{what} labels have shape {labels.shape}: expected (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{what} has {len(images)} images but {len(labels)} labels: the IDX files do not match"
        )
    return images[:, None], labels


def load_idx(folder: str | os.PathLike[str]) -> DataSplits:
    """Load an MNIST-style folder of IDX files (each raw or .gz).

    Needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    t10k-labels-idx1-ubyte. Normalization statistics come from the training images.
    """
    folder = _as_path(folder)
    if not folder.is_dir():
        raise DataError(f"IDX folder '{folder}' does not exist or is not a folder: check the path")
    found = {key: _find_idx_file(folder, stem) for key, stem in _IDX_STEMS.items()}
    missing = [f"{_IDX_STEMS[key]}[.gz]" for key, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"IDX folder '{folder}' lacks {', '.join(missing)}: "
            "put all four MNIST-style files there"
        )
    arrays = {key: read_idx(path) for key, path in found.items()}
    train = _idx_pair(arrays["train_images"], arrays["train_labels"], "train split")
    test = _idx_pair(arrays["test_images"], arrays["test_labels"], "test split")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(
            f"train images are {train[0].shape[2:]} but test images are {test[0].shape[2:]}: "
            "both splits must share one image size"
        )
    return _splits("mnist", _numbered_classes(train[1], test[1]), train, test)


@functools.cache
def _embedded_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the packaged MNIST t10k once per process, in the fixed embedded order."""
    root = importlib.resources.files("slimkit.data") / "embedded"
    decoded = []
    for fname in _EMBEDDED_FILES:
        try:
            raw = (root / fname).read_bytes()
        except OSError as exc:
            raise DataError(
                f"embedded data file '{fname}' is missing from the slimkit install: "
                "reinstall slimkit"
            ) from exc
        decoded.append(_parse_idx(_gunzip_if_needed(raw, fname), fname))
    images, labels = _idx_pair(decoded[0], decoded[1], "embedded data")
    # Legacy RandomState streams are frozen by NumPy's compatibility policy, so this permutation
    # (and thus the embedded split) is the same on every NumPy version.
    order = np.random.RandomState(_EMBEDDED_SEED).permutation(len(labels))
    images_t = torch.from_numpy(np.ascontiguousarray(images[order]))
    labels_t = torch.from_numpy(labels[order].astype(np.int64))
    return images_t, labels_t


def load_embedded() -> DataSplits:
    """The packaged MNIST test set, split 8000 train / 2000 test in a fixed random order.

    Needs no files outside the slimkit install. Decoding is cached per process; each call returns
    fresh copies, so callers may modify the tensors freely.
    """
    images, labels = _embedded_tensors()
    n = EMBEDDED_TRAIN_SIZE
    classes = tuple(str(d) for d in range(10))

    def make(sl: slice) -> ArrayDataset:
        return ArrayDataset(images[sl].clone(), labels[sl].clone(), classes, MNIST_MEAN, MNIST_STD)

    return DataSplits(train=make(slice(0, n)), test=make(slice(n, None)), name="mnist-embedded")
