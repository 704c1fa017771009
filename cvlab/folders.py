"""Your own images: one sub-folder per class, read into memory or streamed by a DataLoader.

Every reader of image files (:func:`image_folder`, :func:`dataloader` on a folder,
:func:`load_images`, :mod:`cvlab.cache`) decodes with :func:`read_image`, so one file gives the same
pixels everywhere: uint8, (H, W) for a gray file and (H, W, 3) for any other, 16-bit gray scaled to
0..255, transparent pixels composited on white, palettes looked up. Only files with an extension in
:data:`IMAGE_EXTENSIONS` count as images. ``cvlab.data`` re-exports everything here.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import ImageDataset

__all__ = ["IMAGE_EXTENSIONS", "read_image", "image_folder", "image_files", "load_images", "as_batch", "dataloader"]

# What Pillow reads and image folders hold; anything else (README.txt, Thumbs.db, desc.json) is skipped.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm"})
_NOT_AN_IMAGE = "not an image file (by its extension)"


def _decode(path: Path):
    """Open one file as a PIL image in mode "L" or "RGB"; raises ValueError naming the file if it cannot."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not later
            return _l_or_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: cannot decode as an image ({type(e).__name__}: {e})") from e


def _l_or_rgb(im):
    """A decoded PIL image in mode "L" or "RGB": 16-bit gray scaled, alpha composited on white, palettes looked up."""
    from PIL import Image
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit gray: scale 0..65535 to 0..255
        arr = np.asarray(im, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    gray = im.mode in ("L", "LA", "La", "1")
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")  # transparent pixels become white, not whatever colour hides under alpha
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert("L" if gray else "RGB")  # a palette is looked up here


def read_image(path: str | Path) -> np.ndarray:
    """One image file as uint8 (H, W) if gray, else (H, W, 3): the decoding every cvlab reader shares.

    16-bit gray is scaled to 0..255, transparent pixels are composited on white, palettes are looked
    up. Raises ValueError naming the file when Pillow cannot decode it.
    """
    return np.array(_decode(Path(path)))


def _read(path: Path, hw: tuple[int, int] | None = None):
    """One file decoded and, given ``hw``, resized to (H, W): the per-file step of every folder reader."""
    from PIL import Image
    im = _decode(path)
    return im if hw is None else im.resize((hw[1], hw[0]), Image.BILINEAR)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, an int or (H, W); got {size!r}")
    return int(h), int(w)


def _check_channels(channels) -> None:
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None (auto); got {channels!r}")


def _stack(images: list, channels: int | None) -> torch.Tensor:
    """Same-size PIL images ("L" or "RGB") as uint8 (N, C, H, W); ``channels`` None: 1 if all are gray, else 3."""
    if channels is None:
        channels = 1 if all(im.mode == "L" for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    x = torch.from_numpy(np.stack([np.asarray(im if im.mode == mode else im.convert(mode)) for im in images]))
    return (x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)).contiguous()


def _split_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, recursively and sorted; hidden files and folders left out."""
    images, others = [], []
    for f in sorted(folder.rglob("*")):
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts):
            (images if f.suffix.lower() in IMAGE_EXTENSIONS else others).append(f)
    return images, others


def _skipped_line(files: list[Path], root: Path) -> str:
    """One line for the non-image ``files`` skipped under ``root``, naming the first few."""
    names = [str(f.relative_to(root)) for f in files]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"skipped {len(names)} non-image file{'s' if len(names) > 1 else ''} in {root}/ ({shown}); "
            "image files are those with an extension in cvlab.data.IMAGE_EXTENSIONS")


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[Path]]:
    """Class names, (image file, label) pairs and the non-image files of ``root/<class name>/<files>``."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class sub-folders; expected {root}/<class name>/<image files>, one sub-folder per class.")
    if len(class_dirs) == 1:
        raise ValueError(f"{root} has only one class sub-folder ({class_dirs[0].name!r}); "
                         "classification needs at least two. Add a sub-folder per class.")
    samples, others = [], []
    for label, d in enumerate(class_dirs):
        images, rest = _split_files(d)
        if not images:
            raise ValueError(f"class folder {d} has no readable images{' (only non-image files)' if rest else ''}; "
                             "add images or remove the folder.")
        samples += [(f, label) for f in images]
        others += rest
    return [d.name for d in class_dirs], samples, others


def image_folder(path: str | Path, *, size: int | tuple[int, int] = 64, channels: int | None = None,
                 on_error: str = "raise") -> ImageDataset:
    """Load ``path/<class name>/<image files>`` into memory, resized to ``size`` (H, W).

    ``channels`` is 1 (gray) or 3 (RGB); by default 1 when every image is gray, else 3.
    Files are decoded by :func:`read_image` (PNG, JPEG and the rest of :data:`IMAGE_EXTENSIONS`, in
    gray, RGB, RGBA, palette and 16-bit). Other files (README.txt, Thumbs.db) are skipped with one
    warning, hidden files silently. An image file that cannot be decoded raises an error naming it;
    ``on_error="skip"`` warns and skips it instead. ``dataset.skipped`` lists (file, reason) for both.
    """
    root = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    _check_channels(channels)
    hw = _hw(size)
    classes, samples, others = _scan(root)
    if others:
        warnings.warn(_skipped_line(others, root), stacklevel=2)
    skipped = [(str(f), _NOT_AN_IMAGE) for f in others]

    decoded, labels, paths = [], [], []
    for f, label in samples:
        try:
            decoded.append(_read(f, hw))
        except ValueError as e:
            if on_error == "raise":
                raise ValueError(f"{e}. Remove or replace the file, or pass on_error='skip' to skip unreadable files.") from e.__cause__
            skipped.append((str(f), str(e.__cause__ or e)))
            warnings.warn(f"skipped {f}: {e.__cause__ or e}", stacklevel=2)
            continue
        labels.append(label)
        paths.append(str(f))
    for label in sorted(set(range(len(classes))) - set(labels)):  # every file of this class was unreadable
        raise ValueError(f"class folder {root / classes[label]} has no readable images; add images or remove the folder.")

    ds = ImageDataset(_stack(decoded, channels), torch.tensor(labels, dtype=torch.int64), classes,
                      name=root.name, source=f"image folder {root}", paths=paths)
    ds.skipped = skipped
    return ds


def image_files(*paths: str | Path) -> list[Path]:
    """The image files among ``paths``, each folder standing for the image files under it (recursive, sorted).

    Raises FileNotFoundError naming a path that does not exist, and ValueError for a named file
    that is not an image (by extension) or when no image file is found.
    """
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += _split_files(p)[0]
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{p} is not an image file; image extensions are {' '.join(sorted(IMAGE_EXTENSIONS))}")
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    if not files:
        raise ValueError(f"no image files in {', '.join(map(str, paths)) or '(no paths given)'}; "
                         f"image extensions are {' '.join(sorted(IMAGE_EXTENSIONS))}")
    return files


def as_batch(images: Sequence, *, size: int | tuple[int, int], channels: int | None) -> torch.Tensor:
    """Decoded images (NumPy uint8 arrays (H, W), (H, W, 3) or (H, W, 4), or PIL images) as one uint8 tensor
    (N, C, H, W), resized and converted exactly as :func:`load_images` does with files (alpha over white)."""
    from PIL import Image
    _check_channels(channels)
    hw, out = _hw(size), []
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            a = np.asarray(im)
            if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
                raise ValueError(f"image {i}: expected uint8 (H, W), (H, W, 3) or (H, W, 4); got {a.dtype} {a.shape}")
            im = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)
        out.append(_l_or_rgb(im).resize((hw[1], hw[0]), Image.BILINEAR))  # converted as a file's pixels are
    if not out:
        raise ValueError("as_batch needs at least one image")
    return _stack(out, channels)


def load_images(paths: Sequence[str | Path], *, size: int | tuple[int, int], channels: int | None) -> torch.Tensor:
    """Image files as one uint8 tensor (N, C, H, W), decoded and resized exactly as :func:`image_folder` does.

    Give the ``size`` and ``channels`` (1, 3, or None: 1 only when every image is gray) a model was
    trained with. Raises ValueError naming a file that cannot be decoded.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("load_images needs at least one file; cvlab.data.image_files(...) lists the images in folders")
    _check_channels(channels)
    hw = _hw(size)
    return _stack([_read(Path(p), hw) for p in paths], channels)


class _FolderFiles(Dataset):
    """``root/<class name>/<image files>`` read lazily, each file decoded (and resized) as image_folder does."""

    def __init__(self, root: Path, *, size, channels: int | None, transform):
        _check_channels(channels)
        self.classes, self.samples, others = _scan(root)
        self.skipped = [(str(f), _NOT_AN_IMAGE) for f in others]
        self.hw = _hw(size) if size is not None else None
        self.mode = {None: None, 1: "L", 3: "RGB"}[channels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        im = _read(path, self.hw)
        if self.mode is not None and im.mode != self.mode:
            im = im.convert(self.mode)
        if self.transform is not None:
            return self.transform(im), label
        x = torch.from_numpy(np.array(im))  # (H, W) or (H, W, 3)
        return (x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()), label


def _collate_one_shape(batch):
    """torch's default collate, after checking that the images share one shape (else an error naming the shapes)."""
    from torch.utils.data import default_collate
    shapes = sorted({tuple(x.shape) for x, _ in batch})
    if len(shapes) > 1:
        listed = ", ".join("x".join(map(str, s)) for s in shapes)
        raise ValueError(f"cannot batch images of different shapes (C x H x W): {listed}. Pass size=(H, W) to "
                         "cvlab.data.dataloader to resize them all (as image_folder does), channels=1 or 3 to give "
                         "them one channel count, or a transform that does both.")
    return default_collate(batch)


class _Transformed(Dataset):
    def __init__(self, dataset: ImageDataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return (self.transform(x) if self.transform is not None else x), y


def dataloader(data: ImageDataset | str | Path, *, batch_size: int = 64, shuffle: bool = False,
               transform=None, size: int | tuple[int, int] | None = None, channels: int | None = None,
               num_workers: int = 0, drop_last: bool = False, **kwargs) -> DataLoader:
    """A torch ``DataLoader`` with a per-image ``transform``: the path for folders of large images.

    ``data`` is an in-memory dataset (the transform gets a uint8 C x H x W tensor) or a folder
    ``root/<class name>/<image files>`` read lazily, each file decoded as :func:`image_folder` does
    (non-image files skipped with one warning, an unreadable image an error naming it). For a
    folder, ``size`` resizes every image to (H, W) and ``channels`` (1 or 3) converts it, as
    image_folder does; then the transform gets a PIL image (RGB unless ``channels=1``, as
    torchvision's ImageFolder gives), or, with no transform, the loader yields uint8 (C, H, W)
    tensors, each file keeping its own channels (1 gray, 3 colour) unless ``channels`` is given.
    ``pin_memory`` defaults to True when CUDA is available; other ``kwargs`` go to ``DataLoader``.
    """
    if isinstance(data, (str, Path)):
        if transform is not None and channels is None:
            channels = 3  # what transforms got from torchvision's ImageFolder before: keep them working
        dataset = _FolderFiles(Path(data), size=size, channels=channels, transform=transform)
        if dataset.skipped:
            warnings.warn(_skipped_line([Path(f) for f, _ in dataset.skipped], Path(data)), stacklevel=2)
        if transform is None:  # images of different sizes would fail in collate with a message about tensors
            kwargs.setdefault("collate_fn", _collate_one_shape)
    else:
        if size is not None or channels is not None:
            raise ValueError("size and channels are for image folders; an in-memory dataset has one size and "
                             "channel count already (resize with a transform, or load the folder with them)")
        dataset = _Transformed(data, transform)
    kwargs.setdefault("pin_memory", torch.cuda.is_available())  # page-locked batches copy to the GPU faster
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0, **kwargs)
