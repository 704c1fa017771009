"""The model registry's rules (duplicates, the timm fallback, timm's interface on every model, the spec
that rebuilds a model, timm's keywords on the names timm has too) and the default recipe's small_resnet."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn

from cvlab import models, transfer
from cvlab.models.vit import VisionTransformer

# Each model in its cheapest form for 32 px images: the ImageNet form (it downsamples at once) except where
# that form has a 100M-parameter classifier (AlexNet, VGG): their small_input form has a 512-1024 wide one.
SMALL_FORM = {"alexnet", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"}


def cheap(name: str) -> dict:
    """create's keywords for the cheapest form of ``name``, with 5 classes and RGB input."""
    return dict(num_classes=5, in_chans=3, **({"small_input": True} if name in SMALL_FORM else {}))


def classifiers(model: nn.Module) -> list[nn.Module]:
    head = model.get_classifier()
    return list(head) if isinstance(head, tuple) else [head]


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
        torch.testing.assert_close(model.forward_features(x), maps)  # maps, as timm's CNNs give
        torch.testing.assert_close(model.forward_head(maps, pre_logits=True), maps.mean((2, 3)))
        assert model(x).shape == (2, 10)


def test_small_resnet_narrow_has_no_stem_its_first_stage_reads_the_image():
    model = models.create("small_resnet_narrow", num_classes=10, in_chans=1).eval()
    assert isinstance(model.stem, torch.nn.Identity) and model.stages[0].conv.in_channels == 1
    assert [s.conv.out_channels for s in model.stages] == [16, 48, 96] and model.num_features == 96
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 96, 3, 3)  # 28 -> 14 -> 7 -> 3, one stage fewer than stem + 3


def test_extract_features_of_small_resnet_are_its_pooled_maps():
    # Regression: forward_features gave pooled vectors and forward_head had no pre_logits (a TypeError).
    torch.manual_seed(0)
    model = models.create("small_resnet", num_classes=10, in_chans=1)
    x = torch.randn(6, 1, 28, 28)
    feats, labels = transfer.extract_features(model, (x, torch.arange(6)), batch_size=4)
    assert feats.shape == (6, model.num_features) and labels.tolist() == list(range(6))
    with torch.no_grad():
        torch.testing.assert_close(feats, model.eval().stages(model.stem(x)).mean((2, 3)))


# --- timm's interface on every zoo model ----------------------------------------------------------

@pytest.mark.parametrize("name", models.list_models())
def test_every_model_has_timms_interface(name):
    torch.manual_seed(0)
    model = models.create(name, **cheap(name)).eval()
    x = torch.randn(2, 3, 32, 32)  # every cheap form takes 32 px (the 224 px ViTs resample to a 2x2 grid)
    vit = isinstance(model, VisionTransformer)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.ndim == (3 if vit else 4)  # tokens (B, N, D) or maps (B, C, H, W), not a pooled vector
        assert features.shape[-1 if vit else 1] == model.num_features
        assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)
        assert torch.equal(model(x), model.forward_head(features))
    assert model.num_classes == 5
    assert [h.out_features for h in classifiers(model)] == [5] * (2 if hasattr(model, "head_dist") else 1)
    head = {id(p) for h in classifiers(model) for p in h.parameters()}
    assert set(transfer.blocks(model)[-1].params) == {n for n, p in model.named_parameters() if id(p) in head}

    # cvlab.transfer on it: features, blocks, freezing, a new head.
    feats, _ = transfer.extract_features(model, (x, torch.zeros(2)))
    assert feats.shape == (2, model.head_hidden_size)
    transfer.freeze(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(transfer.blocks(model)[-1].params)
    transfer.replace_head(model, 3)
    assert all(p.requires_grad for h in classifiers(model) for p in h.parameters())
    assert model.cvlab_spec["num_classes"] == model.num_classes == 3

    model.reset_classifier(7)
    assert [h.out_features for h in classifiers(model)] == [7] * len(classifiers(model)) and model.num_classes == 7
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        model.reset_classifier(0)  # timm: no classifier, the model returns its pre-logits
        assert all(isinstance(h, nn.Identity) for h in classifiers(model))
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x), pre_logits=True))
    headless = models.create(name, **dict(cheap(name), num_classes=0)).eval()  # timm: built without a classifier
    assert all(isinstance(h, nn.Identity) for h in classifiers(headless)) and headless.num_classes == 0
    with torch.no_grad():
        assert headless(x).shape == (2, headless.head_hidden_size)


# --- cvlab_spec: what rebuilds a model -------------------------------------------------------------

@pytest.mark.parametrize("name", models.list_models())
def test_the_spec_rebuilds_the_same_model(name):
    model = models.create(name, **cheap(name))
    spec = json.loads(json.dumps(model.cvlab_spec))  # as a checkpoint stores it
    kwargs = {k: v for k, v in cheap(name).items() if k not in ("num_classes", "in_chans")}
    assert spec == {"name": name, "num_classes": 5, "in_chans": 3, "kwargs": kwargs}
    with torch.device("meta"):  # shapes only, no memory: as lesson 05 builds the ImageNet forms
        rebuilt = models.create(spec["name"], num_classes=spec["num_classes"], in_chans=spec["in_chans"],
                                **spec["kwargs"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert rebuilt.cvlab_spec == spec



def test_the_spec_of_timm_models_and_of_keywords_that_are_not_json():
    model = models.create("resnet10t", num_classes=4, in_chans=1, pretrained=False, drop_rate=0.1)
    assert model.cvlab_spec == {"name": "resnet10t", "num_classes": 4, "in_chans": 1,
                                "kwargs": {"drop_rate": 0.1}}  # pretrained left out: a checkpoint has the weights
    spec = model.cvlab_spec
    rebuilt = models.create(spec["name"], num_classes=spec["num_classes"], in_chans=spec["in_chans"], **spec["kwargs"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert models.create("small_resnet", num_classes=2, in_chans=1, widths=(4, 8)).cvlab_spec["kwargs"] == \
        {"widths": [4, 8]}  # tuples as lists, as JSON gives them back
    assert models.create("resnet10t", num_classes=2, act_layer=nn.ReLU).cvlab_spec is None  # a class is not JSON


# --- the names that are timm's too take timm's keywords --------------------------------------------

SHADOWED = [n for n in models.list_models() if timm.is_model(n)]


def test_which_names_are_timms_too():
    assert SHADOWED == ["deit_tiny_distilled_patch16_224", "efficientnet_lite0", "resnet18", "resnet34", "resnet50",
                        "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vit_tiny_patch16_224"]


@pytest.mark.parametrize("name", SHADOWED)
def test_shadowed_names_take_timms_common_keywords(name):
    vit = name.startswith(("vit_", "deit_"))
    timm_kwargs = dict(num_classes=4, in_chans=1, pretrained=False, drop_rate=0.5,
                       global_pool="token" if vit else "avg", **({"drop_path_rate": 0.1} if vit else {}))
    torch.manual_seed(0)
    model = models.create(name, **timm_kwargs, **({"small_input": True} if name in SMALL_FORM else {}))
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 4)
        assert torch.equal(model(x), model(x))
        assert not torch.equal(model.train()(x), model(x))  # the dropout the keywords asked for, in training only
    if name != "efficientnet_lite0":  # that one is timm's network: every pool timm has
        with pytest.raises(ValueError, match="global_pool"):
            models.create(name, global_pool="max")
