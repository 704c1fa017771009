"""The convolutional autoencoder: shapes, and anomaly detection of a planted set on Fashion-MNIST."""
from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from cvlab import data as cvdata
from cvlab.models.autoencoder import ConvAutoencoder, reconstruction_error, train_autoencoder


def test_shapes_and_range():
    ae = ConvAutoencoder(in_chans=3, widths=(8, 16), latent=4)
    out = ae(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert ae.encoder(torch.rand(2, 3, 32, 32)).shape == (2, 4, 8, 8)  # the bottleneck: 4 x 8 x 8 numbers per image
    with pytest.raises(ValueError, match="divisible by 4"):
        ae(torch.rand(1, 3, 30, 30))


def test_trained_on_trousers_it_flags_bags():
    torch.manual_seed(0)
    train, test = cvdata.load("fashion_mnist", "train"), cvdata.load("fashion_mnist", "test")
    normal = train.images[train.labels == 1][:1500]                     # trousers only
    trousers, bags = test.images[test.labels == 1][:300], test.images[test.labels == 8][:300]
    ae = ConvAutoencoder()
    history = train_autoencoder(ae, normal, epochs=10, device="cpu")
    assert history[-1] < history[0] / 2
    scores = reconstruction_error(ae, torch.cat([trousers, bags]))
    is_anomaly = torch.cat([torch.zeros(300), torch.ones(300)])
    auc = roc_auc_score(is_anomaly, scores)
    assert auc > 0.9, f"ROC-AUC {auc:.3f}"
    # Uint8 and float inputs score the same: scores are on the [0, 1] scale.
    torch.testing.assert_close(reconstruction_error(ae, bags[:5]), reconstruction_error(ae, bags[:5].float() / 255))
