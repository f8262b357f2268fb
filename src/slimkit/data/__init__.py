"""Image-classification data for slimkit: in-memory datasets, loaders and batching.

`load_embedded()` gives a small MNIST split that ships with slimkit and needs no files or network;
`load(path)` reads IDX folders, .npz files, image-folder trees and tarballs of them. All loaders
return `DataSplits` of uint8 `ArrayDataset`s; `batches` turns one into normalized float batches
with deterministic shuffling and optional augmentation.
"""

from slimkit.data.common import cache_dir
from slimkit.data.dataset import (
    ArrayDataset,
    Augment,
    DataSplits,
    batches,
    calibration_subset,
    channel_stats,
    random_crop_flip,
    random_shift,
    resized,
    scaled_size,
    train_val_split,
)
from slimkit.data.idx import MNIST_MEAN, MNIST_STD, load_embedded, load_idx, read_idx
from slimkit.data.images import load_image_folder
from slimkit.data.loaders import ACCEPTED_FORMS, load
from slimkit.data.npz import load_npz
from slimkit.data.tarball import unpack_tarball

__all__ = [
    "ACCEPTED_FORMS",
    "MNIST_MEAN",
    "MNIST_STD",
    "ArrayDataset",
    "Augment",
    "DataSplits",
    "batches",
    "cache_dir",
    "calibration_subset",
    "channel_stats",
    "load",
    "load_embedded",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "random_crop_flip",
    "random_shift",
    "read_idx",
    "resized",
    "scaled_size",
    "train_val_split",
    "unpack_tarball",
]
