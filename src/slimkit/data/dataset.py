"""In-memory image-classification data plus deterministic batching, splitting and sampling.

Everything random here draws from an explicit `torch.Generator` seeded from the caller's seed, so
the same arguments always give the same batches, splits and subsets, independent of global RNG
state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from slimkit.errors import ConfigError, DataError

Augment = Callable[[Tensor, Generator], Tensor]

__all__ = [
    "ArrayDataset",
    "Augment",
    "DataSplits",
    "batches",
    "calibration_subset",
    "channel_stats",
    "random_crop_flip",
    "random_shift",
    "train_val_split",
]


@dataclass
class ArrayDataset:
    """Image classification data held in memory as raw uint8 pixels.

    Attributes:
        images: (N, C, H, W) uint8 pixels.
        labels: (N,) int64 class indices into `classes`.
        classes: class names; label `i` is `classes[i]`.
        mean: per-channel mean of `images / 255`, used by `normalized`.
        std: per-channel standard deviation of `images / 255`.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        _validate(self)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def normalized(self, idx: Tensor | slice | None = None) -> Tensor:
        """Float32 `(x / 255 - mean) / std` for all samples, or those picked by `idx`."""
        x = self.images if idx is None else self.images[idx]
        shape = (1, -1, 1, 1) if x.dim() == 4 else (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32).view(shape)
        return (x.to(torch.float32).div_(255.0).sub_(mean)).div_(std)

    def first(self, n: int) -> tuple[Tensor, Tensor]:
        """The first `n` samples (or all, if fewer) as one normalized (inputs, labels) batch: the
        gradients a data-driven criterion such as Taylor importance scores from."""
        idx = torch.arange(min(n, len(self)))
        return self.normalized(idx), self.labels[idx]

    def subset(self, idx: Tensor) -> ArrayDataset:
        """A new dataset holding copies of the samples at `idx` (normalization stats kept)."""
        idx = torch.as_tensor(idx)
        return ArrayDataset(
            images=self.images[idx].clone(),
            labels=self.labels[idx].clone(),
            classes=self.classes,
            mean=self.mean,
            std=self.std,
        )

    def class_counts(self) -> Tensor:
        """Number of samples per class, (len(classes),) int64."""
        return torch.bincount(self.labels, minlength=len(self.classes))


@dataclass
class DataSplits:
    """A train/test pair and a short name for the data set (e.g. "mnist", "cifar10")."""

    train: ArrayDataset
    test: ArrayDataset
    name: str


def _validate(ds: ArrayDataset) -> None:
    """Reject malformed datasets early, with a message that says what to fix."""
    if not isinstance(ds.images, Tensor) or ds.images.dim() != 4 or ds.images.dtype != torch.uint8:
        got = (
            f"{tuple(ds.images.shape)} {ds.images.dtype}"
            if isinstance(ds.images, Tensor)
            else type(ds.images).__name__
        )
        raise DataError(f"images must be a (N, C, H, W) uint8 tensor, got {got}")
    if not isinstance(ds.labels, Tensor) or ds.labels.dim() != 1 or ds.labels.dtype != torch.int64:
        got = (
            f"{tuple(ds.labels.shape)} {ds.labels.dtype}"
            if isinstance(ds.labels, Tensor)
            else type(ds.labels).__name__
        )
        raise DataError(f"labels must be a (N,) int64 tensor, got {got}")
    if ds.images.shape[0] != ds.labels.shape[0]:
        raise DataError(
            f"{ds.images.shape[0]} images but {ds.labels.shape[0]} labels: pass one label per image"
        )
    channels = ds.images.shape[1]
    if len(ds.mean) != channels or len(ds.std) != channels:
        raise DataError(
            f"mean/std have {len(ds.mean)}/{len(ds.std)} entries for {channels} channel(s): "
            "give one value per channel"
        )
    if any(not s > 0 for s in ds.std):
        raise DataError(f"std {ds.std} must be positive in every channel")
    if len(ds.labels) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= len(ds.classes)):
        raise DataError(
            f"labels span {int(ds.labels.min())}..{int(ds.labels.max())} but there are "
            f"{len(ds.classes)} classes: labels must lie in 0..{len(ds.classes) - 1}"
        )


def channel_stats(images: Tensor | np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of `images / 255` for (N, C, H, W) uint8 pixels.

    Uses a 256-bin histogram per channel, so memory stays small even for large data sets.
    A constant channel gets std 1.0 so normalization never divides by zero.
    """
    pixels = torch.as_tensor(images)
    if pixels.dim() != 4 or pixels.dtype != torch.uint8:
        raise DataError(
            f"expected (N, C, H, W) uint8 images, got {tuple(pixels.shape)} {pixels.dtype}"
        )
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(pixels.shape[1]):
        # torch.bincount on uint8 is ~10x faster than np.bincount, which widens to int64 first.
        hist = torch.bincount(pixels[:, c].reshape(-1), minlength=256).numpy().astype(np.float64)
        total = hist.sum()
        if total == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(var**0.5 if var > 0 else 1.0)
    return tuple(means), tuple(stds)


def _generator(*seed_parts: int) -> Generator:
    """A CPU generator seeded from several integers without collisions like (1, 0) vs (0, 1)."""
    for part in seed_parts:
        if isinstance(part, bool) or not isinstance(part, int | np.integer):
            raise ConfigError(f"seed/epoch must be an integer, got {part!r}")
    # SeedSequence wants non-negative ints; wrap negatives two's-complement style.
    state = np.random.SeedSequence([int(p) % 2**64 for p in seed_parts])
    return torch.Generator().manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> 1))


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def batches(
    ds: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    augment: Augment | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield `(x, y)` batches: x float32 normalized (B, C, H, W), y int64 (B,).

    Shuffling is a function of `(seed, epoch)` only, so a resumed run sees the same order.
    `augment(x, generator)` runs on each normalized batch with its own generator, also derived
    from `(seed, epoch)`, so augmentation is reproducible too. The last batch may be smaller
    unless `drop_last`.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    n = len(ds)
    order = torch.randperm(n, generator=_generator(seed, epoch, 0)) if shuffle else None
    aug_gen = _generator(seed, epoch, 1) if augment is not None else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        idx = order[start:end] if order is not None else slice(start, end)
        x = ds.normalized(idx)
        if augment is not None:
            x = augment(x, aug_gen)
        yield x, ds.labels[idx]


def random_crop_flip(padding: int = 4) -> Augment:
    """Standard CIFAR augmentation: zero-pad, random crop back to size, random horizontal flip.

    Works on a normalized (B, C, H, W) float batch; each sample gets its own crop offset and flip
    drawn from the generator passed at call time, so results are reproducible. Padding is zero in
    normalized space, i.e. the data-set mean colour.
    """
    return _translate("random_crop_flip", padding, flip=True, fill="zero")


def random_shift(pixels: int = 2) -> Augment:
    """Translate each image by a random (dy, dx) in [-pixels, pixels]², no mirroring: the
    "jitter" of digit nets (Hinton et al. 2015 shift MNIST by up to 2 pixels), where a mirrored
    digit is another symbol. The shifted-in border repeats the edge pixels (the background of a
    digit) rather than the data-set mean, which on MNIST would be a grey frame."""
    return _translate("random_shift", pixels, flip=False, fill="edge")


def _translate(name: str, pad: int, flip: bool, fill: str) -> Augment:
    if isinstance(pad, bool) or not isinstance(pad, int | np.integer) or pad < 0:
        raise ConfigError(f"{name}: padding must be a non-negative integer, got {pad!r}")
    pad = int(pad)
    mode = "replicate" if fill == "edge" else "constant"

    def augment(x: Tensor, generator: Generator) -> Tensor:
        if x.dim() != 4:
            raise DataError(f"{name} expects a (B, C, H, W) batch, got {tuple(x.shape)}")
        b, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode=mode) if pad else x
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        cols = torch.arange(w)[None, :].expand(b, w)
        if flip:  # a flip is reading the cropped columns right to left: one gather does both
            mirrored = torch.rand(b, generator=generator) < 0.5
            cols = torch.where(mirrored[:, None], cols.flip(1), cols)
        cols = cols + dx[:, None]
        rows = torch.arange(h)[None, :] + dy[:, None]
        bi = torch.arange(b)[:, None, None, None]
        ci = torch.arange(c)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    return augment


def _per_class_indices(ds: ArrayDataset, generator: Generator) -> list[Tensor]:
    """For each class, its sample indices in a random (generator-driven) order."""
    out = []
    for cls in range(len(ds.classes)):
        members = torch.nonzero(ds.labels == cls, as_tuple=True)[0]
        out.append(members[torch.randperm(len(members), generator=generator)])
    return out


def _proportional_quotas(counts: list[int], total: int) -> list[int]:
    """Split `total` across classes in proportion to `counts` (largest-remainder rounding)."""
    n = sum(counts)
    exact = [c * total / n for c in counts]
    quotas = [int(e) for e in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in by_remainder[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def train_val_split(
    ds: ArrayDataset, val_fraction: float = 0.1, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Split into (train, val), stratified by class and deterministic in `seed`.

    The validation set gets `round(len(ds) * val_fraction)` samples (at least one, leaving at
    least one for training), spread over classes in proportion to their sizes.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise ConfigError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    if len(ds) < 2:
        raise DataError(f"cannot split a dataset of {len(ds)} sample(s): need at least 2")
    n_val = min(max(round(len(ds) * float(val_fraction)), 1), len(ds) - 1)
    per_class = _per_class_indices(ds, _generator(seed))
    quotas = _proportional_quotas([len(m) for m in per_class], n_val)
    val_idx = torch.cat([m[:q] for m, q in zip(per_class, quotas, strict=True)])
    train_idx = torch.cat([m[q:] for m, q in zip(per_class, quotas, strict=True)])
    return ds.subset(train_idx.sort().values), ds.subset(val_idx.sort().values)


def _balanced_quotas(counts: list[int], n: int) -> list[int]:
    """Give each class an equal share of `n`, capped by its size; leftovers go to larger classes."""
    quotas = [0] * len(counts)
    remaining = n
    while remaining > 0:
        open_classes = [i for i, c in enumerate(counts) if quotas[i] < c]
        share = remaining // len(open_classes)
        if share == 0:
            # Fewer samples left than classes: one each to the first classes, in class order.
            for i in open_classes[:remaining]:
                quotas[i] += 1
            break
        for i in open_classes:
            take = min(share, counts[i] - quotas[i])
            quotas[i] += take
            remaining -= take
    return quotas


def calibration_subset(ds: ArrayDataset, n: int = 256, seed: int = 0) -> ArrayDataset:
    """A class-balanced random subset of `n` samples, deterministic in `seed`.

    Each class contributes about `n / num_classes` samples; classes too small to do so give all
    they have and the rest is spread over the others. `n >= len(ds)` returns a copy of everything.
    """
    n = _check_positive_int("n", n)
    if n >= len(ds):
        return ds.subset(torch.arange(len(ds)))
    per_class = _per_class_indices(ds, _generator(seed))
    quotas = _balanced_quotas([len(m) for m in per_class], n)
    idx = torch.cat([m[:q] for m, q in zip(per_class, quotas, strict=True)])
    return ds.subset(idx.sort().values)


def resized(ds: ArrayDataset, size: tuple[int, int]) -> ArrayDataset:
    """`ds` with every image resampled to `size` = (H, W): bilinear, antialiased when shrinking
    (how a camera pipeline would feed a smaller input)."""
    if ds.sample_shape[1:] == tuple(size):
        return ds
    chunks = [
        F.interpolate(
            ds.images[i : i + 4096].float(), size=tuple(size), mode="bilinear", antialias=True
        )
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for i in range(0, len(ds), 4096)
    ]  # 4096 at a time: a float copy of all of CIFAR-10 would be 600 MB
    return ArrayDataset(torch.cat(chunks), ds.labels, ds.classes, ds.mean, ds.std)


def scaled_size(ds: ArrayDataset, scale: float) -> tuple[int, int]:
    """(H, W) of `ds`'s images times `scale`, rounded, at least 1 pixel."""
    _, h, w = ds.sample_shape
    return max(1, round(h * scale)), max(1, round(w * scale))
