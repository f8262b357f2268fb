"""Read image-classification data from disk: IDX (MNIST), .npz, image folders and tarballs.

Every loader returns `DataSplits` of uint8 `ArrayDataset`s. Bad input raises `DataError` with a
one-line message. Nothing here writes next to the user's files: decoded image folders and unpacked
tarballs go under `cache_dir()`, always via a temporary name and an atomic rename.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import math
import os
import re
import shutil
import struct
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from slimkit.data.dataset import ArrayDataset, DataSplits, channel_stats
from slimkit.errors import DataError

__all__ = [
    "ACCEPTED_FORMS",
    "MNIST_MEAN",
    "MNIST_STD",
    "cache_dir",
    "load",
    "load_embedded",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "read_idx",
    "unpack_tarball",
]

ACCEPTED_FORMS = (
    "pass a folder of IDX files, an .npz file (x_train, y_train, x_test, y_test), "
    "a .tar.gz/.tgz of an image-folder tree, or an image-folder tree "
    "(train/<class>/*.png|jpg, test/<class>/...)"
)

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

_CHANNEL_COUNTS = (1, 3, 4)
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Bump when the image-folder cache layout changes so stale caches are ignored.
_IMAGE_CACHE_VERSION = 2
_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "mean", "std")
_UNPACK_MARKER = ".slimkit-unpacked"
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


# --------------------------------------------------------------------------------------------
# helpers


def _one_line(text: object) -> str:
    """Collapse an exception message to one line so DataError messages stay one line."""
    return " ".join(str(text).split())


def _as_path(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser()


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} '{path}' does not exist: check the path")
    if not path.is_file():
        raise DataError(f"{what} '{path}' is not a file: pass the file itself")


def _write_atomic(path: Path, write) -> None:
    """Call `write(file)` on a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _splits(
    name: str,
    classes: tuple[str, ...],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> DataSplits:
    """Build DataSplits from (N, C, H, W) uint8 arrays; stats come from train unless given."""
    if mean is None or std is None:
        mean, std = channel_stats(train[0])

    def make(images: np.ndarray, labels: np.ndarray) -> ArrayDataset:
        return ArrayDataset(
            images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
            labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            classes=classes,
            mean=mean,
            std=std,
        )

    return DataSplits(train=make(*train), test=make(*test), name=name)


def _numbered_classes(*label_arrays: np.ndarray) -> tuple[str, ...]:
    top = max((int(a.max()) for a in label_arrays if a.size), default=-1)
    return tuple(str(i) for i in range(top + 1))


def cache_dir() -> Path:
    """slimkit's cache folder, created on demand.

    `$SLIMKIT_CACHE` if set, else `$XDG_CACHE_HOME/slimkit` (absolute paths only, per the XDG
    spec), else `~/.cache/slimkit`.
    """
    env = os.environ.get("SLIMKIT_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if env:
        path = Path(env).expanduser()
    elif xdg and Path(xdg).is_absolute():
        path = Path(xdg) / "slimkit"
    else:
        path = Path.home() / ".cache" / "slimkit"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create cache folder '{path}' ({_one_line(exc.strerror or exc)}): "
            "set SLIMKIT_CACHE to a writable folder"
        ) from exc
    return path


# --------------------------------------------------------------------------------------------
# IDX (MNIST)


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


# --------------------------------------------------------------------------------------------
# .npz


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Convert an image array in (N,H,W), (N,H,W,C) or (N,C,H,W) layout to (N,C,H,W) uint8."""
    if x.dtype == np.uint8:
        pixels = x
    elif np.issubdtype(x.dtype, np.floating):
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DataError(
                f"'{path}' key {key}: float images must lie in [0, 1]; store uint8 pixels instead"
            )
        pixels = np.rint(x * 255.0).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer) and (not x.size or (x.min() >= 0 and x.max() <= 255)):
        pixels = x.astype(np.uint8)
    else:
        raise DataError(
            f"'{path}' key {key} has dtype {x.dtype}: store uint8 pixels or floats in [0, 1]"
        )
    if pixels.ndim == 3:
        return pixels[:, None]
    if pixels.ndim == 4:
        # Channels-first wins only when dim 1 looks like channels and the last dim does not.
        last_is_channel = pixels.shape[-1] in _CHANNEL_COUNTS
        if last_is_channel and pixels.shape[1] not in _CHANNEL_COUNTS:
            return pixels.transpose(0, 3, 1, 2)
        if pixels.shape[1] in _CHANNEL_COUNTS:
            return pixels
    raise DataError(
        f"'{path}' key {key} has shape {x.shape}: expected (N, H, W), (N, H, W, C) or "
        "(N, C, H, W) with C in 1, 3 or 4"
    )


def _npz_labels(y: np.ndarray, key: str, path: Path, count: int) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"'{path}' key {key} has shape {y.shape} dtype {y.dtype}: expected (N,) integer labels"
        )
    if len(y) != count:
        raise DataError(f"'{path}' key {key} has {len(y)} labels for {count} images: match them")
    if y.size and y.min() < 0:
        raise DataError(f"'{path}' key {key} has negative labels: use class indices 0..K-1")
    return y.astype(np.int64)


def _npz_classes(npz: np.lib.npyio.NpzFile, path: Path, *labels: np.ndarray) -> tuple[str, ...]:
    numbered = _numbered_classes(*labels)
    if "classes" not in npz.files:
        return numbered
    names = npz["classes"]
    if names.ndim != 1 or len(names) < len(numbered):
        raise DataError(
            f"'{path}' key classes must be a 1-D list of at least {len(numbered)} names"
        )
    return tuple(str(n) for n in names)


def load_npz(path: str | os.PathLike[str]) -> DataSplits:
    """Load an .npz with x_train, y_train, x_test, y_test (and optionally classes).

    Images may be (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or float in [0, 1]. Normalization
    statistics come from x_train. Never unpickles.
    """
    path = _as_path(path)
    _require_file(path, "npz file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read '{path}' as .npz ({_one_line(exc)}): pass an .npz file"
        ) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"'{path}' is a single .npy array, not an .npz archive: use np.savez")
    with npz:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
        if missing:
            raise DataError(
                f"'{path}' lacks key(s) {', '.join(missing)}: save x_train, y_train, x_test, y_test"
            )
        try:
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            x_train = _npz_images(arrays["x_train"], "x_train", path)
            x_test = _npz_images(arrays["x_test"], "x_test", path)
            y_train = _npz_labels(arrays["y_train"], "y_train", path, len(x_train))
            y_test = _npz_labels(arrays["y_test"], "y_test", path, len(x_test))
            classes = _npz_classes(npz, path, y_train, y_test)
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read arrays from '{path}': {_one_line(exc)}") from exc
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"'{path}': train samples are {x_train.shape[1:]} but test samples are "
            f"{x_test.shape[1:]}: both splits must share one (C, H, W)"
        )
    return _splits(path.stem, classes, (x_train, y_train), (x_test, y_test))


# --------------------------------------------------------------------------------------------
# image folders


class _ImageFile(NamedTuple):
    path: str  # plain strings: building 60k Path objects costs more than the warm load itself
    rel: str  # "<split>/<class>/<name>", what the cache key hashes
    label: int
    mtime_ns: int
    size: int


def _list_images(split_dir: Path, classes: tuple[str, ...]) -> list[_ImageFile]:
    """Every image under split_dir/<class>/, by class then file name."""
    out = []
    for label, cls in enumerate(classes):
        class_dir = split_dir / cls
        if not class_dir.is_dir():
            continue
        with os.scandir(class_dir) as entries:
            found = [
                e
                for e in entries
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in _IMAGE_SUFFIXES
                and e.is_file()
            ]
        for entry in sorted(found, key=lambda e: e.name):
            st = entry.stat()
            rel = f"{split_dir.name}/{cls}/{entry.name}"
            out.append(_ImageFile(entry.path, rel, label, st.st_mtime_ns, st.st_size))
    return out


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _folder_cache_key(root: Path, files: list[_ImageFile]) -> str:
    """Hash of what decides the decoded content: location, file list, sizes and newest mtime."""
    h = hashlib.sha256()
    h.update(f"v{_IMAGE_CACHE_VERSION}\0{root.resolve()}\0{len(files)}\0".encode())
    h.update(f"{max(f.mtime_ns for f in files)}\0{sum(f.size for f in files)}\0".encode())
    h.update("\0".join(f"{f.rel}\0{f.label}" for f in files).encode())
    return h.hexdigest()[:20]


def _decode_image(path: str) -> np.ndarray:
    """Decode one image to (H, W) for grayscale or (H, W, 3) for anything else."""
    try:
        with Image.open(path) as im:
            if im.mode in _GRAY_MODES:
                return np.asarray(im.convert("L"))
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"cannot decode image '{path}' ({_one_line(exc)}): replace or remove it"
        ) from exc


def _decode_all(files: list[_ImageFile]) -> np.ndarray:
    """Decode images into one (N, C, H, W) uint8 array; all must share one size.

    Decoding is serial on purpose: measured on 60k 32x32 CIFAR JPEGs, one thread takes ~4 s while
    a thread pool is slower (per-image work is mostly GIL-bound Python) and a process pool gains
    only ~20% on 2 cores at the cost of fork/spawn hazards next to torch.
    """
    decoded: list[np.ndarray] = []
    first_path, size = files[0].path, None
    for path in (f.path for f in files):
        arr = _decode_image(path)
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise DataError(
                f"image '{path}' is {arr.shape[1]}x{arr.shape[0]} but '{first_path}' is "
                f"{size[1]}x{size[0]}: resize all images to one size"
            )
        decoded.append(arr)
    if all(a.ndim == 2 for a in decoded):
        return np.stack(decoded)[:, None]
    # Mixed grey and colour: grey images become RGB by repeating the channel (as Pillow does).
    rgb = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in decoded]
    return np.ascontiguousarray(np.stack(rgb).transpose(0, 3, 1, 2))


def _read_folder_cache(path: Path, n_train: int, n_test: int) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or unusable (then we simply decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _CACHE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or x.ndim != 4 or len(x) != n or y.shape != (n,):
            return None
    channels = arrays["train_x"].shape[1]
    if arrays["mean"].shape != (channels,) or arrays["std"].shape != (channels,):
        return None
    return arrays


def _write_folder_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Uncompressed on purpose: loading 180 MB of raw npz is far faster than inflating it.
    try:
        _write_atomic(path, lambda f: np.savez(f, **arrays))
    except OSError as exc:
        # The data is decoded already; a cache we cannot write only costs speed next time.
        warnings.warn(
            f"could not write image cache '{path}': {_one_line(exc)}", RuntimeWarning, stacklevel=3
        )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "images"


def _dataset_name(root: Path, classes: tuple[str, ...]) -> str:
    # Recognise CIFAR-10 by its classes so callers can key on "cifar10" whatever the folder name.
    return "cifar10" if classes == _CIFAR10_CLASSES else _slug(root.name)


def load_image_folder(root: str | os.PathLike[str]) -> DataSplits:
    """Load root/train/<class>/*.{jpg,jpeg,png} and root/test/<class>/... (classes sorted).

    Images are decoded with Pillow to RGB, or to single-channel grey when every image is grey,
    and must all share one size. The decoded arrays are cached as an uncompressed .npz under
    `cache_dir()`, keyed by the folder's resolved path, file list, sizes and newest mtime, so a
    second load of an unchanged folder skips decoding.
    """
    root = _as_path(root)
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist or is not a folder: check the path")
    train_dir, test_dir = root / "train", root / "test"
    missing = [d.name for d in (train_dir, test_dir) if not d.is_dir()]
    if missing:
        raise DataError(
            f"image folder '{root}' has no {' or '.join(missing)}/ subfolder: "
            "lay it out as train/<class>/*.png and test/<class>/*.png"
        )
    classes = tuple(_class_dirs(train_dir))
    if not classes:
        raise DataError(f"'{train_dir}' has no class subfolders: add train/<class>/ folders")
    unknown = sorted(set(_class_dirs(test_dir)) - set(classes))
    if unknown:
        raise DataError(
            f"'{test_dir}' has class folder(s) {', '.join(unknown)} not in train/: "
            "use the same class names in both"
        )
    train_files, test_files = _list_images(train_dir, classes), _list_images(test_dir, classes)
    for split, files in (("train", train_files), ("test", test_files)):
        if not files:
            raise DataError(f"'{root / split}' holds no .jpg/.jpeg/.png images: add some")
    all_files = train_files + test_files
    key = _folder_cache_key(root, all_files)
    cache_path = cache_dir() / "image-folders" / f"{_slug(root.name)}-{key}.npz"
    arrays = _read_folder_cache(cache_path, len(train_files), len(test_files))
    if arrays is None:
        images = _decode_all(all_files)
        labels = np.array([f.label for f in all_files], dtype=np.int64)
        n = len(train_files)
        mean, std = channel_stats(images[:n])
        arrays = {
            "train_x": images[:n],
            "train_y": labels[:n],
            "test_x": images[n:],
            "test_y": labels[n:],
            "mean": np.array(mean, dtype=np.float64),
            "std": np.array(std, dtype=np.float64),
        }
        _write_folder_cache(cache_path, arrays)
    return _splits(
        _dataset_name(root, classes),
        classes,
        (arrays["train_x"], arrays["train_y"]),
        (arrays["test_x"], arrays["test_y"]),
        mean=tuple(float(m) for m in arrays["mean"]),
        std=tuple(float(v) for v in arrays["std"]),
    )


# --------------------------------------------------------------------------------------------
# tarballs


def _tarball_stem(path: Path) -> str:
    name = path.name
    for suffix in _TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_tarball_name(name: str) -> bool:
    return name.lower().endswith(_TAR_SUFFIXES)


def _unsafe_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or bool(re.match(r"^[A-Za-z]:", name))


def _check_member(member: tarfile.TarInfo, tar_path: Path, filter_available: bool) -> None:
    """Refuse members that could write outside the destination or create special files."""
    problem = None
    if _unsafe_name(member.name):
        problem = "an absolute path or '..'"
    elif member.isdev() or member.isfifo():
        problem = "a device or FIFO"
    elif member.issym() or member.islnk():
        if not filter_available:
            problem = "a link (this Python lacks tarfile's safe 'data' filter)"
        elif _unsafe_name(member.linkname):
            problem = f"a link to '{member.linkname}'"
    if problem:
        raise DataError(
            f"tarball '{tar_path}' has unsafe member '{member.name}' ({problem}): "
            "refusing to extract it; repack it with relative paths only"
        )


def _split_root_in_names(names: list[str]) -> str | None:
    """The shallowest prefix P (at most two levels deep, like `_find_split_root`) with both
    P/train and P/test among the member names."""
    seen: dict[tuple[str, ...], set[str]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        for i, part in enumerate(parts[:3]):
            if part in ("train", "test"):
                seen.setdefault(parts[:i], set()).add(part)
    roots = [p for p, splits in seen.items() if splits == {"train", "test"}]
    return "/".join(min(roots, key=len)) if roots else None


def _find_split_root(folder: Path, depth: int = 2) -> Path | None:
    """`folder`, or a folder up to `depth` levels below it, that holds train/ and test/."""
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    if depth == 0:
        return None
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = _find_split_root(child, depth - 1)
        if found is not None:
            return found
    return None


def _extract(tar_path: Path, into: Path) -> None:
    filter_available = hasattr(tarfile, "data_filter")
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, tar_path, filter_available)
            if _split_root_in_names([m.name for m in members]) is None:
                raise DataError(
                    f"tarball '{tar_path}' has no train/ and test/ folders: pack an image-folder "
                    "tree (train/<class>/..., test/<class>/...)"
                )
            if filter_available:
                tar.extractall(into, members=members, filter="data")
            else:
                tar.extractall(into, members=members)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot unpack tarball '{tar_path}' ({_one_line(exc)}): re-fetch it"
        ) from exc


def _tarball_stamp(tar_path: Path) -> str:
    st = tar_path.stat()
    return f"{tar_path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n"


def _marker_matches(dest: Path, stamp: str) -> bool:
    try:
        return (dest / _UNPACK_MARKER).read_text() == stamp
    except OSError:
        return False


def _move_into_place(tmp: Path, dest: Path, stamp: str) -> None:
    """Rename the finished extraction to `dest`, replacing a stale slimkit unpack if present."""
    stale = None
    if dest.exists():
        stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
        os.replace(dest, stale)
    try:
        os.replace(tmp, dest)
    except OSError:
        # Another process finished the same unpack first; theirs is as good as ours.
        if not _marker_matches(dest, stamp):
            raise
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def unpack_tarball(
    tar_path: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None
) -> Path:
    """Safely unpack an image-folder tarball and return the folder holding train/ and test/.

    Unpacks into `dest` (default `cache_dir()/<tarball stem>`) via a temporary folder beside it
    and a rename, so a crash never leaves a half-unpacked tree. Members with absolute paths, '..',
    escaping links or device files are refused. A tree this function already unpacked from the
    same (unchanged) tarball is returned without extracting again.
    """
    tar_path = _as_path(tar_path)
    _require_file(tar_path, "tarball")
    dest = _as_path(dest) if dest is not None else cache_dir() / _tarball_stem(tar_path)
    stamp = _tarball_stamp(tar_path)
    if not _marker_matches(dest, stamp):
        if dest.exists() and not (dest / _UNPACK_MARKER).exists():
            raise DataError(
                f"'{dest}' already exists and was not unpacked by slimkit: "
                "pass another dest or remove it"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            _extract(tar_path, tmp)
            (tmp / _UNPACK_MARKER).write_text(stamp)
            _move_into_place(tmp, dest, stamp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    root = _find_split_root(dest)
    if root is None:
        raise DataError(f"unpacked tarball '{dest}' has no train/ and test/ folders: remove it")
    return root


# --------------------------------------------------------------------------------------------
# auto-detect


def load(path: str | os.PathLike[str]) -> DataSplits:
    """Load data from `path`, detecting its form.

    A folder of IDX files → `load_idx`; `*.npz` → `load_npz`; `*.tar.gz`/`*.tgz`/`*.tar` →
    `unpack_tarball` then `load_image_folder`; a folder with train/ and test/ (or one a level or
    two below) → `load_image_folder`.
    """
    path = _as_path(path)
    if not path.exists():
        raise DataError(f"data path '{path}' does not exist: {ACCEPTED_FORMS}")
    if path.is_dir():
        if _has_idx_files(path):
            return load_idx(path)
        root = _find_split_root(path)
        if root is not None:
            return load_image_folder(root)
        raise DataError(
            f"data folder '{path}' holds neither IDX files nor train/ and test/: {ACCEPTED_FORMS}"
        )
    if path.name.lower().endswith(".npz"):
        return load_npz(path)
    if _is_tarball_name(path.name):
        return load_image_folder(unpack_tarball(path))
    raise DataError(f"unrecognised data file '{path}': {ACCEPTED_FORMS}")
