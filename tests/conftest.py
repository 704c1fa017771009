"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch

import cvlab
from cvlab import data
from cvlab.callbacks import Checkpoint
from cvlab.train import fit


@pytest.fixture(scope="session")
def fmnist_checkpoint(tmp_path_factory):
    """A small_resnet_narrow trained for 3 epochs on 10,000 Fashion-MNIST images (about 88% on the test set, 15 s),
    saved as ``best.pt``: the model lesson 11 deploys, in miniature. Returns the checkpoint's path."""
    out = tmp_path_factory.mktemp("fmnist_run")
    train = data.load("fashion_mnist", "train").take(range(10_000))
    val = data.load("fashion_mnist", "test").take(range(9_000, 10_000))  # tests use the first 9,000 test images
    torch.manual_seed(0)
    model = cvlab.models.create("small_resnet_narrow", num_classes=10, in_chans=1)
    loader = data.TensorLoader(train, batch_size=128, shuffle=True, device="cpu", mean=[0.286], std=[0.353])
    fit(model, loader, val, epochs=3, lr=0.1, progress=False, device="cpu", callbacks=[Checkpoint(out)])
    return out / "best.pt"
