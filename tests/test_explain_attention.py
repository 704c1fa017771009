"""cvlab.explain.attention: rollout against a hand computation, maps read from the right tokens and patches."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from cvlab import models
from cvlab.explain import attention_maps, attention_rollout, head_maps, plot_attention, rollout, upsample

matplotlib.use("Agg")


def test_rollout_by_hand():
    # Two blocks, two tokens, two heads whose mean is A1 (then A2).
    a1 = torch.tensor([[[[0.4, 0.6], [0.0, 1.0]], [[0.6, 0.4], [0.4, 0.6]]]])  # mean [[0.5, 0.5], [0.2, 0.8]]
    a2 = torch.tensor([[[[1.0, 0.0], [0.3, 0.7]], [[1.0, 0.0], [0.3, 0.7]]]])  # mean [[1, 0], [0.3, 0.7]]
    # Residual mix 0.5 A + 0.5 I: [[0.75, 0.25], [0.1, 0.9]] and [[1, 0], [0.15, 0.85]].
    # Rollout = second @ first = [[0.75, 0.25], [0.15*0.75 + 0.85*0.1, 0.15*0.25 + 0.85*0.9]].
    expected = torch.tensor([[[0.75, 0.25], [0.1975, 0.8025]]])
    torch.testing.assert_close(rollout([a1, a2]), expected)
    torch.testing.assert_close(rollout(torch.stack([a1, a2])), expected)  # (L, B, heads, N, N) works too
    # Max over heads, then the same steps: [[0.6, 0.6], [0.4, 1.0]] -> mixed and renormalized rows.
    first = torch.tensor([[0.8, 0.3], [0.2, 1.0]])
    first = first / first.sum(1, keepdim=True)
    torch.testing.assert_close(rollout([a1], head_fusion="max"), first[None])


def test_maps_read_the_class_token_row_over_the_patches_in_grid_order():
    torch.manual_seed(0)
    model = models.create("deit_tiny_28", num_classes=10, in_chans=1, depth=1, img_size=28)
    images = torch.randn(2, 1, 28, 32)  # a 7 x 8 grid: rows and columns cannot be swapped unnoticed
    with torch.no_grad():
        weights = model.eval().attention_maps(images)[0]  # (B, heads, 2 + 56, 2 + 56)
    maps = head_maps(model, images, block=0, token=1)   # the distillation token's row
    assert maps.shape == (2, 4, 7, 8)
    for r, c in [(0, 0), (2, 5), (6, 7)]:
        torch.testing.assert_close(maps[:, :, r, c], weights[:, :, 1, 2 + r * 8 + c])
    # One block: rollout = 0.5 mean_heads(A) + 0.5 I, and the identity never reaches a patch column.
    heat = attention_rollout(model, images)
    torch.testing.assert_close(heat, 0.5 * weights.mean(1)[:, 0, 2:].reshape(2, 7, 8))


def test_attention_maps_choose_blocks_and_leave_the_mode_alone():
    model = models.create("vit_tiny_28", num_classes=10, in_chans=1, depth=3).train()
    images = torch.randn(2, 1, 28, 28)
    chosen = attention_maps(model, images, [0, -1])
    everything = attention_maps(model, images)
    assert model.training
    assert chosen.shape == (2, 2, 4, 50, 50) and everything.shape == (3, 2, 4, 50, 50)
    torch.testing.assert_close(chosen[1], everything[2])
    with pytest.raises(ValueError, match="block 3 does not exist: the model has 3 blocks"):
        attention_maps(model, images, [3])
    with pytest.raises(TypeError, match="has no attention_maps"):
        attention_maps(models.create("small_resnet", num_classes=10, in_chans=1), images)


def test_upsample_and_overlay():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    big = upsample(maps, (8, 8))
    assert big.shape == (1, 8, 8) and big.min() == 0 and big.max() == pytest.approx(1, abs=1e-6)
    assert big[0, 0, 0] < big[0, 0, -1] < big[0, -1, -1]  # the order of the patches survives
    fig = plot_attention(torch.rand(1, 1, 8, 8), big, ["x"])
    assert len(fig.axes) >= 1
