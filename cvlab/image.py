"""Single-image helpers shared by lessons 01 and 03: layouts, resizing, letterboxing, normalization.

Every function takes a uint8 image as a tensor (C, H, W), a NumPy array (H, W) or (H, W, C), or a
PIL image, and gives back the same kind (a PIL image comes back as an array).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "as_hwc", "from_hwc", "resize", "letterbox",
           "center_crop", "normalize", "denormalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")


def as_hwc(img, what: str = "this function") -> tuple[np.ndarray, str]:
    """A (H, W, C) uint8 view of one image, and its layout ("chw" tensor, "hw" or "hwc" array) for :func:`from_hwc`."""
    if isinstance(img, torch.Tensor):
        if img.ndim != 3:
            raise ValueError(f"{what} takes one image, a (C, H, W) tensor; got shape {tuple(img.shape)}. "
                             "For a batch, apply it per image (cvlab.data.dataloader(ds, transform=...) does).")
        arr, layout = img.detach().cpu().permute(1, 2, 0).numpy(), "chw"
    else:
        arr = np.asarray(img)  # a PIL image becomes (H, W) or (H, W, C)
        if arr.ndim not in (2, 3):
            raise ValueError(f"{what} takes one image, an (H, W) or (H, W, C) array; got shape {arr.shape}")
        layout = "hw" if arr.ndim == 2 else "hwc"
        arr = arr[..., None] if arr.ndim == 2 else arr
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} expects uint8 images (0..255), as cvlab datasets hold them; got {arr.dtype}. "
                         "Convert first, e.g. (x * 255).round().clamp(0, 255).to(torch.uint8) for a [0, 1] float tensor.")
    return arr, layout


def from_hwc(arr: np.ndarray, layout: str):
    """Back from (H, W[, C]) to ``layout``: a (C, H, W) tensor, an (H, W) or an (H, W, C) array."""
    arr = arr if arr.ndim == 3 else arr[..., None]
    if layout == "chw":
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return arr[..., 0] if layout == "hw" else arr


def _pair(size) -> tuple[int, int] | None:
    return None if size is None else (size, size) if isinstance(size, int) else tuple(size)


def _cv2_flag(interpolation: str) -> int:
    import cv2
    flags = dict(zip(INTERPOLATIONS, (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                                      cv2.INTER_LANCZOS4)))
    if interpolation not in flags:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    return flags[interpolation]


def resize(img, size: int | tuple[int, int], interpolation: str = "bilinear"):
    """Resize to ``size`` (H, W; an int for a square) with OpenCV's ``interpolation`` (see :data:`INTERPOLATIONS`)."""
    import cv2
    hwc, layout = as_hwc(img, "resize")
    h, w = _pair(size)
    out = cv2.resize(np.ascontiguousarray(hwc), (w, h), interpolation=_cv2_flag(interpolation))
    return from_hwc(out.reshape(h, w, -1), layout)  # OpenCV drops a single channel's axis


def _auto(scale: float, interpolation: str) -> str:
    # lesson 01's measured rule: shrink with area averaging, enlarge with bicubic
    return ("area" if scale < 1 else "bicubic") if interpolation == "auto" else interpolation


def letterbox(img, size: int = 224, *, fill: int = 114, interpolation: str = "auto"):
    """Fit ``img`` into a size x size square without distortion, padding with ``fill``.

    Returns ``(image, scale, (top, left))``: the scale and the photo's offset map boxes back.
    """
    hwc, layout = as_hwc(img, "letterbox")
    h, w = hwc.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = round(h * scale), round(w * scale)
    small = resize(hwc, (new_h, new_w), _auto(scale, interpolation))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out = np.full((size, size, hwc.shape[2]), fill, dtype=hwc.dtype)
    out[top:top + new_h, left:left + new_w] = small
    return from_hwc(out, layout), scale, (top, left)


def center_crop(img, size: int = 224, *, interpolation: str = "auto"):
    """Resize the short side to ``size``, then cut the middle size x size square."""
    hwc, layout = as_hwc(img, "center_crop")
    h, w = hwc.shape[:2]
    scale = size / min(h, w)
    big = resize(hwc, (max(size, round(h * scale)), max(size, round(w * scale))), _auto(scale, interpolation))
    top, left = (big.shape[0] - size) // 2, (big.shape[1] - size) // 2
    return from_hwc(big[top:top + size, left:left + size], layout)


def _per_channel(x, values, name: str):
    channels = x.shape[-3] if isinstance(x, torch.Tensor) else x.shape[-1]
    values = [float(v) for v in np.atleast_1d(values)]
    if len(values) not in (1, channels):
        raise ValueError(f"{name} needs 1 or {channels} values (one per channel); got {len(values)}")
    if isinstance(x, torch.Tensor):
        return torch.tensor(values, dtype=torch.float32, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
    return np.asarray(values, dtype=np.float32)  # (C,): broadcasts over an (H, W, C) array's last axis


def normalize(x, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """(x - mean) / std per channel, as float32; uint8 input is scaled to [0, 1] first.

    Tensors are (C, H, W) or (B, C, H, W); arrays are (H, W, C).
    """
    if isinstance(x, torch.Tensor):
        # one float copy, then two in-place passes: x * (1 / (255 std)) - mean / std
        mean, std = _per_channel(x, mean, "mean"), _per_channel(x, std, "std")
        out = x.to(torch.float32, copy=True)
        return out.mul_(1 / (255 * std) if x.dtype == torch.uint8 else 1 / std).sub_(mean / std)
    scaled = np.asarray(x, dtype=np.float32) / (255 if np.asarray(x).dtype == np.uint8 else 1)
    return (scaled - _per_channel(scaled, mean, "mean")) / _per_channel(scaled, std, "std")


def denormalize(x, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """The inverse of :func:`normalize`: x * std + mean, on the [0, 1] scale (clip it for display)."""
    return x * _per_channel(x, std, "std") + _per_channel(x, mean, "mean")
