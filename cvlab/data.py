"""Datasets in tensor form, image folders, splits, and a tensor-resident loader.

Every dataset here is an :class:`ImageDataset`: ``images`` (uint8, N x C x H x W), ``labels``
(int64, N) and ``classes`` (names). Small image datasets fit in memory many times over
(Fashion-MNIST is 47 MB as uint8), so the fast path keeps them as one tensor on the compute
device and augments whole batches at once (:class:`TensorLoader`). Folders of your own images
(:func:`image_folder`, :func:`read_image`, :func:`dataloader` for large ones) live in
:mod:`cvlab.folders` and are re-exported here.
"""
from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import config
from .preprocess import Preprocess

__all__ = [
    "ImageDataset", "DATASETS", "load", "image_folder", "split", "subset",
    "TensorLoader", "pad_crop", "dataloader", "SAMPLE_IMAGES", "sample_image",
    "IMAGE_EXTENSIONS", "read_image", "image_files", "load_images",
]

# Where Debian's `dataset-fashion-mnist` package puts the original gzip files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_SAMPLE = "fashion_mnist_sample.npz"
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class ImageDataset(Dataset):
    """An in-memory image classification dataset: uint8 images (N, C, H, W), int64 labels, class names."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], *,
                 name: str = "", source: str = "", paths: Sequence[str] | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor of shape (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise ValueError(f"labels must be an int64 tensor of shape ({len(images)},); got {labels.dtype} {tuple(labels.shape)}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"labels must lie in [0, {len(classes)}) for {len(classes)} classes; "
                             f"got min {labels.min().item()} max {labels.max().item()}")
        self.images, self.labels, self.classes = images, labels, list(classes)
        self.name, self.source = name, source
        self.paths = list(paths) if paths is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def take(self, indices) -> ImageDataset:
        """A new dataset holding only ``indices`` (in that order)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        return ImageDataset(self.images[idx], self.labels[idx], self.classes,
                            name=self.name, source=self.source, paths=paths)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        origin = f", source={self.source!r}" if self.source else ""
        return f"ImageDataset({self.name or 'unnamed'}: {n} images {c}x{h}x{w}, {self.num_classes} classes{origin})"


# ---------------------------------------------------------------------------------------------
# Named datasets
# ---------------------------------------------------------------------------------------------

def _from_torchvision(tv, name: str, source: str) -> ImageDataset:
    images = torch.as_tensor(np.asarray(tv.data))
    if images.ndim == 3:  # (N, H, W) gray, as MNIST-like sets store it
        images = images.unsqueeze(1)
    else:  # (N, H, W, C), as CIFAR stores it
        images = images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(tv.targets), dtype=torch.int64)
    return ImageDataset(images.contiguous(), labels, tv.classes, name=name, source=source)


def _offline(name: str, cls_name: str, root: Path, extra: str = "") -> RuntimeError:
    return RuntimeError(
        f"could not load dataset {name!r}: it is not in the cache {root / cls_name} and the download failed "
        f"(no internet?). Three ways to get it:\n"
        f"  1. connect to the internet and call cvlab.data.load({name!r}) again; torchvision downloads it into {root};\n"
        f"  2. copy the original files into {root / cls_name / 'raw'} (torchvision's layout) from a machine that has them;\n"
        f"  3. set CVLAB_DATA to a folder that already holds {cls_name}/ (e.g. a shared drive or Colab's Drive)."
        + (f"\n{extra}" if extra else ""))


def _try_torchvision(cls, root: Path, train: bool, download: bool):
    try:
        return cls(str(root), train=train, download=download)
    except Exception as e:  # offline downloads raise URLError, RuntimeError or OSError depending on where they fail
        if not download and not isinstance(e, RuntimeError):
            raise
        return None


def _install_debian_files(root: Path) -> bool:
    """Copy Debian's Fashion-MNIST files into torchvision's layout under ``root``; False if absent."""
    sources = [DEBIAN_FASHION_MNIST / f"{f}.gz" for f in _FASHION_FILES]
    if not all(p.is_file() for p in sources):
        return False
    from torchvision.datasets.utils import extract_archive
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=raw) as tmp:  # unpack beside, then rename: no half-written cache
        for src in sources:
            extract_archive(str(src), tmp)
        for f in _FASHION_FILES:
            os.replace(Path(tmp) / f, raw / f)
    return True


def _fashion_mnist_sample(split: str) -> ImageDataset | None:
    path = config.REPO_ROOT / "datasets" / FASHION_MNIST_SAMPLE if config.REPO_ROOT else None
    if path is None or not path.is_file():
        return None
    from torchvision.datasets import FashionMNIST
    with np.load(path) as z:
        images, labels = torch.from_numpy(z[f"{split}_images"]), torch.from_numpy(z[f"{split}_labels"]).long()
    warnings.warn(f"Fashion-MNIST: using the embedded {len(labels)}-image sample in {path}, not the full dataset. "
                  "Install Debian's dataset-fashion-mnist or go online for all 70,000 images.", stacklevel=3)
    return ImageDataset(images.unsqueeze(1), labels, FashionMNIST.classes,
                        name="fashion_mnist", source=f"embedded sample {path.name}")


def _load_fashion_mnist(split: str, root: Path) -> ImageDataset:
    from torchvision.datasets import FashionMNIST
    train = split == "train"
    tv = _try_torchvision(FashionMNIST, root, train, download=False)
    if tv is not None:
        return _from_torchvision(tv, "fashion_mnist", f"cache {root / 'FashionMNIST'}")
    if _install_debian_files(root):
        tv = FashionMNIST(str(root), train=train, download=False)
        return _from_torchvision(tv, "fashion_mnist", f"Debian package files in {DEBIAN_FASHION_MNIST}")
    if not _offline_only():
        tv = _try_torchvision(FashionMNIST, root, train, download=True)
        if tv is not None:
            return _from_torchvision(tv, "fashion_mnist", "torchvision download")
    sample = _fashion_mnist_sample(split)
    if sample is not None:
        return sample
    raise _offline("fashion_mnist", "FashionMNIST", root,
                   "On Debian/Ubuntu, `sudo apt-get install dataset-fashion-mnist` installs it too.")


def _loader_for(cls_name: str, name: str):
    def load_named(split: str, root: Path) -> ImageDataset:
        import torchvision.datasets as tvd
        cls = getattr(tvd, cls_name)
        train = split == "train"
        tv = _try_torchvision(cls, root, train, download=False)
        if tv is None and not _offline_only():
            tv = _try_torchvision(cls, root, train, download=True)
        if tv is None:
            raise _offline(name, cls_name if cls_name != "CIFAR10" else "cifar-10-batches-py", root)
        return _from_torchvision(tv, name, f"torchvision {cls_name} in {root}")
    return load_named


def _offline_only() -> bool:
    return os.environ.get("CVLAB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


DATASETS = {
    "fashion_mnist": _load_fashion_mnist,
    "mnist": _loader_for("MNIST", "mnist"),
    "cifar10": _loader_for("CIFAR10", "cifar10"),
}


def load(name: str, split: str = "train", *, root: str | Path | None = None) -> ImageDataset:
    """Load a named dataset split ("train" or "test") into memory.

    Fashion-MNIST is looked for in the data root's cache, then in the files of Debian's
    ``dataset-fashion-mnist`` package, then downloaded by torchvision, and last taken from the
    embedded 3,000-image sample in ``datasets/`` (with a warning). Set ``CVLAB_OFFLINE=1`` to skip
    download attempts.
    """
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}. "
                         "For your own images use cvlab.data.image_folder(path).")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r} for {name!r}; use 'train' or 'test' (make a validation set with cvlab.data.split).")
    return DATASETS[key](split, Path(root) if root is not None else config.data_root())


# ---------------------------------------------------------------------------------------------
# Splits and subsets
# ---------------------------------------------------------------------------------------------

def split(dataset: ImageDataset, val_fraction: float = 0.2, *, stratify: bool = True,
          seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Split into (train, val); stratified keeps each class's share equal in both."""
    from sklearn.model_selection import train_test_split
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive); got {val_fraction}")
    idx = np.arange(len(dataset))
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, shuffle=True,
                                          stratify=dataset.labels.numpy() if stratify else None)
    return dataset.take(np.sort(train_idx)), dataset.take(np.sort(val_idx))


def subset(dataset: ImageDataset, n_per_class: int | None = None, *, n: int | None = None,
           seed: int = 0) -> ImageDataset:
    """A random subset: ``n_per_class`` images of every class (balanced), or ``n`` images in total."""
    if (n_per_class is None) == (n is None):
        raise ValueError("give exactly one of n_per_class or n")
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    if n is not None:
        if not 0 < n <= len(dataset):
            raise ValueError(f"n must be in [1, {len(dataset)}]; got {n}")
        return dataset.take(np.sort(rng.choice(len(dataset), size=n, replace=False)))
    counts = np.bincount(labels, minlength=dataset.num_classes)
    if n_per_class < 1 or n_per_class > counts.min():
        raise ValueError(f"n_per_class must be in [1, {counts.min()}] (the smallest class has {counts.min()} images); got {n_per_class}")
    picks = [rng.choice(np.flatnonzero(labels == c), size=n_per_class, replace=False) for c in range(dataset.num_classes)]
    return dataset.take(np.sort(np.concatenate(picks)))


# ---------------------------------------------------------------------------------------------
# Loading batches
# ---------------------------------------------------------------------------------------------

def pad_crop(x: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor,
             flip: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-pad a batch by ``padding``, crop each image back to its size at offsets (dy, dx) in [0, 2*padding],
    and mirror the images where ``flip`` (bool, (B,)) is set.

    The batched equivalent of torchvision's ``RandomCrop(size, padding=padding)`` followed by a
    horizontal flip, for given offsets: one ``gather`` for the whole batch, on any device, no host sync.
    """
    b, c, h, w = x.shape
    if padding:
        x = torch.nn.functional.pad(x, (padding,) * 4)
    width = w + 2 * padding
    cols = torch.arange(w, device=x.device).expand(b, w)
    if flip is not None:
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (B, H)
    cols = cols + dx[:, None]                                       # (B, W)
    index = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


class TensorLoader:
    """Batches from an in-memory dataset kept on the compute device, augmented a whole batch at a time.

    Yields ``(images, labels)``: float32 images scaled to [0, 1] then normalized by ``mean``/``std``
    (per channel, on the [0, 1] scale), and int64 labels. ``flip`` is a random horizontal flip and
    ``pad_crop`` a random crop after zero padding by that many pixels, each drawn per image.
    Shuffling and augmentation are seeded by ``seed`` and the epoch, so a run can be replayed.
    With ``world_size`` > 1 (one process per GPU under torchrun) it yields only ``rank``'s share of
    each epoch: every rank draws the same permutation and takes every ``world_size``-th item of it.
    """

    def __init__(self, data: ImageDataset | tuple[torch.Tensor, torch.Tensor], *, batch_size: int = 256,
                 shuffle: bool = False, drop_last: bool = False, device: str | torch.device | None = None,
                 flip: bool = False, pad_crop: int = 0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, channels_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        images, labels = (data.images, data.labels) if isinstance(data, ImageDataset) else data
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"TensorLoader needs uint8 images of shape (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.device = torch.device(device) if device is not None else config.device()
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.classes = getattr(data, "classes", None)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.flip, self.padding, self.seed, self.epoch = flip, pad_crop, seed, 0
        self.channels_last = channels_last
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) = [0, {world_size}); got rank={rank}")
        self.rank, self.world_size = rank, world_size
        c = images.shape[1]
        if mean is not None and (len(mean) != c or len(std) != c):
            raise ValueError(f"mean and std need one value per channel ({c}); got {len(mean)} and {len(std)}")
        # What every batch goes through after augmentation; fit records it on the model and in checkpoints.
        self.preprocess = Preprocess(mean=mean, std=std, size=tuple(images.shape[-2:]), channels=c,
                                     channels_last=channels_last)

    def __len__(self) -> int:
        n = len(self.labels) // self.world_size  # this rank's share
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def shard(self, rank: int, world_size: int) -> TensorLoader:
        """A copy that yields only ``rank``'s share of each epoch (the tensors are shared, not copied)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) = [0, {world_size}); got rank={rank}")
        other = copy.copy(self)
        other.rank, other.world_size = rank, world_size
        return other

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose shuffle and augmentation the next iteration replays."""
        self.epoch = epoch

    def __iter__(self):
        # The generator lives on the device: permutations and augmentation draws are made there,
        # with no host-to-device copy per batch. Seeded by (seed, epoch), so an epoch can be replayed.
        gen = torch.Generator(self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle \
            else torch.arange(n, device=self.device)
        if self.world_size > 1:
            # Equal shares, so every rank takes the same number of steps: the few items left
            # over are skipped (different ones each epoch when shuffling). Each rank then draws
            # its own augmentations (a per-rank seed: one read of the device per epoch, not per batch).
            order = order[:n - n % self.world_size][self.rank::self.world_size]
            seed = int(torch.randint(2**62, (1,), generator=gen, device=self.device))
            gen = torch.Generator(self.device).manual_seed(seed + self.rank)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if self.flip or self.padding:
                b = len(idx)
                flip = torch.rand(b, generator=gen, device=self.device) < 0.5 if self.flip else None
                dy, dx = torch.randint(0, 2 * self.padding + 1, (2, b), generator=gen, device=self.device)
                x = pad_crop(x, self.padding, dy, dx, flip)
            yield self.preprocess(x), y


# ---------------------------------------------------------------------------------------------
# Real photos that ship with scikit-image and scikit-learn (no download)
# ---------------------------------------------------------------------------------------------

SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "page",
                 "immunohistochemistry", "hubble_deep_field", "logo", "china", "flower")


def sample_image(name: str) -> np.ndarray:
    """A real photo as a NumPy uint8 array: H x W x 3 (RGB), H x W x 4 (RGBA, "logo") or H x W (gray)."""
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; choose one of: {', '.join(SAMPLE_IMAGES)}")
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    import skimage.data
    return np.ascontiguousarray(getattr(skimage.data, name)())


# Your own images (cvlab/folders.py), re-exported: cvlab.data.image_folder(...) is where learners look.
from .folders import (IMAGE_EXTENSIONS, as_batch, dataloader, image_files, image_folder, load_images,  # noqa: E402
                      read_image)
