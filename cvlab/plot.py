"""The plotting helpers every lesson shares. Each returns the matplotlib Figure it drew."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["to_display", "show_images", "class_grid", "class_means"]


def to_display(img) -> np.ndarray:
    """A tensor (C, H, W) or array (H, W[, C]) as an array matplotlib's ``imshow`` draws as intended."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        img = img.permute(1, 2, 0).numpy() if img.ndim == 3 else img.numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    return img


def show_images(images: Sequence, titles: Sequence[str] | None = None, *, ncols: int = 8,
                size: float = 1.6, cmap: str = "gray", suptitle: str | None = None):
    """Draw a list of images in a grid with optional titles."""
    import matplotlib.pyplot as plt
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(to_display(images[k]), cmap=cmap)
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def class_grid(dataset, per_class: int = 8, *, seed: int = 0, size: float = 1.0):
    """A grid with one row per class: ``per_class`` random samples of it, the class name on the left."""
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    fig, axes = plt.subplots(dataset.num_classes, per_class, figsize=(size * per_class + 1.2, size * dataset.num_classes),
                             squeeze=False)
    for c, row in enumerate(axes):
        members = np.flatnonzero(labels == c)
        picks = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        for k, ax in enumerate(row):
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if k < len(picks):
                ax.imshow(to_display(dataset.images[picks[k]]), cmap="gray")
        row[0].set_ylabel(dataset.classes[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def class_means(dataset, *, size: float = 1.6):
    """The mean image of each class: what a class looks like on average (and how much it varies)."""
    means = [dataset.images[dataset.labels == c].float().mean(0) / 255 for c in range(dataset.num_classes)]
    return show_images(means, dataset.classes, ncols=min(10, dataset.num_classes), size=size, cmap="gray",
                       suptitle="mean image per class")
