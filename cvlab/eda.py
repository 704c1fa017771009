"""Exploratory data analysis: what is in a dataset before any model sees it.

Summaries (shapes, class balance, pixel statistics, memory), exact duplicates by content hash,
near duplicates by perceptual hash, and leakage between two splits. Plots are in ``cvlab.plot``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import ImageDataset

__all__ = ["Summary", "summary", "content_hashes", "exact_duplicates", "perceptual_hashes",
           "near_duplicates", "leakage", "brightness_contrast"]


@dataclass
class Summary:
    """The basic facts of an image dataset (see :func:`summary`)."""
    count: int
    shape: tuple[int, int, int]           # (C, H, W)
    channels: int
    dtype: str
    class_counts: dict[str, int]
    imbalance_ratio: float                # largest class count / smallest class count
    mean: list[float] = field(default_factory=list)   # per channel, on the [0, 1] scale
    std: list[float] = field(default_factory=list)
    bytes_uint8: int = 0
    bytes_float32: int = 0

    def __str__(self) -> str:
        mib = 2**20
        lines = [
            f"images           {self.count:,} of shape {self.shape} (C, H, W), {self.dtype}",
            f"classes          {len(self.class_counts)}; imbalance ratio (max/min) {self.imbalance_ratio:.2f}",
            *(f"  {name:<14} {n:,}" for name, n in self.class_counts.items()),
            f"per-channel mean {[round(m, 4) for m in self.mean]}",
            f"per-channel std  {[round(s, 4) for s in self.std]}",
            f"memory           {self.bytes_uint8 / mib:,.1f} MiB as uint8, {self.bytes_float32 / mib:,.1f} MiB as float32",
        ]
        return "\n".join(lines)


def summary(dataset: ImageDataset) -> Summary:
    """Count, shape, channels, dtype, per-class counts, imbalance ratio, per-channel mean/std, memory."""
    images = dataset.images
    counts = torch.bincount(dataset.labels, minlength=dataset.num_classes).tolist()
    present = [c for c in counts if c > 0]
    # float64 sums over uint8 in chunks: exact enough and never a float copy of the whole set
    c = images.shape[1]
    total, total_sq, n_px = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        n_px += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n_px
    std = (total_sq / n_px - mean**2).clamp_min(0).sqrt()
    return Summary(
        count=len(dataset), shape=tuple(images.shape[1:]), channels=c, dtype=str(images.dtype).replace("torch.", ""),
        class_counts=dict(zip(dataset.classes, counts)),
        imbalance_ratio=max(present) / min(present) if present else float("nan"),
        mean=mean.tolist(), std=std.tolist(),
        bytes_uint8=images.numel() * 1, bytes_float32=images.numel() * 4,
    )


def brightness_contrast(dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-image brightness (mean pixel, [0, 1]) and contrast (pixel standard deviation)."""
    x = dataset.images.to(torch.float32).div_(255).flatten(1)
    return x.mean(1).numpy(), x.std(1, correction=0).numpy()


def content_hashes(dataset: ImageDataset) -> list[str]:
    """SHA-1 of each image's bytes: equal hashes mean identical pixels."""
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in dataset.images]


def exact_duplicates(dataset: ImageDataset) -> list[list[int]]:
    """Groups of indices whose images are byte-for-byte identical (each group has 2+ members)."""
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(content_hashes(dataset)):
        groups.setdefault(h, []).append(i)
    return sorted(g for g in groups.values() if len(g) > 1)


def perceptual_hashes(dataset: ImageDataset, hash_size: int = 8) -> np.ndarray:
    """imagehash's pHash of each image as a (N,) uint64 array (hash_size 8 gives 64 bits)."""
    import imagehash
    from PIL import Image
    if hash_size != 8:
        raise ValueError("perceptual_hashes packs each hash into 64 bits, so hash_size must be 8")
    out = np.empty(len(dataset), dtype=np.uint64)
    for i, img in enumerate(dataset.images):
        arr = img.numpy()
        pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)[..., :3])
        bits = imagehash.phash(pil, hash_size=hash_size).hash.flatten()
        out[i] = np.packbits(bits).view(">u8")[0]
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def _hash_pairs(a: np.ndarray, b: np.ndarray | None, max_distance: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for Hamming distance <= max_distance; within ``a`` (i < j) when ``b`` is None."""
    other = a if b is None else b
    chunk = max(1, 16_000_000 // max(1, len(other)))  # rows per block: ~128 MB of XORed hashes at a time
    pairs = []
    for start in range(0, len(a), chunk):
        block = a[start:start + chunk]
        dist = _popcount(block[:, None] ^ other[None, :])  # (chunk, M)
        ii, jj = np.nonzero(dist <= max_distance)
        ii += start
        keep = ii < jj if b is None else slice(None)
        pairs += [(int(i), int(j), int(dist[i - start, j])) for i, j in zip(ii[keep], jj[keep])]
    return pairs


def near_duplicates(dataset: ImageDataset, max_distance: int = 4) -> list[tuple[int, int, int]]:
    """Pairs (i, j, distance) of images whose 64-bit pHashes differ in at most ``max_distance`` bits.

    Catches re-compressed, re-scaled or re-brightened copies that a content hash misses. It is not
    shift-invariant: on 28 px images a one-pixel shift already moves the hash by ~8 bits. Plain or
    low-detail images can also collide, so look at the pairs before deleting anything.
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance is a number of differing bits, 0..64; got {max_distance}")
    return _hash_pairs(perceptual_hashes(dataset), None, max_distance)


def leakage(a: ImageDataset, b: ImageDataset, *, max_distance: int | None = None) -> list[tuple[int, int]]:
    """Pairs (i in a, j in b) of the same image in both splits: identical bytes, or pHash within ``max_distance``."""
    if max_distance is not None:
        return [(i, j) for i, j, _ in _hash_pairs(perceptual_hashes(a), perceptual_hashes(b), max_distance)]
    index: dict[str, list[int]] = {}
    for j, h in enumerate(content_hashes(b)):
        index.setdefault(h, []).append(j)
    return [(i, j) for i, h in enumerate(content_hashes(a)) for j in index.get(h, ())]
