"""cvlab.transfer: blocks, freezing, heads, per-block learning rates, gradual unfreezing, input adaptation, features."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn as nn
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

import cvlab
from cvlab import transfer
from cvlab.train import fit


@pytest.fixture(scope="module")
def fmnist():
    return cvlab.data.load("fashion_mnist", "test")


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return cvlab.models.create("efficientnet_lite0", pretrained=True, num_classes=10)


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    # zero_init_last=False: timm zeroes each residual branch's last BN scale, which would give the
    # branch's other parameters zero gradients at the start, and then "frozen" would be indistinguishable.
    return timm.create_model("resnet18", num_classes=10, zero_init_last=False)


def trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def starting(model: nn.Module, *prefixes: str) -> set[str]:
    """Parameter names under the given modules, read off the model's own naming."""
    return {n for n, _ in model.named_parameters() if n.startswith(tuple(f"{p}." for p in prefixes))}


def quiet(**kw):
    return dict(progress=False, device="cpu", **kw)


# ---------------------------------------------------------------------------------------------
# Blocks and freezing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_050", "vit_tiny_patch16_224", "small_resnet"])
def test_blocks_hold_every_parameter_once_with_the_classifier_last(name):
    model = timm.create_model(name, num_classes=7) if timm.is_model(name) and name != "small_resnet" \
        else cvlab.models.create(name, num_classes=7, in_chans=1)
    bl = transfer.blocks(model)
    names = [n for b in bl for n in b.params]
    assert len(names) == len(set(names)) and set(names) == {n for n, _ in model.named_parameters()}
    head = dict(model.named_parameters())
    assert {id(head[n]) for n in bl[-1].params} == {id(p) for p in _last_linear(model).parameters()}
    assert len(bl) >= 4


def _last_linear(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def test_timm_blocks_are_its_stages():
    assert [b.name for b in transfer.blocks(resnet18())] == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_freeze_up_to_a_name_leaves_exactly_the_later_blocks_trainable():
    model = resnet18()
    transfer.freeze(model, up_to="layer3")
    assert trainable(model) == starting(model, "layer4", "fc")
    transfer.freeze(model, up_to=2)  # conv1+bn1 and layer1
    assert trainable(model) == starting(model, "layer2", "layer3", "layer4", "fc")
    transfer.freeze(model)  # everything but the classifier: feature extraction
    assert trainable(model) == {"fc.weight", "fc.bias"}
    transfer.freeze(model, up_to=0)
    assert trainable(model) == {n for n, _ in model.named_parameters()}


def test_freeze_efficientnet_lite0_by_name(lite0):
    model = copy.deepcopy(lite0)
    transfer.freeze(model, up_to="blocks.4")
    assert trainable(model) == starting(model, "blocks.5", "blocks.6", "conv_head", "bn2", "classifier")
    transfer.freeze(model, up_to="conv_head")  # a part of a merged block names the whole block
    assert trainable(model) == starting(model, "classifier")


def test_unfreeze_counts_back_from_the_head():
    model = transfer.freeze(resnet18())
    transfer.unfreeze(model, "layer4")
    assert trainable(model) == starting(model, "layer4", "fc")
    transfer.unfreeze(model, 3)  # the last three blocks: layer3, layer4, fc
    assert trainable(model) == starting(model, "layer3", "layer4", "fc")
    transfer.unfreeze(model)
    assert trainable(model) == {n for n, _ in model.named_parameters()}


def test_a_training_step_moves_only_the_trainable_parameters(fmnist):
    model = transfer.freeze(resnet18(), up_to="layer3")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(transfer.param_groups(model, 0.1), lr=0.1)
    x = fmnist.images[:16].float().div(255).expand(-1, 3, -1, -1)
    nn.functional.cross_entropy(model(x), fmnist.labels[:16]).backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == starting(model, "layer4", "fc")


@pytest.mark.parametrize("call, message", [
    (lambda m: transfer.freeze(m, up_to="layer9"), "'layer9' is not a block"),
    (lambda m: transfer.freeze(m, up_to=7), "number of blocks from 0 to 6"),
    (lambda m: transfer.unfreeze(m, "blocks.3"), "layer1, layer2"),
    (lambda m: transfer.freeze(m, up_to=1.5), "must be a block name"),
    (lambda m: transfer.replace_head(m, 0), "positive whole number"),
    (lambda m: transfer.param_groups(m, [1e-3, 1e-2]), "2 learning rates for 6 blocks"),
    (lambda m: transfer.param_groups(m, slice(1e-2, 1e-4)), "0 < lowest <= highest"),
    (lambda m: transfer.GradualUnfreezing(m, {2: "layer9"}), "'layer9' is not a block"),
    (lambda m: transfer.GradualUnfreezing(m, {0: None}), "count from 1"),
    (lambda m: transfer.InputAdapter(m).prepare(torch.zeros(2, 4, 8, 8)), r"\(B, 1 or 3, H, W\)"),
])
def test_bad_input_is_refused_with_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call(resnet18())


def test_replace_head_gives_a_new_trainable_classifier(lite0):
    model = transfer.freeze(copy.deepcopy(lite0))
    transfer.replace_head(model, 3)
    assert model.classifier.out_features == 3 and model.classifier.weight.requires_grad
    torch.testing.assert_close(model.conv_head.weight, lite0.conv_head.weight)
    lenet = cvlab.models.create("lenet5", num_classes=10, in_chans=1)  # no reset_classifier: the last Linear
    transfer.replace_head(lenet, 4)
    assert lenet(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def deit(kind: str) -> nn.Module:
    torch.manual_seed(0)
    kwargs = dict(num_classes=10, img_size=32, depth=2)  # DeiT-Tiny's shapes, two blocks, 2x2 patches
    if kind == "timm":  # timm's own DeiT: get_classifier() returns (head, head_dist) there too
        return timm.create_model("deit_tiny_distilled_patch16_224", **kwargs)
    return cvlab.models.create("deit_tiny_distilled_patch16_224", **kwargs)


@pytest.mark.parametrize("kind", ["cvlab", "timm"])
def test_a_deits_classifier_is_both_heads(kind):
    # Regression: the last nn.Linear, head_dist, was taken for the classifier and the class head left frozen.
    model = deit(kind)
    bl = transfer.blocks(model)
    assert bl[-1].name == "head+head_dist" and set(bl[-1].params) == starting(model, "head", "head_dist")
    assert "dist_token" in bl[0].params  # an input-side token, frozen with the embeddings
    transfer.freeze(model)
    assert trainable(model) == starting(model, "head", "head_dist")

    transfer.freeze(model, up_to=len(bl))  # everything frozen, then a new task
    transfer.replace_head(model, 5)
    assert model.head.out_features == model.head_dist.out_features == model.num_classes == 5
    assert trainable(model) == starting(model, "head", "head_dist")
    model.set_distilled_training(True)
    logits, logits_dist = model.train()(torch.randn(2, 3, 32, 32))
    assert logits.shape == logits_dist.shape == (2, 5)
    (logits.sum() + logits_dist.sum()).backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == starting(model, "head", "head_dist")

    model.set_distilled_training(False)
    feats, _ = transfer.extract_features(model, (torch.randn(3, 3, 32, 32), torch.zeros(3)))
    assert feats.shape == (3, model.num_features)  # the mean of the class and distillation tokens, as timm


def test_a_deits_pre_logits_are_timms():
    ours, theirs = deit("cvlab").eval(), deit("timm").eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = ours.forward_features(x)
        torch.testing.assert_close(ours.forward_head(tokens, pre_logits=True),
                                   theirs.forward_head(theirs.forward_features(x), pre_logits=True), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# Parameter groups and schedules
# ---------------------------------------------------------------------------------------------

def test_param_groups_cover_every_trainable_parameter_once():
    model = transfer.freeze(resnet18(), up_to="layer2")
    groups = transfer.param_groups(model, slice(1e-5, 1e-3))
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert [g["name"] for g in groups] == ["layer3", "layer4", "fc"]
    lrs = [g["lr"] for g in groups]
    assert lrs == sorted(lrs) and lrs[-1] == pytest.approx(1e-3)  # the head fastest
    everything = transfer.param_groups(model, slice(1e-5, 1e-3), include_frozen=True)
    assert sorted(id(p) for g in everything for p in g["params"]) == sorted(id(p) for p in model.parameters())
    assert everything[0]["lr"] == pytest.approx(1e-5)
    ratios = [b["lr"] / a["lr"] for a, b in zip(everything, everything[1:])]
    assert ratios == pytest.approx([100 ** (1 / 5)] * 5)  # geometric from 1e-5 to 1e-3 over 6 blocks


class LrRecorder:
    def __init__(self):
        self.lrs = []

    def on_before_step(self, state):
        self.lrs.append([g["lr"] for g in state.optimizer.param_groups])


@pytest.mark.parametrize("schedule", ["onecycle", "warmup_cosine"])
def test_fit_schedules_scale_each_group_by_its_own_rate(fmnist, schedule):
    model = transfer.InputAdapter(resnet18(), size=32)
    peaks = [1e-4, 1e-3, 1e-2, 1e-2, 1e-2, 3e-2]
    opt = torch.optim.SGD(transfer.param_groups(model, peaks), lr=1.0, momentum=0.9)
    rec = LrRecorder()
    fit(model, fmnist.take(range(128)), epochs=2, optimizer=opt, schedule=schedule, batch_size=32,
        callbacks=[rec], **quiet())
    lrs = torch.tensor(rec.lrs)  # (steps, groups)
    torch.testing.assert_close(lrs.max(0).values, torch.tensor(peaks), rtol=1e-2, atol=0)
    torch.testing.assert_close(lrs / lrs[:, :1], torch.tensor(peaks) / peaks[0] * torch.ones_like(lrs))


# ---------------------------------------------------------------------------------------------
# Gradual unfreezing
# ---------------------------------------------------------------------------------------------

class Snapshots:
    """The trainable flags at each epoch's start and a copy of the parameters at each epoch's end."""

    def __init__(self, model):
        self.model, self.flags, self.params = model, [], []

    def on_epoch_start(self, state):
        self.flags.append(trainable(self.model))

    def on_epoch_end(self, state):
        self.params.append({n: p.detach().clone() for n, p in self.model.named_parameters()})


def test_gradual_unfreezing_changes_trainability_at_the_stated_epochs(fmnist):
    net = transfer.freeze(resnet18())
    model = transfer.InputAdapter(net, size=32)
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    unfreezing = transfer.GradualUnfreezing(model, {2: "layer4", 4: None})
    snaps = Snapshots(net)  # after the unfreezing callback, so it sees each epoch's new state
    opt = torch.optim.AdamW(transfer.param_groups(model, slice(1e-4, 1e-2), include_frozen=True))
    fit(model, fmnist.take(range(64)), epochs=4, optimizer=opt, schedule=None, batch_size=32,
        callbacks=[unfreezing, snaps], **quiet())
    head, top, everything = starting(net, "fc"), starting(net, "layer4", "fc"), set(start)
    assert snaps.flags == [head, top, top, everything]
    moved = [{n for n in everything if not torch.equal(params[n], start[n])} for params in snaps.params]
    assert moved == [head, top, top, everything]  # a block moves from the epoch it is unfrozen, never before


def test_gradual_unfreezing_every_k_epochs_one_more_block():
    model = transfer.freeze(resnet18())
    assert transfer.GradualUnfreezing(model, 2).schedule == {3: 2, 5: 3, 7: 4, 9: 5, 11: 6}


def test_gradual_unfreezing_needs_the_frozen_parameters_in_the_optimizer(fmnist):
    model = transfer.InputAdapter(transfer.freeze(resnet18()), size=32)
    opt = torch.optim.AdamW(transfer.param_groups(model, 1e-3))  # the head only
    with pytest.raises(ValueError, match="include_frozen=True"):
        fit(model, fmnist.take(range(32)), epochs=1, optimizer=opt, callbacks=[transfer.GradualUnfreezing(model, 1)],
            **quiet())


# ---------------------------------------------------------------------------------------------
# Inputs and features
# ---------------------------------------------------------------------------------------------

def test_input_adapter_equals_torchvision_image_by_image(lite0, fmnist):
    adapter = transfer.InputAdapter(lite0, size=64)
    cfg = lite0.pretrained_cfg
    assert adapter.mode == cfg["interpolation"] == "bicubic" and cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)
    x = fmnist.images[:8].float().div(255)  # (8, 1, 28, 28)
    ours = adapter.prepare(x)
    for i in range(len(x)):
        ref = TF.grayscale_to_rgb(x[i])
        ref = TF.resize(ref, [64, 64], interpolation=InterpolationMode.BICUBIC, antialias=True)
        ref = TF.normalize(ref, list(cfg["mean"]), list(cfg["std"]))
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=1e-5)
    assert transfer.InputAdapter(lite0).size == (224, 224)  # the weights' own input size by default
    assert not ours.is_contiguous(memory_format=torch.channels_last)
    fast = transfer.InputAdapter(copy.deepcopy(lite0), size=64).to(memory_format=torch.channels_last)
    prepared = fast.prepare(x)  # follows the network's memory format, so its convolutions need no conversion
    assert prepared.is_contiguous(memory_format=torch.channels_last) and torch.equal(prepared, ours)


@pytest.fixture(scope="module")
def lite0_features(lite0, fmnist):
    model = transfer.InputAdapter(copy.deepcopy(lite0), size=64)
    return model, transfer.extract_features(model, fmnist.take(range(500)), batch_size=250)


def test_features_are_the_models_pooled_features_and_deterministic(lite0_features, fmnist):
    model, (feats, labels) = lite0_features
    data = fmnist.take(range(500))
    assert feats.shape == (500, model.model.num_features) and torch.equal(labels, data.labels)
    reference = copy.deepcopy(model.model).eval()
    reference.reset_classifier(0)  # timm: the network without its classifier returns the pooled features
    with torch.no_grad():
        x = data.images[:24].float().div(255)
        torch.testing.assert_close(feats[:24], reference(model.prepare(x)), atol=1e-4, rtol=1e-4)
    again, _ = transfer.extract_features(model, data.take(range(24)), batch_size=7)
    torch.testing.assert_close(again, feats[:24], atol=1e-4, rtol=1e-4)  # batch size does not matter in eval mode
    assert torch.equal(transfer.extract_features(model, data.take(range(24)), batch_size=7)[0], again)
    assert model.training  # extract_features put it back in the mode it found


def test_features_of_a_model_without_forward_head():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    model = nn.Sequential(backbone, nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(5, 1, 12, 12)
    feats, labels = transfer.extract_features(model, (x, torch.arange(5)))
    torch.testing.assert_close(feats, backbone(x).flatten(1))
    assert labels.tolist() == list(range(5))


def test_linear_probe_on_imagenet_features_beats_a_floor(lite0_features):
    _, (feats, labels) = lite0_features
    probe = transfer.linear_probe(feats[:350], labels[:350], C=0.1)
    assert probe.score(feats[350:].numpy(), labels[350:].numpy()) > 0.65  # chance is 0.1
    with pytest.raises(ValueError, match="must match"):
        transfer.linear_probe(feats[:10], labels[:9])


def test_extract_features_feeds_raw_images_as_the_model_was_trained():
    # A model trained on normalized batches records model.preprocess; its features of uint8 images must use it.
    torch.manual_seed(0)
    model = cvlab.models.create("small_resnet", num_classes=10, in_chans=1, widths=(4, 8)).eval()
    model.preprocess = cvlab.preprocess.Preprocess(mean=(0.3,), std=(0.4,))
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    feats, _ = transfer.extract_features(model, (images, torch.zeros(6, dtype=torch.long)))
    with torch.no_grad():
        expected = model.forward_head(model.forward_features((images.float() / 255 - 0.3) / 0.4), pre_logits=True)
    torch.testing.assert_close(feats, expected)
