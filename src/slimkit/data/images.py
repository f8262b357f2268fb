"""Image-folder trees (train/<class>/*.png|jpg, test/<class>/...), decoded once and cached.

The decoded arrays go under `cache_dir()`, never next to the user's files, and are written via a
temporary name and an atomic rename.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from slimkit.data.common import _as_path, _one_line, _splits, cache_dir
from slimkit.data.dataset import DataSplits, channel_stats
from slimkit.errors import DataError
from slimkit.files import atomic_write

__all__ = ["load_image_folder"]

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
        atomic_write(path, lambda f: np.savez(f, **arrays))
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
