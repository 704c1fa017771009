"""How images become a network's input: one object, carried from the training data to the checkpoint.

    pre = Preprocess(mean=(0.286,), std=(0.353,), size=(28, 28), channels=1)
    x = pre(images_uint8)              # (B, 1, 28, 28) uint8 -> float, scaled to [0, 1], normalized

A :class:`~cvlab.data.TensorLoader` builds its batches with its ``preprocess``; ``fit`` records the
training data's preprocessing on the model (``model.preprocess``) and in every checkpoint, and
``evaluate``, ``predict`` and ``cvlab.load`` read it back, so a model is always fed as it was trained.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["Preprocess", "prepare"]


@dataclass(frozen=True)
class Preprocess:
    """uint8 images -> float [0, 1] -> (x - mean) / std, per channel; optionally resized, channel-adapted, NHWC.

    ``size`` (H, W) and ``channels`` describe the training images: a batch of another size is resized
    (antialiased, with ``interpolation`` "bilinear" or "bicubic") and a gray batch is repeated to
    ``channels`` = 3 (a colour batch to 1 is averaged). ``None`` leaves that property alone.
    """
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: tuple[int, int] | None = None
    channels: int | None = None
    channels_last: bool = False
    interpolation: str = "bilinear"

    def __post_init__(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
            object.__setattr__(self, "std", tuple(float(s) for s in self.std))
            if len(self.mean) != len(self.std):
                raise ValueError(f"mean and std need one value per channel; got {len(self.mean)} and {len(self.std)}")
            if self.channels is not None and len(self.mean) != self.channels:
                raise ValueError(f"mean and std need one value per channel ({self.channels}); got {len(self.mean)}")
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std must be positive; got {self.std}")
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic'; got {self.interpolation!r}")
        object.__setattr__(self, "_stats", {})  # device -> (mean, std) tensors: no host copy per batch

    def stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std as (1, C, 1, 1) tensors on ``device``, made once per device.

        Tensors made while torch.compile or torch.export (the ONNX exporter) traces are not cached: a traced
        call makes placeholder tensors, and a cached placeholder would break every eager call after it.
        """
        stats = self._stats.get(device)
        if stats is None:
            stats = (torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                     torch.tensor(self.std, device=device).view(1, -1, 1, 1))
            if not torch.compiler.is_compiling():
                self._stats[device] = stats
        return stats

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 (or float already in [0, 1]) -> the float batch the network was trained on."""
        if x.ndim != 4:
            raise ValueError(f"Preprocess takes a batch (B, C, H, W); got shape {tuple(x.shape)}")
        fresh = x.dtype == torch.uint8  # then x.float() is a new tensor, safe to change in place
        x = x.float().div_(255) if fresh else x.float()
        if self.channels is not None and x.shape[1] != self.channels:
            fresh = True
            if x.shape[1] == 1:
                x = x.repeat(1, self.channels, 1, 1)
            elif self.channels == 1:
                x = x.mean(1, keepdim=True)
            else:
                raise ValueError(f"the model was trained on {self.channels}-channel images; got {x.shape[1]} channels")
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode=self.interpolation, antialias=True, align_corners=False)
            fresh = True
        if self.mean is not None:
            mean, std = self.stats(x.device)
            x = x.sub_(mean).div_(std) if fresh else (x - mean) / std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def to_dict(self) -> dict:
        """Plain lists and numbers, for a checkpoint or JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> Preprocess | None:
        return cls(**d) if d is not None else None


def prepare(model, images: torch.Tensor) -> torch.Tensor:
    """A batch as ``model`` takes it: uint8 images through ``model.preprocess`` (recorded by fit or
    ``cvlab.load``; else scaled to [0, 1]), on the model's device; float images as they are."""
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (B, C, H, W); got shape {tuple(images.shape)}. Add a batch axis: x[None].")
    if images.dtype != torch.uint8:
        return images
    device = next(model.parameters(), torch.empty(0)).device
    return (getattr(model, "preprocess", None) or Preprocess())(images.to(device))
