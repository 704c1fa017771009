"""cvlab.explain.gradcam against the grad-cam package (pytorch-grad-cam) on the same model, layer and input."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import pytorch_grad_cam as reference  # the grad-cam package, in the dev extra
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cvlab import data as cvdata
from cvlab import models
from cvlab.explain import GradCAM, feature_maps, gradcam, overlay, plot_feature_maps, plot_gradcam
from cvlab.train import fit

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(1500))


@pytest.fixture(scope="module")
def trained(fmnist):
    """small_resnet after one short epoch: a random network's maps are mostly zero after the ReLU, a trained one's are not."""
    torch.manual_seed(0)
    model = models.create("small_resnet", num_classes=10, in_chans=1)
    fit(model, fmnist.take(range(1000)), epochs=1, lr=0.1, batch_size=64, progress=False, device="cpu")
    return model.eval()


def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("resnet18", num_classes=5, in_chans=3)


def reference_cam(model, layer, x, target):
    targets = None if target is None else [ClassifierOutputTarget(target)] * len(x)
    with reference.GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=targets)


def check_equal(model, layer, x, target):
    ours = gradcam(model, layer, x, target)
    ref = reference_cam(model, model.get_submodule(layer), x, target)
    assert ours.shape == (x.shape[0], *x.shape[2:])
    assert (ours.flatten(1).max(1).values > 0.99).any()  # real maps scaled to [0, 1], not all zeros
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("target", [None, 3])
@pytest.mark.parametrize("layer", ["stages.2", "stages.1", "stages.0.residual"])
def test_gradcam_equals_pytorch_grad_cam_on_a_trained_cnn(trained, fmnist, layer, target):
    check_equal(trained, layer, fmnist.images[1000:1016].float() / 255, target)


@pytest.mark.parametrize("target", [None, 3])
@pytest.mark.parametrize("layer, shape", [("layer4", (3, 3, 64, 64)), ("layer3", (3, 3, 48, 80))])
def test_gradcam_equals_pytorch_grad_cam_on_a_timm_resnet(layer, shape, target):
    torch.manual_seed(0)
    model = models.create("resnet18", num_classes=5, in_chans=3)  # timm's, random weights
    check_equal(model, layer, torch.rand(shape, generator=torch.Generator().manual_seed(1)), target)


def test_the_hook_comes_off_and_the_model_mode_is_kept():
    torch.manual_seed(0)
    model = models.create("small_resnet", num_classes=10, in_chans=1).train()
    layer = model.stages[2]
    with GradCAM(model, layer) as cam:
        assert len(layer._forward_hooks) == 1
        cam(torch.rand(2, 1, 28, 28))
    assert len(layer._forward_hooks) == 0 and model.training
    assert all(p.grad is None for p in model.parameters())  # explaining does not touch the training gradients


def test_per_image_targets_explain_each_image_for_its_own_class(trained, fmnist):
    x = fmnist.images[1000:1003].float() / 255
    together = gradcam(trained, "stages.2", x, torch.tensor([0, 4, 7]))
    for i, c in enumerate([0, 4, 7]):
        torch.testing.assert_close(together[i], gradcam(trained, "stages.2", x[i:i + 1], c)[0], atol=1e-5, rtol=0)


def test_bad_layers_and_targets_are_named(trained):
    model = trained
    with pytest.raises(ValueError, match="no layer 'stages.9'"):
        gradcam(model, "stages.9", torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="feature maps"):
        gradcam(model, "head", torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"target classes must be in \[0, 10\)"):
        gradcam(model, "stages.2", torch.rand(1, 1, 28, 28), 12)


def test_feature_maps_are_the_layers_output(trained):
    model = trained
    x = torch.rand(2, 1, 28, 28)
    maps = feature_maps(model, "stem", x)
    with torch.no_grad():
        torch.testing.assert_close(maps, model.stem(x))
    assert maps.shape == (2, 8, 28, 28)
    fig = plot_feature_maps(maps[0], n=8)
    assert len([ax for ax in fig.axes if ax.images]) == 8
    with pytest.raises(ValueError, match="one image's maps"):
        plot_feature_maps(maps)


def test_overlay_blends_the_heat_map_into_the_image():
    img = torch.full((1, 28, 28), 128, dtype=torch.uint8)
    cam = torch.zeros(28, 28)
    cam[10:15, 10:15] = 1.0
    assert np.allclose(overlay(img, cam, alpha=0.0), 128 / 255)  # alpha 0: the gray image, as RGB
    blended = overlay(img, cam, alpha=0.5)
    assert blended.shape == (28, 28, 3)
    assert blended[12, 12, 0] > blended[0, 0, 0]  # hot spot: red in the jet colour map
    fig = plot_gradcam([img, img], [cam, cam], ["a", "b"], suptitle="two")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"] and fig._suptitle.get_text() == "two"
    with pytest.raises(ValueError, match="same size"):
        overlay(img, torch.zeros(7, 7))
