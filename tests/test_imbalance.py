"""cvlab.imbalance: the rare-positive task, focal loss against cross-entropy and torchvision, weights, resampling, fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torchvision.ops import sigmoid_focal_loss

from cvlab import data as cvdata
from cvlab.imbalance import FocalLoss, class_weights, make_imbalanced, oversample, weighted_loader, weighted_sampler
from cvlab.train import fit


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(2000))


@pytest.fixture(scope="module")
def rare(fmnist):
    return make_imbalanced(fmnist, positive=8, fraction=0.05)  # bags: 5% of the images


def test_make_imbalanced_keeps_every_negative_and_five_percent_positives(fmnist, rare):
    n_neg = int((fmnist.labels != 8).sum())
    assert int((rare.labels == 0).sum()) == n_neg
    assert rare.labels.float().mean().item() == pytest.approx(0.05, abs=0.001)
    assert rare.classes == ["not Bag", "Bag"]
    # Every positive is a real bag image of the source.
    bag_images = {img.numpy().tobytes() for img in fmnist.images[fmnist.labels == 8]}
    assert all(img.numpy().tobytes() in bag_images for img in rare.images[rare.labels == 1])
    with pytest.raises(ValueError, match="only"):
        make_imbalanced(fmnist, 8, fraction=0.5)
    with pytest.raises(ValueError, match="positive=10"):
        make_imbalanced(fmnist, 10)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(64, 5, generator=gen), torch.randint(0, 5, (64,), generator=gen)
    torch.testing.assert_close(FocalLoss(gamma=0)(logits, targets), F.cross_entropy(logits, targets))
    alpha = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1])
    torch.testing.assert_close(FocalLoss(gamma=0, alpha=alpha)(logits, targets),
                               F.cross_entropy(logits, targets, weight=alpha))
    torch.testing.assert_close(FocalLoss(gamma=0, reduction="none")(logits, targets),
                               F.cross_entropy(logits, targets, reduction="none"))


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (1.0, 0.75), (3.0, 0.5)])
def test_two_class_focal_loss_equals_torchvisions_sigmoid_focal_loss(gamma, alpha):
    # softmax over (0, z) is sigmoid(z): a 2-class model with one free logit is torchvision's binary case.
    gen = torch.Generator().manual_seed(1)
    z, t = 3 * torch.randn(100, generator=gen), torch.randint(0, 2, (100,), generator=gen)
    ours = FocalLoss(gamma=gamma, alpha=[1 - alpha, alpha], reduction="none")(torch.stack([torch.zeros(100), z], 1), t)
    torch.testing.assert_close(ours, sigmoid_focal_loss(z, t.float(), alpha=alpha, gamma=gamma, reduction="none"))


def test_focal_loss_shrinks_easy_examples_more_than_hard_ones():
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.2, 0.0]])
    y = torch.tensor([0])
    ratio = lambda x: (FocalLoss(gamma=2)(x, y) / F.cross_entropy(x, y)).item()  # noqa: E731
    assert ratio(easy) < 0.001 and ratio(hard) > 0.2


def test_focal_loss_rejects_soft_targets_and_bad_gamma():
    with pytest.raises(ValueError, match="class indices"):
        FocalLoss()(torch.randn(4, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match="gamma=-1"):
        FocalLoss(gamma=-1)


def test_class_weights_are_scikit_learns_balanced_weights(rare):
    w = class_weights(rare.labels)
    ref = compute_class_weight("balanced", classes=np.array([0, 1]), y=rare.labels.numpy())
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)
    counts = torch.bincount(rare.labels)
    torch.testing.assert_close((w * counts).sum() / 2, (w * counts)[0])  # each class's total weight is equal
    with pytest.raises(ValueError, match=r"classes \[2\] have no images"):
        class_weights(rare.labels, num_classes=3)


def test_weighted_sampler_draws_classes_equally(rare):
    drawn = rare.labels[list(weighted_sampler(rare.labels, num_samples=20_000))]
    assert drawn.float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_oversample_repeats_the_rare_class_and_keeps_the_originals(rare):
    n_pos, n_neg = int(rare.labels.sum()), int((rare.labels == 0).sum())
    five = oversample(rare, factor=5)
    assert int(five.labels.sum()) == 5 * n_pos and int((five.labels == 0).sum()) == n_neg
    balanced = oversample(rare)
    assert int(balanced.labels.sum()) == n_neg
    originals = {img.numpy().tobytes() for img in rare.images[rare.labels == 1]}
    assert {img.numpy().tobytes() for img in five.images[five.labels == 1]} == originals
    assert five.labels[:50].sum() > 0  # shuffled: the repeats are not all at the end


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 7 * 7, 2))


@pytest.mark.parametrize("how", ["focal", "weighted_ce", "sampler", "oversample"])
def test_each_remedy_trains_through_fit_and_finds_the_rare_class(rare, how):
    torch.manual_seed(0)
    model = tiny_cnn()
    train, kwargs = rare, {"batch_size": 64}
    if how == "focal":
        kwargs["loss_fn"] = FocalLoss(gamma=2.0, alpha=class_weights(rare.labels))
    elif how == "weighted_ce":
        kwargs["loss_fn"] = nn.CrossEntropyLoss(weight=class_weights(rare.labels))
    elif how == "sampler":
        train, kwargs = weighted_loader(rare, batch_size=64), {}  # the loader has its batch size
    else:
        train = oversample(rare)
    fit(model, train, epochs=3, lr=0.05, progress=False, device="cpu", **kwargs)
    with torch.no_grad():
        preds = model(rare.images.float() / 255).argmax(1)
    recall = (preds[rare.labels == 1] == 1).float().mean().item()
    assert recall > 0.8, f"{how}: training recall of the rare class {recall:.2f}"
