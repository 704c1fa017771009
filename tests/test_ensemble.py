"""cvlab.ensemble: voting rules against plain averages and SciPy's mode, stratified k-fold, test-time augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from cvlab import data as cvdata
from cvlab import ensemble
from cvlab.train import predict


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(600))


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))


def random_probs(m: int, n: int = 200, c: int = 6, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, generator=gen).mul(2).softmax(1) for _ in range(m)]


def test_soft_voting_of_identical_models_equals_one_model(fmnist):
    model = tiny_cnn()
    one = predict(model, fmnist, device="cpu")
    torch.testing.assert_close(ensemble.soft_vote(ensemble.predict_all([model, model, model], fmnist, device="cpu")), one)


def test_soft_and_weighted_voting_are_weighted_means():
    probs = random_probs(3)
    torch.testing.assert_close(ensemble.soft_vote(probs), torch.stack(probs).mean(0))
    weights = [3.0, 1.0, 0.5]
    ref = np.average(np.stack([p.numpy() for p in probs]), axis=0, weights=weights)
    torch.testing.assert_close(ensemble.soft_vote(probs, weights), torch.from_numpy(ref).float())
    torch.testing.assert_close(ensemble.soft_vote(probs, [0, 1, 0]), probs[1])


def test_hard_voting_is_the_majority_class():
    probs = random_probs(5, c=4)
    votes = ensemble.hard_vote(probs)
    argmaxes = np.stack([p.argmax(1).numpy() for p in probs])  # (models, images)
    np.testing.assert_array_equal(votes.argmax(1).numpy(), stats.mode(argmaxes, axis=0).mode)  # ties: lowest class
    torch.testing.assert_close(votes.sum(1), torch.ones(200))
    # A model whose weight outweighs all others together decides every image.
    np.testing.assert_array_equal(ensemble.hard_vote(probs, [5, 1, 1, 1, 1]).argmax(1).numpy(), argmaxes[0])


def test_voting_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same shape"):
        ensemble.soft_vote([torch.rand(10, 3), torch.rand(10, 4)])
    with pytest.raises(ValueError, match="one non-negative value per model"):
        ensemble.soft_vote(random_probs(2), [1.0])
    with pytest.raises(ValueError, match="at least one model"):
        ensemble.hard_vote([])


def test_tta_with_only_the_identity_equals_plain_prediction(fmnist):
    model = tiny_cnn()
    torch.testing.assert_close(ensemble.tta_predict(model, fmnist, [ensemble.identity], device="cpu"),
                               predict(model, fmnist, device="cpu"), rtol=0, atol=0)


def test_tta_averages_probabilities_over_the_transformed_images(fmnist):
    model = tiny_cnn()
    mirrored = cvdata.ImageDataset(fmnist.images.flip(3), fmnist.labels, fmnist.classes)
    expected = (predict(model, fmnist, device="cpu") + predict(model, mirrored, device="cpu")) / 2
    got = ensemble.tta_predict(model, fmnist, [ensemble.identity, ensemble.hflip], device="cpu")
    torch.testing.assert_close(got, expected)
    # A normalizing TensorLoader keeps its normalization: the same as predicting the loader directly.
    loader = cvdata.TensorLoader(fmnist, batch_size=128, device="cpu", mean=[0.286], std=[0.353])
    torch.testing.assert_close(ensemble.tta_predict(model, loader, [ensemble.identity]), predict(model, loader))
    with pytest.raises(ValueError, match="evaluation TensorLoader"):
        ensemble.tta_predict(model, cvdata.TensorLoader(fmnist, shuffle=True, device="cpu"))


def test_shift_moves_the_content_and_fills_with_zeros():
    x = torch.arange(1, 26, dtype=torch.uint8).view(1, 1, 5, 5)
    down = ensemble.shift(1, 0)(x)
    assert (down[..., 0, :] == 0).all()
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :])
    left = ensemble.shift(0, -2)(x)
    torch.testing.assert_close(left[..., :, :3], x[..., :, 2:])
    assert (left[..., :, 3:] == 0).all()
    assert ensemble.vflip(x)[0, 0, 0, 0] == 21 and ensemble.hflip(x)[0, 0, 0, 0] == 5


def test_stratified_kfold_returns_fold_models_and_out_of_fold_predictions(fmnist):
    k = 3
    result = ensemble.kfold(lambda: tiny_cnn(1), fmnist, k=k, epochs=4, lr=0.1, batch_size=64, progress=False,
                            device="cpu")
    assert len(result.models) == k and len(result.histories) == k
    assert len({id(m) for m in result.models}) == k
    assert result.oof.shape == (600, 10)
    torch.testing.assert_close(result.oof.sum(1), torch.ones(600))  # every image predicted, once
    labels = fmnist.labels.numpy()
    share = np.bincount(labels, minlength=10) / len(labels)
    for i, model in enumerate(result.models):
        held = np.flatnonzero(result.fold == i)
        assert abs(len(held) - 600 / k) <= 1
        np.testing.assert_allclose(np.bincount(labels[held], minlength=10) / len(held), share, atol=0.02)  # stratified
        torch.testing.assert_close(result.oof[held], predict(model, fmnist.take(held), device="cpu"))
    assert result.oof_accuracy(fmnist.labels) > 0.55  # far above chance (0.1) after four epochs on 400 images
    with pytest.raises(ValueError, match="fewer than k=7"):
        ensemble.kfold(tiny_cnn, fmnist.take(range(50)), k=7, epochs=1)
