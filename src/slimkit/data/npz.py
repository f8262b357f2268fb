"""NumPy .npz archives holding x_train, y_train, x_test, y_test (and optionally classes)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from slimkit.data.common import _as_path, _numbered_classes, _one_line, _require_file, _splits
from slimkit.data.dataset import DataSplits
from slimkit.errors import DataError

__all__ = ["load_npz"]

_CHANNEL_COUNTS = (1, 3, 4)


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
