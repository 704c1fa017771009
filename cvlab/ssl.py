"""Self-supervised learning (lesson 10): learn features from images without labels, then judge them.

    encoder = cvlab.models.create("small_resnet", num_classes=0, in_chans=1)    # pooled features out
    fit(ssl.WithProjection(encoder), images, epochs=20, task=cvlab.tasks.Contrastive())   # SimCLR
    fit(ssl.rotation_model(encoder), images, epochs=20, task=ssl.Rotation())   # predict 0/90/180/270 degrees
    feats, labels = cvlab.transfer.extract_features(encoder, train_set)
    ssl.knn_accuracy(feats, labels, test_feats, test_labels, k=20)   # a label-free encoder, judged by its neighbours

The two objectives: a *pretext task* invents labels from the images themselves (here: which way up an
image was turned); *contrastive learning* (SimCLR, :class:`cvlab.tasks.Contrastive` and
:func:`cvlab.tasks.nt_xent`) asks two random views of one image to have nearby embeddings and views of
different images distant ones. Both train through ``fit`` with a task; the views are drawn on the device.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tasks import Classification, Contrastive, jitter_tone, logits_of, nt_xent, random_views

__all__ = ["Rotation", "rotation_model", "WithProjection", "crop_views", "knn_predict", "knn_accuracy",
           "Contrastive", "nt_xent", "random_views"]


class Rotation(Classification):
    """Rotation prediction (Gidaris et al., 2018): each training image is turned by 0, 90, 180 or 270
    degrees at random and the model is trained to say which (4 classes). To get it right it has to learn
    what a sneaker or a shirt looks like the right way up. Images must be square. Validation rotates
    every image all four ways, so its accuracy does not depend on a random draw. The data's own labels
    are ignored: any (images, labels) data will do."""
    classifies = False   # the targets are the turns made here; fit does not check the data's labels
    mirror_safe = False  # a mirrored 90-degree turn looks like a 270-degree one: no test-time flips

    def loss(self, out, targets) -> torch.Tensor:
        if logits_of(out).shape[-1] != 4:  # a shape, known on the host: no sync
            raise ValueError(f"rotation prediction needs a model with 4 outputs (0, 90, 180, 270 degrees); this one "
                             f"gives {logits_of(out).shape[-1]}. Use ssl.rotation_model(encoder).")
        return super().loss(out, targets)


    def prepare(self, x, y, train: bool):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rotation prediction needs square images; got {x.shape[-2]}x{x.shape[-1]}")
        if not train:  # all four turns of every image: (4B, C, H, W), targets 0..3 by block
            turns = torch.arange(4, device=x.device).repeat_interleave(len(x))
            return torch.cat([x.rot90(k, (2, 3)) for k in range(4)]), turns
        turns = torch.randint(0, 4, (len(x),), device=x.device)  # drawn on the device: no host sync
        rotated = torch.stack([x.rot90(k, (2, 3)) for k in range(4)])  # (4, B, C, H, W)
        return rotated[turns, torch.arange(len(x), device=x.device)], turns


def rotation_model(encoder: nn.Module) -> nn.Module:
    """``encoder`` (a zoo model) with a fresh 4-way head for :class:`Rotation`; the same module object,
    so the encoder's weights are the ones trained (and its checkpoints rebuild a 4-way model).
    ``encoder.reset_classifier(0)`` later drops the head."""
    from .transfer import replace_head
    return replace_head(encoder, 4)


class WithProjection(nn.Module):
    """An encoder (pooled features, e.g. a zoo model with ``num_classes=0``) followed by SimCLR's projection
    head: Linear-ReLU-Linear to ``dim``. The loss is applied to the projection; the features *before* it
    transfer better, so after training keep ``.encoder`` and drop the head."""

    def __init__(self, encoder: nn.Module, dim: int = 64, hidden: int | None = None):
        super().__init__()
        width = getattr(encoder, "head_hidden_size", getattr(encoder, "num_features", None))  # what it returns headless
        if width is None:
            raise ValueError("WithProjection needs an encoder with num_features (a cvlab or timm model)")
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(width, hidden or width), nn.ReLU(inplace=True), nn.Linear(hidden or width, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def crop_views(x: torch.Tensor, *, scale: tuple[float, float] = (0.25, 1.0), jitter: float = 0.4) -> torch.Tensor:
    """One SimCLR view of each image in a batch, drawn on its device with one ``grid_sample`` call: a random
    crop covering ``scale`` of the area, resized back to full size, a horizontal flip half the time, then
    brightness and contrast scaled by up to ±``jitter``. Crops are SimCLR's most important augmentation:
    to match two crops of one image the encoder must know its parts, not only its overall brightness."""
    b, dev = len(x), x.device
    side = torch.empty(b, device=dev).uniform_(*scale).sqrt()          # crop side as a fraction of the image
    flip = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0)
    shift = (1 - side) * (2 * torch.rand(2, b, device=dev) - 1)        # the crop stays inside the image
    zero = torch.zeros(b, device=dev)
    theta = torch.stack([torch.stack([side * flip, zero, shift[0]], 1),
                         torch.stack([zero, side, shift[1]], 1)], 1)   # (B, 2, 3): output -> input coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return jitter_tone(x, jitter)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, features: torch.Tensor, *,
                k: int = 20, batch_size: int = 1024) -> torch.Tensor:
    """The majority label among each row's ``k`` nearest training features by cosine similarity (ties:
    the smallest label, as scikit-learn's ``KNeighborsClassifier(metric="cosine")`` breaks them)."""
    if len(train_features) != len(train_labels):
        raise ValueError(f"{len(train_features)} training feature rows but {len(train_labels)} labels")
    if not 1 <= k <= len(train_features):
        raise ValueError(f"k must be between 1 and the number of training features ({len(train_features)}); got {k}")
    bank = F.normalize(train_features.float(), dim=1)
    train_labels = train_labels.to(bank.device)
    n_classes = int(train_labels.max()) + 1
    out = []
    for chunk in F.normalize(features.float(), dim=1).split(batch_size):
        nearest = (chunk @ bank.T).topk(k, dim=1).indices                  # (b, k)
        votes = F.one_hot(train_labels[nearest], n_classes).sum(1)         # (b, classes)
        out.append(votes.argmax(1))                                        # first maximum: the smallest label
    return torch.cat(out)


def knn_accuracy(train_features, train_labels, features, labels, *, k: int = 20) -> float:
    """Accuracy of :func:`knn_predict`: how well an encoder's neighbourhoods agree with the labels, with no
    training at all on top of it; the usual quick check of a self-supervised representation."""
    return (knn_predict(train_features, train_labels, features, k=k) == labels).float().mean().item()
