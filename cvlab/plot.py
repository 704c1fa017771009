"""The plotting helpers every lesson shares. Each returns the matplotlib Figure it drew."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["to_display", "show_images", "class_grid", "class_means", "history", "confusion_matrix", "lr_find"]


def to_display(img) -> np.ndarray:
    """A tensor (C, H, W) or array (H, W[, C]) as an array matplotlib's ``imshow`` draws as intended."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        img = img.permute(1, 2, 0).numpy() if img.ndim == 3 else img.numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    return img


def _gray_limits(img: np.ndarray) -> dict:
    """Fixed gray limits, so a dark image looks dark instead of being stretched to its own range."""
    if img.dtype == np.uint8:
        return {"vmin": 0, "vmax": 255}
    if img.size and 0.0 <= img.min() and img.max() <= 1.0:
        return {"vmin": 0.0, "vmax": 1.0}
    return {}  # e.g. normalized values: let matplotlib scale them


def show_images(images: Sequence, titles: Sequence[str] | None = None, *, ncols: int = 8,
                size: float = 1.6, cmap: str = "gray", suptitle: str | None = None):
    """Draw a list of images in a grid with optional titles."""
    import matplotlib.pyplot as plt
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    height = size * nrows + (0.3 * nrows if titles is not None else 0) + (0.4 if suptitle else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = to_display(images[k])
            ax.imshow(img, cmap=cmap, **(_gray_limits(img) if img.ndim == 2 else {}))
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
                ax.imshow(to_display(dataset.images[picks[k]]), cmap="gray", vmin=0, vmax=255)
        row[0].set_ylabel(dataset.classes[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def class_means(dataset, *, size: float = 1.6):
    """The mean image of each class: what a class looks like on average (and how much it varies)."""
    means = [dataset.images[dataset.labels == c].float().mean(0) / 255 for c in range(dataset.num_classes)]
    return show_images(means, dataset.classes, ncols=min(10, dataset.num_classes), size=size, cmap="gray",
                       suptitle="mean image per class")


def history(hist: dict, *, size: float = 3.6):
    """Training curves from :func:`cvlab.train.fit`'s history: loss, the task's first metric (accuracy for a
    classifier; train vs val) and learning rate."""
    import matplotlib.pyplot as plt
    epochs = hist["epoch"]
    metric = next((k[4:] for k in hist if k.startswith("val_") and k != "val_loss"), "acc")  # acc, map, psnr, ...
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size * 0.8))
    for ax, metric, title in ((axes[0], "loss", "loss"), (axes[1], metric, {"acc": "accuracy"}.get(metric, metric))):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = hist.get(f"{split}_{metric}") or []
            if values:
                ax.plot(epochs[:len(values)], values, style, ms=3, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[2].plot(epochs, hist["lr"], "-o", ms=3, color="tab:green")
    axes[2].set_title("learning rate (last step of each epoch)")
    axes[2].set_xlabel("epoch")
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(labels, predictions, classes: Sequence[str], *, normalize: bool = True, size: float = 6.0):
    """A confusion matrix: rows are true classes, columns predicted; ``normalize`` shows each row as fractions."""
    import matplotlib.pyplot as plt
    labels, predictions = torch.as_tensor(labels).long().cpu(), torch.as_tensor(predictions).long().cpu()
    k = len(classes)
    counts = torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k).float()  # (true, predicted)
    shown = counts / counts.sum(1, keepdim=True).clamp(min=1) if normalize else counts
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shown.numpy(), cmap="Blues", vmin=0)
    for i in range(k):
        for j in range(k):
            value = shown[i, j].item()
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if value > 0.5 * shown.max().item() else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set_title(f"confusion matrix (accuracy {100 * accuracy:.2f}%)")
    fig.tight_layout()
    return fig


def lr_find(result, *, size: float = 4.0):
    """The learning-rate range test of :func:`cvlab.checks.lr_find`: loss vs learning rate (log scale), suggestion marked."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.5 * size, size))
    ax.plot(result.lrs, result.raw_losses, color="tab:blue", alpha=0.25, lw=1, label="loss per batch")
    ax.plot(result.lrs, result.losses, color="tab:blue", lw=2, label="smoothed")
    ax.axvline(result.lr_min_loss, color="tab:red", ls=":", label=f"lowest loss at {result.lr_min_loss:.3g}")
    ax.axvline(result.suggestion, color="tab:green", ls="--", label=f"suggested {result.suggestion:.3g}")
    ax.set_xscale("log")
    finite = np.asarray(result.losses)[np.isfinite(result.losses)]
    ax.set_ylim(finite.min() * 0.9, min(finite.max(), 2 * finite[0]) * 1.05)  # the blow-up would squash the rest
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
