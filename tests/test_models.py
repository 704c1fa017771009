import math
import urllib.error

import pytest
import timm
import torch
import torch.nn as nn
import torchvision

from cvlab import models
from cvlab.models import latency, summary, train_step_time

ZOO = ["lenet5", "alexnet", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50",
       "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0"]
IN_TORCHVISION = ["alexnet", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50",
                  "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
FORMS = {  # form: (create's keywords, input shape)
    "small": (dict(num_classes=10, in_chans=1, small_input=True), (2, 1, 28, 28)),
    "imagenet": (dict(num_classes=1000, in_chans=3), (2, 3, 224, 224)),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_(model: nn.Module) -> nn.Module:
    """Give batch norms non-trivial statistics and linears unit-scale weights, so equal logits mean something."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        elif isinstance(m, nn.Linear):
            m.weight.data.normal_(0, math.sqrt(2 / m.in_features), generator=g)
    return model


# --- every registered model -----------------------------------------------------------------------

def test_the_zoo_is_registered():
    assert set(ZOO) <= set(models.list_models())


SLOW_AT_224 = {"vgg16", "vgg16_bn"}  # built by the same code as vgg11 / vgg11_bn, four times the compute


@pytest.mark.parametrize("name, form", [
    pytest.param(name, form, marks=pytest.mark.slow) if form == "imagenet" and name in SLOW_AT_224 else (name, form)
    for name in models.list_models() for form in FORMS])
def test_forward_backward(name, form):
    kwargs, shape = FORMS[form]
    if name not in ZOO:  # models built for small images only (the training recipe's) have no small_input
        kwargs = {k: v for k, v in kwargs.items() if k != "small_input"}
    torch.manual_seed(0)
    model = models.create(name, **kwargs)
    x = torch.randn(shape)
    logits = model(x)
    assert logits.shape == (shape[0], kwargs["num_classes"])
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname

    model.eval()  # the split forward is the forward (the whole contract: test_models_registry.py)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(model.forward_head(features), model(x))
        assert features.ndim in (3, 4) and features.shape[0] == shape[0]  # tokens or maps, never pooled
        assert model.forward_head(features, pre_logits=True).shape == (shape[0], model.head_hidden_size)


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11_bn", "resnet18", "resnet50", "mobilenet_v1",
                                  "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0"])
def test_small_input_keeps_more_of_the_image(name):  # one name per code path: vgg16 builds as vgg11 does
    x = torch.randn(1, 1, 32, 32)
    small = models.create(name, num_classes=10, in_chans=1, small_input=True).eval()
    imagenet = models.create(name, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        small_map = small.forward_features(x).shape[-1]
        try:
            imagenet_map = imagenet.forward_features(x).shape[-1]
        except ValueError:  # the ImageNet stem cannot take 32 px at all
            imagenet_map = 0
    assert small_map > imagenet_map and small_map >= 2


# --- faithful to torchvision -----------------------------------------------------------------------

@pytest.mark.parametrize("name", [n if n not in SLOW_AT_224 else pytest.param(n, marks=pytest.mark.slow)
                                  for n in IN_TORCHVISION])
def test_matches_torchvision(name):
    torch.manual_seed(0)
    reference = randomize_(getattr(torchvision.models, name)())
    model = models.create(name, num_classes=1000, in_chans=3)
    assert n_params(model) == n_params(reference)
    model.load_state_dict(reference.state_dict())  # same module names: no key map

    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference.eval()(x)
        assert expected.std() > 0.01  # a scale at which atol=1e-5 is a real test
        torch.testing.assert_close(model.eval()(x), expected, atol=1e-5, rtol=0)

        if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            return
        # Training mode: batch statistics, dropout drawn from the same seed, and the same running-stat update
        # (at 96 px, to save time: the size does not matter here).
        reference.train(), model.train()
        x = x[..., :96, :96]
        torch.manual_seed(1)
        expected = reference(x)
        torch.manual_seed(1)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.state_dict(), reference.state_dict(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name, width_mult", [("mobilenet_v2", 0.5), ("mobilenet_v3_small", 0.75)])
def test_width_mult_matches_torchvision(name, width_mult):
    reference = getattr(torchvision.models, name)(width_mult=width_mult)
    model = models.create(name, num_classes=1000, in_chans=3, width_mult=width_mult)
    assert n_params(model) == n_params(reference)
    model.load_state_dict(reference.state_dict())


def test_mobilenet_v1_matches_timm():
    """torchvision has no MobileNetV1; timm's mobilenetv1_100 holds the same tensors in the same order."""
    torch.manual_seed(0)
    reference = randomize_(timm.create_model("mobilenetv1_100")).eval()
    model = models.create("mobilenet_v1", num_classes=1000, in_chans=3).eval()
    assert n_params(model) == n_params(reference)
    theirs = reference.state_dict()
    assert [t.shape for t in model.state_dict().values()] == [t.shape for t in theirs.values()]
    model.load_state_dict(dict(zip(model.state_dict(), theirs.values())))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)


def test_lenet5_has_the_papers_parameter_count():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (LeCun et al. 1998, with a full C3).
    assert n_params(models.create("lenet5", num_classes=10, in_chans=1)) == 61_706


# --- pretrained torchvision weights, without the network -----------------------------------------

@pytest.fixture
def torchvision_hub(monkeypatch):
    """Serve ``state_dict`` where torchvision's weights would be downloaded from."""
    served = {}

    def fake_download(url, **kwargs):
        if "state_dict" not in served:
            raise urllib.error.URLError("no internet here")
        served["url"] = url
        return {k: v.clone() for k, v in served["state_dict"].items()}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    return served


def test_pretrained_offline_error_names_the_offline_model(torchvision_hub):
    with pytest.raises(RuntimeError, match="efficientnet_lite0"):
        models.create("resnet18", num_classes=1000, in_chans=3, pretrained=True)


def test_pretrained_loads_torchvision_weights(torchvision_hub):
    torch.manual_seed(0)
    reference = randomize_(torchvision.models.resnet18()).eval()
    torchvision_hub["state_dict"] = reference.state_dict()
    x = torch.randn(2, 3, 64, 64)

    model = models.create("resnet18", num_classes=1000, in_chans=3, pretrained=True).eval()
    assert torchvision_hub["url"] == torchvision.models.ResNet18_Weights.DEFAULT.url
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)

    # A new task keeps everything but the head; one input channel folds the stem's RGB filters together.
    model = models.create("resnet18", num_classes=10, in_chans=1, pretrained=True)
    assert model.fc.out_features == 10
    torch.testing.assert_close(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))


@pytest.mark.parametrize("name, kwargs, match", [
    ("lenet5", {}, "no ImageNet weights.*efficientnet_lite0"),
    ("mobilenet_v1", {}, "no ImageNet weights"),
    ("resnet18", {"small_input": True}, "small_input=False"),
])
def test_pretrained_refusals_say_why(torchvision_hub, name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create(name, num_classes=1000, in_chans=3, pretrained=True, **kwargs)


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11"])
@pytest.mark.parametrize("small_input", [False, True])
def test_smallest_input_and_a_clear_error_below_it(name, small_input):
    model = models.create(name, num_classes=10, in_chans=1, small_input=small_input).eval()
    size = model.min_size
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 10)
        with pytest.raises(ValueError, match=f"at least {size}x{size} px") as error:
            model(torch.randn(1, 1, size - 1, size + 8))
    assert ("small_input=True" in str(error.value)) != small_input
    assert models.create(name, num_classes=10, in_chans=1, small_input=True).min_size <= 28


def test_wrong_channels_and_unknown_names():
    model = models.create("resnet18", num_classes=10, in_chans=1, small_input=True)
    with pytest.raises(ValueError, match=r"expects a \(B, 1, H, W\) batch"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown model"):
        models.create("resnet19", num_classes=10, in_chans=1)
    with pytest.raises(TypeError):
        models.create("resnet18", num_classes=10, in_chans=1, smal_input=True)


# --- summary and latency ----------------------------------------------------------------------------

def test_summary_matches_a_hand_count():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10))
    s = summary(model, (2, 1, 8, 8))
    assert [r.name for r in s.layers] == ["0", "1", "2", "3", "4"]
    assert [r.output_shape for r in s.layers] == [(2, 4, 8, 8), (2, 4, 8, 8), (2, 4, 4, 4), (2, 64), (2, 10)]
    assert [r.params for r in s.layers] == [4 * 9 + 4, 0, 0, 0, 64 * 10 + 10]
    # 2 FLOPs per multiply-add; bias adds, ReLU and pooling are not counted.
    assert [r.flops for r in s.layers] == [2 * 2 * (4 * 8 * 8) * 9, 0, 0, 0, 2 * 2 * 64 * 10]
    assert [r.activation_bytes for r in s.layers] == [4 * n for n in (512, 512, 128, 128, 20)]
    assert (s.total_params, s.total_flops, s.activation_bytes) == (690, 9216 + 2560, 4 * 1300)
    assert s.param_bytes == 4 * 690 and s.trainable_params == 690
    assert "690" in str(s) and len(s.records()) == 5


def test_summary_of_lenet5():
    model = models.create("lenet5", num_classes=10, in_chans=1).train()
    s = summary(model, (1, 32, 32))  # (C, H, W): batch 1
    assert s.input_size == (1, 1, 32, 32) and model.training
    assert s.total_params == sum(r.params for r in s.layers) == 61_706
    # Multiply-adds: C1 6*28*28*25, C3 16*10*10*150, then 400*120 + 120*84 + 84*10.
    assert s.total_flops == sum(r.flops for r in s.layers) == 2 * (117_600 + 240_000 + 48_000 + 10_080 + 840)
    assert s.layers[-1].output_shape == (1, 10)
    assert "61,706" in str(s)


def test_summary_counts_a_reused_module_once():
    model = models.create("resnet18", num_classes=10, in_chans=1, small_input=True)
    s = summary(model, (1, 1, 32, 32))
    assert sum(r.params for r in s.layers) == s.total_params == n_params(model)
    relu_calls = [r for r in s.layers if r.name == "layer1.0.relu"]
    assert len(relu_calls) == 2  # BasicBlock calls its ReLU twice: two rows


def test_latency():
    model = models.create("lenet5", num_classes=10, in_chans=1).train()
    m = latency(model, (1, 1, 32, 32), "cpu", min_run_time=0.05)
    assert 0 < m.median < 1 and model.training


def test_train_step_time_leaves_the_model_alone():
    model = models.create("lenet5", num_classes=10, in_chans=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    for amp in (False, "bf16"):
        seconds = train_step_time(model, x, y, amp=amp, steps=3)
        assert 0 < seconds < 5
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="steps=0"):
        train_step_time(model, x, y, steps=0)
    with pytest.raises(ValueError, match="amp='half'"):
        train_step_time(model, x, y, amp="half")


def test_train_step_time_measures_the_work():
    # 32 times the batch is measurably slower: the timer times the step, not a constant overhead.
    model = models.create("small_resnet", num_classes=10, in_chans=1)
    small = train_step_time(model, torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)), steps=3)
    large = train_step_time(model, torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,)), steps=3)
    assert large > 2 * small
