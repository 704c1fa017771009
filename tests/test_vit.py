"""The ViT and DeiT of cvlab.models.vit: hand-written attention vs PyTorch's, faithfulness to timm, DeiT's heads."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from cvlab import models
from cvlab.models.vit import Attention, DeiT, VisionTransformer, attention

TIMM_NAMES = ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_(model: nn.Module) -> nn.Module:
    """Unit-scale tokens and position embeddings and a head that gives logits of about unit size, so that
    atol=1e-5 on the logits is a real test (timm's init makes them tiny)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("cls_token", "dist_token", "pos_embed"):
                p.normal_(0, 1, generator=g)
            elif name.startswith("head"):
                p.normal_(0, p.shape[-1] ** -0.5 if p.ndim == 2 else 0.1, generator=g)
    return model


# --- self-attention by hand ------------------------------------------------------------------------

def test_hand_attention_equals_scaled_dot_product_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 7, 8).unbind(0)  # (B=2, heads=4, N=7, d=8)
    out, weights = attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0)
    assert weights.shape == (2, 4, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))
    # One entry spelled out: softmax over keys of q.k / sqrt(d).
    scores = torch.stack([q[1, 2, 3] @ k[1, 2, j] for j in range(7)]) / 8 ** 0.5
    torch.testing.assert_close(weights[1, 2, 3], scores.softmax(0))


def test_attention_module_equals_nn_multihead_attention():
    torch.manual_seed(0)
    ours = Attention(12, 3)
    theirs = nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():  # the same projections: q, k, v stacked in one matrix in both
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 5, 12)
    expected, expected_weights = theirs(x, x, x, need_weights=True, average_attn_weights=False)
    fused, none = ours(x)
    by_hand, weights = ours(x, return_weights=True)
    assert none is None
    torch.testing.assert_close(fused, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(by_hand, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=0)  # (B, heads, N, N)


# --- faithful to timm ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TIMM_NAMES)
def test_matches_timm(name):
    torch.manual_seed(0)
    reference = randomize_(timm.create_model(name, pretrained=False)).eval()
    model = models.create(name).eval()
    assert n_params(model) == n_params(reference)
    model.load_state_dict(reference.state_dict())  # timm's module names: the key map is the identity

    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(features, reference.forward_features(x), atol=1e-5, rtol=0)
        if name.startswith("vit"):
            expected = reference(x)
            assert expected.std() > 0.5  # logits of unit scale: atol=1e-5 means something
            torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
            return
        # DeiT: each head's logits equal timm's (timm returns both in distilled training mode) ...
        reference.set_distilled_training(True)
        timm_cls, timm_dist = reference.train()(x)
        ours_cls, ours_dist = model.forward_heads(features)
        assert timm_cls.std() > 0.5 and (timm_cls - timm_dist).abs().max() > 0.1  # the heads differ
        torch.testing.assert_close(ours_cls, timm_cls, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours_dist, timm_dist, atol=1e-5, rtol=0)
        # ... timm's inference averages the logits, cvlab's the probabilities (the rule).
        torch.testing.assert_close(reference.eval()(x), (ours_cls + ours_dist) / 2, atol=1e-5, rtol=0)
        probs = model(x).softmax(1)
        torch.testing.assert_close(probs, (timm_cls.softmax(1) + timm_dist.softmax(1)) / 2, atol=1e-6, rtol=0)


def test_other_image_sizes_resample_the_position_embeddings_as_timm_does():
    torch.manual_seed(0)
    model = randomize_(models.create("vit_tiny_patch16_224")).eval()
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 160, 128)  # a 10 x 8 patch grid instead of 14 x 14
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 1 + 10 * 8, 192)
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)


def test_timms_training_keywords_drop_as_timm_does():
    # drop_rate (before the head) and drop_path_rate (stochastic depth, rising over the blocks): the same
    # random draws as timm's, so with the same seed training-mode outputs agree.
    torch.manual_seed(0)
    model = models.create("vit_tiny_patch16_224", drop_rate=0.2, drop_path_rate=0.3, depth=4)
    reference = timm.create_model("vit_tiny_patch16_224", drop_rate=0.2, drop_path_rate=0.3, depth=4,
                                  dynamic_img_size=True)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(1)
    expected = reference.train()(x)
    torch.manual_seed(1)
    torch.testing.assert_close(model.train()(x), expected, atol=1e-5, rtol=0)
    assert not torch.equal(model(x), expected)  # other draws, other paths dropped
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_pretrained_loads_timms_weights(monkeypatch, name):
    made, create_model = {}, timm.create_model

    def fake_create_model(model_name, pretrained=False, **kwargs):  # timm's download, without the internet
        assert model_name == name and pretrained
        torch.manual_seed(1)
        made["model"] = randomize_(create_model(model_name, **kwargs))
        return made["model"]

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    model = models.create(name, num_classes=10, in_chans=1, pretrained=True)
    reference = made["model"]
    assert reference.num_classes == 10 and reference.patch_embed.proj.in_channels == 1  # timm fits the weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert "pretrained" not in model.cvlab_spec["kwargs"]  # a checkpoint holds the weights

    def offline(*args, **kwargs):
        raise OSError("no internet here")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="could not fetch timm's pretrained weights.*efficientnet_lite0"):
        models.create(name, pretrained=True)


# --- the small variants and DeiT's two heads --------------------------------------------------------

@pytest.mark.parametrize("name, prefix", [("vit_tiny_28", 1), ("vit_small_28", 1), ("deit_tiny_28", 2)])
def test_small_variants_take_fashion_mnist_images(name, prefix):
    model = models.create(name, num_classes=10, in_chans=1).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.shape == (3, prefix + 7 * 7, model.num_features)  # 4x4 patches: a 7x7 grid
        assert model(x).shape == (3, 10)
        maps = model.attention_maps(x)
        assert len(maps) == len(model.blocks) == 6
        assert all(m.shape == (3, 4, prefix + 49, prefix + 49) for m in maps)
        torch.testing.assert_close(maps[2].sum(-1), torch.ones(3, 4, prefix + 49))
        # The path that keeps the weights (hand-written attention) gives the same tokens as the fused one.
        torch.testing.assert_close(model.encode(x, keep_attention=True)[0], tokens, atol=1e-5, rtol=0)


def test_deit_returns_both_heads_only_in_distilled_training():
    torch.manual_seed(0)
    model = models.create("deit_tiny_28", num_classes=10, in_chans=1)
    assert isinstance(model, DeiT) and not model.distilled_training  # timm's default
    x = torch.randn(4, 1, 28, 28)
    assert model.train()(x).shape == (4, 10)
    model.set_distilled_training(True)
    cls_logits, dist_logits = model.train()(x)
    assert cls_logits.shape == dist_logits.shape == (4, 10)
    with torch.no_grad():
        torch.testing.assert_close(cls_logits, model.head(model.forward_features(x)[:, 0]))
        torch.testing.assert_close(dist_logits, model.head_dist(model.forward_features(x)[:, 1]))
        # Eval mode: log of the mean softmax, whatever the flag; a softmax of it is the mean probability.
        combined = model.eval()(x)
        torch.testing.assert_close(combined.softmax(1), (cls_logits.softmax(1) + dist_logits.softmax(1)) / 2)
        torch.testing.assert_close(combined.exp().sum(1), torch.ones(4))


def test_builders_take_overrides():
    model = models.create("vit_tiny_28", num_classes=5, in_chans=3, img_size=32, depth=2)
    assert isinstance(model, VisionTransformer) and len(model.blocks) == 2 and model.grid_size == (8, 8)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


# --- bad input -------------------------------------------------------------------------------------

def test_bad_input_gets_a_clear_error():
    model = models.create("vit_tiny_28", num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match=r"expects a \(B, 1, H, W\) batch, got shape \(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="smaller than one 4x4 patch"):
        model(torch.randn(2, 1, 3, 28))
    with pytest.raises(ValueError, match="width 64 must be divisible by heads 5"):
        models.create("vit_tiny_28", heads=5)
    with pytest.raises(ValueError, match="ships no weights.*timm.create_model"):
        models.create("deit_tiny_28", pretrained=True)
