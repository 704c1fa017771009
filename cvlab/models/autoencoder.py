"""A small convolutional autoencoder for anomaly detection on "normal" images only.

    ae = ConvAutoencoder(in_chans=1)
    train_autoencoder(ae, normal_images, epochs=10)
    scores = reconstruction_error(ae, test_images)    # high = unlike anything seen in training

The network squeezes each image through a small bottleneck and rebuilds it. Trained on normal images
only, it learns to rebuild those well; an image unlike them (a defect, another class) comes back
blurred or wrong, so its reconstruction error is an anomaly score, with no defect labels needed.
It is not in the classifier registry: it outputs images, not class logits.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import config
from ..preprocess import Preprocess

__all__ = ["ConvAutoencoder", "train_autoencoder", "reconstruction_error"]


class ConvAutoencoder(nn.Module):
    """Encoder: two stride-2 convolutions (28 -> 14 -> 7) and a 1x1 bottleneck of ``latent`` channels;
    decoder: the mirror image with transposed convolutions and a sigmoid, so outputs lie in [0, 1].

    Side lengths must be divisible by 4.
    """

    def __init__(self, *, in_chans: int = 1, widths: tuple[int, int] = (16, 32), latent: int = 8):
        super().__init__()
        w1, w2 = widths
        self.encoder = nn.Sequential(
            nn.Conv2d(in_chans, w1, 3, stride=2, padding=1), nn.ReLU(inplace=True),   # (B, w1, H/2, W/2)
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.ReLU(inplace=True),         # (B, w2, H/4, W/4)
            nn.Conv2d(w2, latent, 1),                                                 # (B, latent, H/4, W/4)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, w2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1), nn.ReLU(inplace=True),  # (B, w1, H/2, W/2)
            nn.ConvTranspose2d(w1, in_chans, 4, stride=2, padding=1), nn.Sigmoid(),     # (B, C, H, W)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"ConvAutoencoder needs sides divisible by 4; got {tuple(x.shape[-2:])}. Pad or resize "
                             "the images (e.g. 28 or 32 pixels).")
        return self.decoder(self.encoder(x))


def train_autoencoder(model: nn.Module, images: torch.Tensor, *, epochs: int = 10, lr: float = 2e-3,
                      batch_size: int = 128, seed: int = 0, device=None) -> list[float]:
    """Train ``model`` to rebuild ``images`` (N, C, H, W; uint8 or float in [0, 1]) by mean squared error with
    Adam; returns the mean loss of each epoch. It is :func:`cvlab.train.fit` with the
    :class:`~cvlab.tasks.Reconstruction` task."""
    from ..tasks import Reconstruction
    from ..train import fit
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (N, C, H, W); got shape {tuple(images.shape)}")
    history = fit(model, (images, torch.zeros(len(images), dtype=torch.long)), epochs=epochs, task=Reconstruction(),
                  optimizer="adam", lr=lr, weight_decay=0.0, schedule=None, batch_size=batch_size, seed=seed,
                  device=device if device is not None else config.device(), progress=False)
    return history["train_loss"]


def reconstruction_error(model: nn.Module, images: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """The anomaly score of each image (N,): the mean squared difference between it and its reconstruction."""
    from ..tasks import Reconstruction
    from ..train import evaluate
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (N, C, H, W); got shape {tuple(images.shape)}")
    data = (images, torch.zeros(len(images), dtype=torch.long))
    return evaluate(model, data, task=Reconstruction(), batch_size=batch_size, preprocess=Preprocess())["errors"]
