"""Ensembles: voting over models, stratified k-fold training, and test-time augmentation.

    probs = [cvlab.train.predict(m, test) for m in models]
    soft_vote(probs)                       # average the probabilities
    soft_vote(probs, weights=[2, 1, 1])    # weighted: trust the better model more
    hard_vote(probs)                       # one vote per model for its top class
    folds = kfold(make_model, train, k=5, epochs=5)   # fold models + out-of-fold probabilities
    tta_predict(model, test)               # average over flips and one-pixel shifts

Every function returns class probabilities (N, C), so they combine: a k-fold ensemble with TTA is
``soft_vote([tta_predict(m, test) for m in folds.models])``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .data import ImageDataset, TensorLoader, pad_crop
from .train import fit, predict

__all__ = ["soft_vote", "hard_vote", "predict_all", "KFoldResult", "kfold", "identity", "hflip", "vflip", "shift",
           "DEFAULT_TTA", "tta_predict"]


def _stack(probabilities: Sequence[torch.Tensor], weights) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, N, C) probabilities and (M,) weights summing to 1, checked."""
    if len(probabilities) == 0:
        raise ValueError("voting needs the probabilities of at least one model")
    shapes = {tuple(p.shape) for p in probabilities}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every model's probabilities must have the same shape (N, C); got {sorted(shapes)}")
    probs = torch.stack([torch.as_tensor(p, dtype=torch.float32) for p in probabilities])
    w = torch.ones(len(probs)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (len(probs),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights need one non-negative value per model ({len(probs)}) with a positive sum; got {weights}")
    return probs, w / w.sum()


def soft_vote(probabilities: Sequence[torch.Tensor], weights=None) -> torch.Tensor:
    """The (weighted) mean of the models' probabilities (N, C): confident models sway the vote more."""
    probs, w = _stack(probabilities, weights)
    return torch.einsum("m,mnc->nc", w, probs)


def hard_vote(probabilities: Sequence[torch.Tensor], weights=None) -> torch.Tensor:
    """Each model votes (with its weight) for its top class; returns the vote shares (N, C).

    ``.argmax(1)`` is the majority class; a tie goes to the lowest class index.
    """
    probs, w = _stack(probabilities, weights)
    votes = nn.functional.one_hot(probs.argmax(2), probs.shape[2]).float()  # (M, N, C)
    return torch.einsum("m,mnc->nc", w, votes)


def predict_all(models: Sequence[nn.Module], data, **kwargs) -> list[torch.Tensor]:
    """Each model's probabilities on ``data`` (:func:`cvlab.train.predict`'s arguments pass through)."""
    return [predict(m, data, **kwargs) for m in models]


# ---------------------------------------------------------------------------------------------
# k-fold cross-validation
# ---------------------------------------------------------------------------------------------

@dataclass
class KFoldResult:
    models: list[nn.Module]      # one per fold, each trained without its fold
    oof: torch.Tensor            # (N, C) out-of-fold probabilities: image i predicted by the model that never saw it
    fold: np.ndarray             # (N,) which fold held out each image
    histories: list[dict]

    def oof_accuracy(self, labels) -> float:
        """Accuracy of the out-of-fold predictions: an estimate of a single model's accuracy that uses all the data."""
        return float((self.oof.argmax(1) == torch.as_tensor(labels)).float().mean())


def kfold(make_model: Callable[[], nn.Module], dataset: ImageDataset, *, k: int = 5, seed: int = 0,
          loader: Callable[[ImageDataset], object] | None = None, **fit_kwargs) -> KFoldResult:
    """Stratified k-fold training: split ``dataset`` into ``k`` folds with equal class shares (scikit-learn's
    ``StratifiedKFold``), train a fresh ``make_model()`` on each k-1 folds with :func:`cvlab.train.fit`, and predict
    the held-out fold.

    ``loader(train_part)`` builds the training loader of each fold (e.g. a TensorLoader with augmentation);
    by default fit wraps the dataset itself. Other keyword arguments go to fit.
    """
    from sklearn.model_selection import StratifiedKFold
    if k < 2:
        raise ValueError(f"k={k}: k-fold needs at least 2 folds (5 is usual)")
    labels = dataset.labels.numpy()
    smallest = np.bincount(labels).min()
    if smallest < k:
        raise ValueError(f"the smallest class has {smallest} images, fewer than k={k} folds; use k <= {smallest}")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    models, histories, oof, fold_of = [], [], None, np.empty(len(labels), dtype=np.int64)
    for i, (train_idx, held_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        model = make_model()
        part = dataset.take(train_idx)
        # a loader of your own is seeded by you; a dataset fit wraps gets a seed per fold
        data = loader(part) if loader is not None else part
        histories.append(fit(model, data, **({} if loader is not None else {"seed": seed + i}), **fit_kwargs))
        probs = predict(model, dataset.take(held_idx), device=fit_kwargs.get("device"))
        oof = oof if oof is not None else torch.zeros(len(labels), probs.shape[1])
        oof[held_idx], fold_of[held_idx] = probs, i
        models.append(model)
    return KFoldResult(models, oof, fold_of, histories)


# ---------------------------------------------------------------------------------------------
# Test-time augmentation
# ---------------------------------------------------------------------------------------------

def identity(images: torch.Tensor) -> torch.Tensor:
    return images


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right: (N, C, H, W)."""
    return images.flip(3)


def vflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom (only where the data allows it: a shoe upside down is not a shoe)."""
    return images.flip(2)


def shift(dy: int, dx: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A transform that moves the image content ``dy`` pixels down and ``dx`` right, filling with zeros."""
    p = max(abs(dy), abs(dx))

    def shifted(images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        # pad_crop reads the window at offset (p - dy, p - dx) of the padded image: content moves by (dy, dx).
        return pad_crop(images, p, torch.full((n,), p - dy, device=images.device),
                        torch.full((n,), p - dx, device=images.device))

    shifted.__name__ = f"shift({dy}, {dx})"
    return shifted


# The original, its mirror, and each of them moved one pixel in four directions.
DEFAULT_TTA = (identity, hflip, shift(1, 0), shift(-1, 0), shift(0, 1), shift(0, -1))


def _with_images(data, images: torch.Tensor):
    """``data`` (ImageDataset, (images, labels) pair or TensorLoader) holding ``images`` instead of its own."""
    if isinstance(data, ImageDataset):
        return ImageDataset(images, data.labels, data.classes, name=data.name, source=data.source)
    if isinstance(data, tuple):
        return (images, data[1])
    out = copy.copy(data)  # a TensorLoader: same normalization and batch size, other images
    out.images = images
    return out


def tta_predict(model: nn.Module, data, transforms: Sequence[Callable] = DEFAULT_TTA, **kwargs) -> torch.Tensor:
    """Test-time augmentation: the mean of the model's probabilities over transformed copies of every image.

    ``data`` is an ImageDataset, an (images, labels) pair or a TensorLoader (its normalization is kept);
    each transform maps an image batch (N, C, H, W) to one of the same shape. ``cvlab.train.evaluate(tta=True)``
    is the built-in special case: identity and mirror, averaging logits inside the loop.
    """
    if not transforms:
        raise ValueError("tta_predict needs at least one transform; (identity,) is plain prediction")
    if not isinstance(data, (ImageDataset, tuple, TensorLoader)):
        raise TypeError(f"tta_predict transforms the images of an ImageDataset, an (images, labels) pair or a "
                        f"TensorLoader; got a {type(data).__name__}")
    if isinstance(data, TensorLoader) and (data.shuffle or data.flip or data.padding):
        raise ValueError("tta_predict needs an evaluation TensorLoader (no shuffle, flip or pad_crop): with those, the "
                         "predictions would come in another order or with random augmentation on top")
    images = data.images if not isinstance(data, tuple) else data[0]
    return torch.stack([predict(model, _with_images(data, t(images)), **kwargs) for t in transforms]).mean(0)
