"""Class imbalance: a rare-positive task, losses that weigh classes or hard images, and resampling.

Each plugs into :func:`cvlab.train.fit`:

    fit(model, train, epochs=5, loss_fn=FocalLoss(gamma=2.0))                           # hard images count more
    fit(model, train, epochs=5, loss_fn=nn.CrossEntropyLoss(weight=class_weights(train.labels)))
    fit(model, weighted_loader(train, batch_size=128), epochs=5)                       # balanced batches
    fit(model, oversample(train, factor=5), epochs=5)                                   # repeat the rare class

The first two change how much each image's error counts; the last two change how often each image is seen.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler

from .data import ImageDataset

__all__ = ["make_imbalanced", "FocalLoss", "class_weights", "weighted_sampler", "weighted_loader", "oversample"]


def make_imbalanced(dataset: ImageDataset, positive: int, *, fraction: float = 0.05, seed: int = 0) -> ImageDataset:
    """A binary task from a multi-class dataset: class ``positive`` (label 1) against all others (label 0),
    with positives kept at random until they are ``fraction`` of the images (every negative is kept)."""
    if not 0 <= positive < dataset.num_classes:
        raise ValueError(f"positive={positive} is not a class of this dataset (0..{dataset.num_classes - 1})")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must be between 0 and 1 (exclusive), e.g. 0.05 for 5% positives")
    labels = dataset.labels.numpy()
    pos, neg = np.flatnonzero(labels == positive), np.flatnonzero(labels != positive)
    n_pos = round(fraction * len(neg) / (1 - fraction))  # n_pos / (n_pos + n_neg) = fraction
    if n_pos > len(pos):
        raise ValueError(f"{fraction:.0%} positives needs {n_pos} images of class {positive} but there are only "
                         f"{len(pos)}; lower the fraction")
    keep = np.sort(np.concatenate([neg, np.random.default_rng(seed).choice(pos, size=max(n_pos, 1), replace=False)]))
    binary = torch.from_numpy((labels[keep] == positive).astype(np.int64))
    return ImageDataset(dataset.images[keep], binary, [f"not {dataset.classes[positive]}", dataset.classes[positive]],
                        name=f"{dataset.name}: {dataset.classes[positive]} vs rest", source=dataset.source)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross-entropy scaled by ``(1 - p_true) ** gamma``.

    Images the model already gets right with confidence (p_true near 1) contribute almost nothing,
    so the many easy negatives of an imbalanced task stop drowning out the few hard positives.
    ``alpha`` is an optional per-class weight (C,). With ``gamma=0`` this is exactly
    ``F.cross_entropy(logits, targets, weight=alpha)``: the mean divides by the sum of the weights, as there.
    """

    def __init__(self, gamma: float = 2.0, alpha=None, reduction: str = "mean"):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma={gamma} must be >= 0 (0 is plain cross-entropy; 2 is the paper's choice)")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction={reduction!r}: use 'mean', 'sum' or 'none'")
        self.gamma, self.reduction = gamma, reduction
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32) if alpha is not None else None)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim != 1 or targets.dtype != torch.long:
            raise ValueError(f"FocalLoss needs class indices (B,) as targets; got {targets.dtype} {tuple(targets.shape)} "
                             "(soft targets from Mixup/CutMix are not supported)")
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None])[:, 0]  # (B,) log p_true
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        weight = self.alpha[targets] if self.alpha is not None else torch.ones_like(loss)
        loss = weight * loss
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.sum() / weight.sum()


def class_weights(labels, num_classes: int | None = None) -> torch.Tensor:
    """Per-class weights n / (C * n_c) (scikit-learn's "balanced"): a rare class's errors count as much in total
    as a common one's. Pass them to ``nn.CrossEntropyLoss(weight=...)`` or ``FocalLoss(alpha=...)``."""
    from sklearn.utils.class_weight import compute_class_weight
    labels = torch.as_tensor(labels).cpu().numpy()
    classes = np.arange(num_classes if num_classes is not None else labels.max() + 1)
    missing = np.setdiff1d(classes, labels)
    if len(missing):
        raise ValueError(f"classes {missing.tolist()} have no images, so they cannot be weighted; "
                         "check the labels or pass the right num_classes")
    return torch.tensor(compute_class_weight("balanced", classes=classes, y=labels), dtype=torch.float32)


def weighted_sampler(labels, *, num_samples: int | None = None, seed: int = 0) -> WeightedRandomSampler:
    """A sampler that draws every class equally often (with replacement): each image has weight 1 / its class's count."""
    labels = torch.as_tensor(labels).cpu()
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True,
                                 generator=torch.Generator().manual_seed(seed))


def weighted_loader(dataset: ImageDataset, *, batch_size: int = 128, num_samples: int | None = None,
                    seed: int = 0) -> DataLoader:
    """A DataLoader over ``dataset`` with class-balanced batches, for :func:`cvlab.train.fit`.

    An epoch draws ``num_samples`` images (default: the dataset's size), so rare images repeat and
    common ones are skipped; fit scales the uint8 batches to [0, 1] as it does for datasets.
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=weighted_sampler(dataset.labels, num_samples=num_samples,
                                                                               seed=seed))


def oversample(dataset: ImageDataset, *, factor: int | None = None, seed: int = 0) -> ImageDataset:
    """Repeat images of the smaller classes: each class ``factor`` times over (capped at the largest class's
    count), or with ``factor=None`` until every class is as large as the largest. Shuffled; the originals are kept."""
    if factor is not None and factor < 1:
        raise ValueError(f"factor={factor} must be >= 1 (5 repeats each rare image five times)")
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    largest = np.bincount(labels).max()
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        target = largest if factor is None else min(factor * len(members), max(largest, len(members)))
        repeats, extra = divmod(target, len(members))
        picks += [np.tile(members, repeats), rng.choice(members, size=extra, replace=False)]
    return dataset.take(rng.permutation(np.concatenate(picks)))
