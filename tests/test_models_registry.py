"""The model registry's rules (duplicates, the timm fallback) and the default recipe's small_resnet."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cvlab import models


def test_a_duplicate_name_is_refused_and_the_original_kept():
    with pytest.raises(ValueError, match="'small_resnet' is already registered"):
        @models.register
        def small_resnet(*, num_classes, in_chans, pretrained=False):  # noqa: F811 - the clash is the point
            return nn.Linear(in_chans, num_classes)
    assert isinstance(models.create("small_resnet", num_classes=3, in_chans=1), models.cnn.SmallResNet)


def test_names_the_zoo_lacks_go_to_timm():
    assert "resnet10t" not in models.list_models()
    model = models.create("resnet10t", num_classes=7, in_chans=1)
    assert type(model).__module__.startswith("timm.")
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_small_resnet_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="small_resnet has no pretrained weights"):
        models.create("small_resnet", num_classes=10, in_chans=1, pretrained=True)


@pytest.mark.parametrize("in_chans, size, final", [(1, 28, 3), (3, 32, 4)])
def test_small_resnet_halves_the_resolution_per_stage(in_chans, size, final):
    model = models.create("small_resnet", num_classes=10, in_chans=in_chans, widths=(8, 16, 16, 32)).eval()
    x = torch.randn(2, in_chans, size, size)
    with torch.no_grad():
        maps = model.stages(model.stem(x))
        assert maps.shape == (2, 32, final, final)  # three stages: 28 -> 14 -> 7 -> 3
        torch.testing.assert_close(model.forward_features(x), maps.mean((2, 3)))
        assert model(x).shape == (2, 10)
