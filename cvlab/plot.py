"""The plotting helpers every lesson shares. Each returns the matplotlib Figure it drew.

Statistical plots (counts per class, a statistic's distribution by class, a confusion heatmap, a metric's
spread over folds, seeds or episodes) are drawn with seaborn, which computes and draws them from long-form
data; images and curves with matplotlib.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["to_display", "show_images", "class_grid", "class_means", "history", "confusion_matrix", "lr_find",
           "class_counts", "by_class", "spread"]


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
    """A confusion matrix as a seaborn heatmap: rows are true classes, columns predicted; ``normalize`` shows
    each row as fractions (the recall of its class on the diagonal)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    labels, predictions = torch.as_tensor(labels).long().cpu(), torch.as_tensor(predictions).long().cpu()
    k = len(classes)
    counts = torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k).float()  # (true, predicted)
    shown = counts / counts.sum(1, keepdim=True).clamp(min=1) if normalize else counts
    fig, ax = plt.subplots(figsize=(size, size))
    sns.heatmap(shown.numpy(), ax=ax, cmap="Blues", vmin=0, annot=True, fmt=".2f" if normalize else ".0f",
                annot_kws={"fontsize": 7}, cbar=False, square=True, xticklabels=classes, yticklabels=classes)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set_title(f"confusion matrix (accuracy {100 * accuracy:.2f}%)")
    fig.tight_layout()
    return fig


def class_counts(datasets, *, size: float = 3.2, title: str = "images per class"):
    """Images per class as bars, one colour per dataset: ``datasets`` is a dataset or ``{name: dataset}``
    (e.g. ``{"train": train, "test": test}``), all with the same classes."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    datasets = datasets if isinstance(datasets, dict) else {"images": datasets}
    classes = list(next(iter(datasets.values())).classes)
    rows = [{"class": classes[c], "images": int(n), "set": name}
            for name, ds in datasets.items() for c, n in enumerate(torch.bincount(ds.labels, minlength=len(classes)))]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(classes)), size))
    sns.barplot(pd.DataFrame(rows), x="class", y="images", hue="set", ax=ax, order=classes)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    ax.set(xlabel="", title=title)
    if len(datasets) == 1:
        ax.get_legend().remove()
    fig.tight_layout()
    return fig


def by_class(values, labels, classes: Sequence[str], *, name: str = "value", ax=None, kind: str = "box"):
    """The distribution of one number per image (brightness, loss, confidence, ...) for each class:
    ``kind="box"`` (median, quartiles, outliers) or ``"violin"``. Draws on ``ax`` if given."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    values, labels = np.asarray(values, dtype=float), np.asarray(torch.as_tensor(labels).cpu())
    if values.shape != labels.shape:
        raise ValueError(f"by_class needs one value per label; got {values.shape} values and {labels.shape} labels")
    if kind not in ("box", "violin"):
        raise ValueError(f"kind={kind!r}: use 'box' or 'violin'")
    frame = pd.DataFrame({name: values, "class": [classes[c] for c in labels]})
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(max(6.0, 0.7 * len(classes)), 3.4))
    draw = sns.boxplot if kind == "box" else sns.violinplot
    extra = {"fliersize": 1.5} if kind == "box" else {"cut": 0}
    with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated vert=; not ours to fix
        warnings.filterwarnings("ignore", message=".*vert: bool.*")
        draw(frame, x="class", y=name, order=list(classes), ax=ax, color="tab:blue", **extra)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set(xlabel="", title=name)
    return fig


def spread(results: dict, *, name: str = "accuracy", ax=None, title: str | None = None):
    """A metric's spread over repeats (folds, seeds, episodes): one dot per repeat and the mean with its
    standard deviation, per setting. ``results`` maps a setting's name to its list of values."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    frame = pd.DataFrame([{"setting": str(k), name: float(v)} for k, vs in results.items() for v in vs])
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(max(4.0, 1.3 * len(results)), 3.4))
    sns.stripplot(frame, x="setting", y=name, ax=ax, alpha=0.6, size=5, jitter=0.15)
    sns.pointplot(frame, x="setting", y=name, ax=ax, errorbar="sd", color="black", markers="_", capsize=0.2,
                  linestyle="none")
    ax.set(xlabel="", title=title or f"{name}: each dot one repeat, black the mean +/- std")
    ax.grid(alpha=0.3, axis="y")
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
