"""Decode each image file once: decoded arrays kept in memory, and optionally as ``.npy`` files on disk.

Decoding a PNG or JPEG costs far more than reading an array that is already decoded, and a
training run decodes every file once per epoch. A :class:`DecodeCache` decodes a file the first
time it is asked for and hands back the stored array afterwards:

    cache = DecodeCache(folder="runs/decoded")       # folder=None: memory only
    ds = cached_image_folder("photos/", cache=cache, transform=train_tf)   # torchvision ImageFolder
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)

Files are decoded by :func:`cvlab.data.read_image`, as every cvlab image reader decodes them: uint8,
(H, W) for a gray file and (H, W, 3) for any other (16-bit gray scaled to 0..255, transparency on
white, palettes looked up). Entries are keyed on the file's path, modification time and size, so a
file that changed is decoded again. Mind the memory: ``cache.nbytes`` says how much the in-memory
arrays take, and ``max_bytes`` stops adding to memory beyond a limit (the ``.npy`` files still
serve those).
With a ``DataLoader``'s worker processes each worker fills its own memory copy; the ``.npy``
folder is shared by all of them and by later runs.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import IMAGE_EXTENSIONS, read_image

__all__ = ["DecodeCache", "CacheStats", "decode", "cached_image_folder"]


@dataclass
class CacheStats:
    """How requests were served: decoded from the file, from memory, or from a ``.npy`` file."""
    decodes: int = 0
    memory_hits: int = 0
    disk_hits: int = 0


def decode(path: str | Path) -> np.ndarray:
    """A file as uint8 (H, W) if gray, else (H, W, 3): :func:`cvlab.data.read_image`, the pixels image_folder gets."""
    return read_image(path)


# Bumped when decode's output changes (v2: 16-bit, alpha and palette files as read_image gives them),
# so that .npy files written by an older decoder are not served.
_FORMAT = "read_image-v2"


def _is_image_file(path: str) -> bool:
    """The files cvlab.data.image_folder reads: an image extension, not hidden."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


class DecodeCache:
    """A callable ``path -> array`` that decodes each file once (see the module docstring).

    ``folder``: where to write decoded arrays as ``.npy`` (None: memory only). ``memory=False``
    keeps nothing in memory (the ``.npy`` files only). ``decoder`` turns a path into an array.
    """

    def __init__(self, folder: str | Path | None = None, *, memory: bool = True, max_bytes: int | None = None,
                 decoder=decode):
        if folder is None and not memory:
            raise ValueError("a cache with memory=False needs a folder for its .npy files; pass folder=...")
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.memory, self.max_bytes, self.decoder = memory, max_bytes, decoder
        self.arrays: dict[tuple, np.ndarray] = {}
        self.nbytes = 0
        self.stats = CacheStats()

    @staticmethod
    def key(path: str | Path) -> tuple[str, int, int]:
        """(absolute path, modification time in ns, size in bytes): any change to the file changes the key."""
        p = os.path.abspath(path)  # not resolve(): one stat per lookup, no walk through every parent folder
        st = os.stat(p)
        return p, st.st_mtime_ns, st.st_size

    def _npy(self, key: tuple) -> Path:
        return self.folder / (hashlib.sha1(repr((_FORMAT, *key)).encode()).hexdigest() + ".npy")

    def __call__(self, path: str | Path) -> np.ndarray:
        key = self.key(path)
        if key in self.arrays:
            self.stats.memory_hits += 1
            return self.arrays[key]
        npy = self._npy(key) if self.folder is not None else None
        if npy is not None and npy.is_file():
            self.stats.disk_hits += 1
            array = np.load(npy)
        else:
            self.stats.decodes += 1
            array = np.ascontiguousarray(self.decoder(path))
            if npy is not None:
                tmp = npy.with_suffix(f".{os.getpid()}.tmp.npy")  # write beside, then rename: no half files
                np.save(tmp, array)
                os.replace(tmp, npy)
        self._remember(key, array)
        return array

    def _remember(self, key: tuple, array: np.ndarray) -> None:
        if self.memory and (self.max_bytes is None or self.nbytes + array.nbytes <= self.max_bytes):
            self.arrays[key] = array
            self.nbytes += array.nbytes

    def clear(self) -> None:
        """Forget the in-memory arrays (the ``.npy`` files stay)."""
        self.arrays.clear()
        self.nbytes = 0


def cached_image_folder(root: str | Path, *, cache: DecodeCache | None = None, transform=None):
    """torchvision's ``ImageFolder`` over ``root/<class>/<files>``, reading files through ``cache``.

    Items are ``(transform(array), class index)``; the array is uint8 (H, W) or (H, W, 3), the
    input albumentations and :mod:`cvlab.augment` pipelines take. The files are those
    :func:`cvlab.data.image_folder` reads (image extensions, no hidden files).
    """
    from torchvision.datasets import ImageFolder
    if not Path(root).is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    return ImageFolder(str(root), loader=cache if cache is not None else DecodeCache(), transform=transform,
                       is_valid_file=_is_image_file)
