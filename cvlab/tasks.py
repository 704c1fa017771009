"""What ``fit`` trains a model to do: a task owns the loss, the metrics, and how a batch becomes
(inputs, targets).

    fit(model, train, val, epochs=10)                                    # Classification() by default
    fit(model, train, val, epochs=10, task=MultiLabel())                 # sigmoids + BCE; val mAP and F1
    fit(autoencoder, images, epochs=10, task=Reconstruction())           # rebuild the input; val PSNR
    fit(encoder, images, epochs=100, task=Contrastive(views))            # SimCLR's NT-Xent on two views
    fit(student, train, val, epochs=10, task=Distillation(teacher, "hard"))

A task is a plain object with these methods (subclass :class:`Task` for the defaults):

- ``prepare(x, y, train) -> (inputs, targets)``: on the device, under autocast; e.g. two augmented
  views for contrastive learning, the image itself as the target for reconstruction.
- ``loss(outputs, targets) -> scalar tensor``.
- ``train_sums(outputs, targets) -> {name: tensor}``: per-batch sums kept on the device (no host
  sync per step), one per name in ``train_metrics``; ``fit`` divides them by the images seen and
  records ``train_<name>``.
- ``evaluate(outputs, targets) -> dict``: lists of per-batch outputs and targets over a whole
  dataset -> ``loss`` and the task's metrics; ``metrics`` maps history names to its keys
  (``val_acc`` is ``evaluate(...)["accuracy"]``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Task", "Classification", "MultiLabel", "Reconstruction", "Contrastive", "Distillation", "nt_xent",
           "random_views"]


def logits_of(out):
    """The logits of a model's output: the first element when a model returns several (DeiT's two heads)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def hard_labels(targets: torch.Tensor | tuple) -> torch.Tensor:
    """Class indices (B,) from targets: indices as they are, probabilities (B, C) by argmax, (labels, extra) pairs by labels."""
    targets = targets[0] if isinstance(targets, (tuple, list)) else targets
    return targets.argmax(1) if targets.ndim == 2 else targets


class Task:
    """The defaults: inputs and targets as the loader gives them, no running metrics but the loss."""
    metrics: dict[str, str] = {}   # history name -> key of evaluate()'s result
    train_metrics: tuple = ()      # the keys of train_sums(): fit records train_<name>
    classifies = False             # True: fit checks class labels against the model's width
    mirror_safe = False            # True: targets do not change when an image is mirrored or shifted (TTA allowed)

    def prepare(self, x: torch.Tensor, y, train: bool):
        return x, y

    def loss(self, out, targets) -> torch.Tensor:
        raise NotImplementedError

    def train_sums(self, out, targets) -> dict[str, torch.Tensor]:
        return {}

    def evaluate(self, outs: list, targets: list) -> dict:
        n = sum(len(logits_of(o)) for o in outs)
        total = sum(self.loss(o, t).float() * len(logits_of(o)) for o, t in zip(outs, targets))
        return {"loss": float(total) / max(n, 1)}

    def to(self, device: torch.device) -> Task:
        """Move the task's modules (a weighted loss, a teacher) to ``device``."""
        for value in vars(self).values():
            if isinstance(value, nn.Module):
                value.to(device)
        return self


class Classification(Task):
    """Single-label classification: cross-entropy (with ``label_smoothing``) or your ``loss_fn``;
    training and validation accuracy. Targets may be class indices (B,) or probabilities (B, C) (Mixup)."""
    metrics = {"acc": "accuracy"}
    train_metrics = ("acc",)
    classifies = True
    mirror_safe = True

    def __init__(self, *, label_smoothing: float = 0.0, loss_fn: Callable | None = None):
        if loss_fn is not None and label_smoothing:
            raise ValueError("label_smoothing applies to the default cross-entropy; with your own loss_fn, build it "
                             "into that loss (e.g. nn.CrossEntropyLoss(label_smoothing=0.1, weight=...)).")
        self.custom = loss_fn is not None  # a loss of yours sees the model's whole output (e.g. DeiT's two heads)
        self.loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss(self, out, targets) -> torch.Tensor:
        return self.loss_fn(out if self.custom else logits_of(out), targets)

    def train_sums(self, out, targets) -> dict[str, torch.Tensor]:
        return {"acc": (logits_of(out).argmax(1) == hard_labels(targets)).sum()}

    def evaluate(self, outs: list, targets: list) -> dict:
        logits = torch.cat([logits_of(o).float() for o in outs])   # (N, C)
        labels = torch.cat([hard_labels(t) for t in targets])      # (N,)
        probs = logits.softmax(1)
        preds = probs.argmax(1)
        return {"loss": F.cross_entropy(logits, labels).item(), "accuracy": (preds == labels).float().mean().item(),
                "predictions": preds.cpu(), "probabilities": probs.cpu(), "labels": labels.cpu()}


class Distillation(Classification):
    """A student learns from labels and a frozen teacher (:mod:`cvlab.distill`): ``kind`` "none", "hard"
    or "soft"; validation is plain classification on the labels."""

    def __init__(self, teacher: nn.Module, kind: str = "soft", *, tau: float = 3.0, lam: float = 0.5):
        from .distill import DistillationLoss, Teacher
        super().__init__(loss_fn=DistillationLoss(kind, tau=tau, lam=lam))
        self.teacher = Teacher(teacher)

    def prepare(self, x, y, train: bool):
        return self.teacher(x, y) if train else (x, y)

    def to(self, device):
        self.teacher.model.to(device)
        return self


class MultiLabel(Task):
    """Several labels per image: one sigmoid per class, binary cross-entropy; targets (B, K) of 0/1.
    Validation: mean average precision over classes (``map``) and micro F1 at ``threshold`` (``f1``)."""
    metrics = {"map": "map", "f1": "f1"}
    mirror_safe = True

    def __init__(self, *, threshold: float = 0.5, pos_weight: torch.Tensor | None = None):
        self.threshold = threshold
        self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def loss(self, out, targets) -> torch.Tensor:
        if targets.ndim != 2 or targets.shape != logits_of(out).shape:
            raise ValueError(f"multi-label targets must be (batch, classes) = {tuple(logits_of(out).shape)} of 0/1; "
                             f"got {tuple(targets.shape)}")
        return self.bce(logits_of(out), targets.float())

    def evaluate(self, outs: list, targets: list) -> dict:
        from sklearn.metrics import average_precision_score, f1_score
        logits = torch.cat([logits_of(o).float() for o in outs])
        truth = torch.cat(targets).float()
        probs = logits.sigmoid()
        t, p = truth.cpu().numpy(), probs.cpu().numpy()
        present = t.sum(0) > 0  # AP is undefined for a class with no positive image
        return {"loss": self.bce(logits, truth).item(),
                "map": float(average_precision_score(t[:, present], p[:, present], average="macro")),
                "f1": float(f1_score(t, p >= self.threshold, average="micro", zero_division=0)),
                "probabilities": probs.cpu(), "labels": truth.cpu()}


class Reconstruction(Task):
    """Rebuild the input (an autoencoder): mean squared error; validation PSNR for images in [0, 1]."""
    metrics = {"psnr": "psnr"}

    def prepare(self, x, y, train: bool):
        return x, x

    def loss(self, out, targets) -> torch.Tensor:
        return F.mse_loss(out, targets)

    def evaluate(self, outs: list, targets: list) -> dict:
        per_image = torch.cat([((o.float() - t.float()) ** 2).flatten(1).mean(1) for o, t in zip(outs, targets)])
        mse = per_image.mean().item()
        return {"loss": mse, "psnr": -10 * math.log10(max(mse, 1e-12)), "errors": per_image.cpu()}


def nt_xent(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss for embeddings (2B, D) of two views, ``z[i]`` and ``z[i + B]`` of the same image.

    Each embedding's positive is the other view of its image; the 2B - 2 other embeddings are its
    negatives. With cosine similarities s/τ, the loss is the cross-entropy of picking the positive
    among all 2B - 1 others, averaged over the 2B anchors.
    """
    if z.ndim != 2 or len(z) % 2:
        raise ValueError(f"nt_xent takes (2B, D) embeddings, two views of B images; got {tuple(z.shape)}")
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.T / temperature                                   # (2B, 2B) scaled cosine similarities
    sim.fill_diagonal_(float("-inf"))                             # an embedding is not its own candidate
    return F.cross_entropy(sim, _partners(len(z), z.device))


def _partners(n: int, device: torch.device) -> torch.Tensor:
    """(n,) the index of each embedding's other view, for n = 2B stacked as [view 1 of all; view 2 of all];
    made on the device (no host-to-device copy per step)."""
    return torch.arange(n, device=device).roll(n // 2)


def random_views(x: torch.Tensor, *, padding: int = 4, jitter: float = 0.4) -> torch.Tensor:
    """One random view of each image in a batch, drawn on its device: a horizontal flip, a shift of up to
    ``padding`` pixels (pad and crop) and brightness/contrast scaled by up to ±``jitter``."""
    from .data import pad_crop
    b, dev = len(x), x.device
    flip = torch.rand(b, device=dev) < 0.5
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b), device=dev)
    return jitter_tone(pad_crop(x, padding, dy, dx, flip), jitter)


def jitter_tone(x: torch.Tensor, jitter: float) -> torch.Tensor:
    """Each image's contrast (around its own mean) and brightness changed by up to ±``jitter``, drawn on its device."""
    b, dev = len(x), x.device
    contrast = 1 + jitter * (2 * torch.rand(b, 1, 1, 1, device=dev) - 1)
    brightness = jitter * (2 * torch.rand(b, 1, 1, 1, device=dev) - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean + brightness


class Contrastive(Task):
    """Self-supervised contrastive learning (SimCLR): two random views of every image, the NT-Xent loss
    pulls each pair together. The model maps images to embeddings (an encoder + projection head).
    ``pair_acc``: how often an embedding's nearest neighbour in the batch is its own other view."""
    metrics = {"pair_acc": "pair_acc"}
    train_metrics = ("pair_acc",)

    def __init__(self, views: Callable[[torch.Tensor], torch.Tensor] = random_views, *, temperature: float = 0.5):
        self.views, self.temperature = views, temperature

    def prepare(self, x, y, train: bool):
        return torch.cat([self.views(x), self.views(x)]), None   # (2B, C, H, W): view 1 of all, then view 2

    def loss(self, out, targets) -> torch.Tensor:
        return nt_xent(logits_of(out), self.temperature)

    def train_sums(self, out, targets) -> dict[str, torch.Tensor]:
        z = F.normalize(logits_of(out).detach().float(), dim=1)
        sim = (z @ z.T).fill_diagonal_(float("-inf"))
        return {"pair_acc": (sim.argmax(1) == _partners(len(z), z.device)).sum() / 2}  # per image: mean of its two views

    def evaluate(self, outs: list, targets: list) -> dict:
        n = sum(len(o) // 2 for o in outs)
        loss = sum(self.loss(o, None).item() * (len(o) // 2) for o in outs) / n
        return {"loss": loss, "pair_acc": sum(self.train_sums(o, None)["pair_acc"].item() for o in outs) / n}
