"""What the data loaders share: path checks, the cache folder and building `DataSplits`.

Private to `slimkit.data`; the public names are re-exported from the package.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slimkit.data.dataset import ArrayDataset, DataSplits, channel_stats
from slimkit.errors import DataError


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
