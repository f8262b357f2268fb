"""Read image-classification data from disk, detecting its form: see `load`.

The formats live in their own modules: `idx` (MNIST IDX files and the embedded MNIST split),
`npz`, `images` (image-folder trees) and `tarball`; `common` holds what they share. Every loader
returns `DataSplits` of uint8 `ArrayDataset`s, and bad input raises `DataError` with a one-line
message. Nothing writes next to the user's files: decoded image folders and unpacked tarballs go
under `cache_dir()`, always via a temporary name and an atomic rename.
"""

from __future__ import annotations

import os

from slimkit.data.common import _as_path, _find_split_root
from slimkit.data.dataset import DataSplits
from slimkit.data.idx import _has_idx_files, load_idx
from slimkit.data.images import load_image_folder
from slimkit.data.npz import load_npz
from slimkit.data.tarball import _is_tarball_name, unpack_tarball
from slimkit.errors import DataError

__all__ = ["ACCEPTED_FORMS", "load"]

ACCEPTED_FORMS = (
    "pass a folder of IDX files, an .npz file (x_train, y_train, x_test, y_test), "
    "a .tar.gz/.tgz of an image-folder tree, or an image-folder tree "
    "(train/<class>/*.png|jpg, test/<class>/...)"
)


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
