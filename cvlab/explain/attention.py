"""Attention maps of a Vision Transformer: per head in chosen blocks, and attention rollout.

    maps = head_maps(model, images, block=-1)        # (B, heads, h, w): where the class token looks
    heat = attention_rollout(model, images)          # (B, h, w): what reaches the class token through all blocks
    plot_attention(images, upsample(heat, images.shape[-2:]))

The model must offer ``attention_maps(images)``: one (B, heads, N, N) tensor per block, row i holding
how much token i takes from every token (:class:`cvlab.models.vit.VisionTransformer` and ``DeiT`` do).

One block's map shows a single mixing step, and later blocks mix tokens that are already mixtures.
**Attention rollout** (Abnar & Zuidema, 2020) follows the mixing through the whole network: average
each block's attention over the heads, add the identity for the residual connection that carries
every token past the attention (Ã = ½A + ½I, rows renormalized to sum to 1), and multiply the
blocks in order, R = Ã_L ··· Ã_2 Ã_1. Row 0 of R (the class token) over the patch tokens is the map.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..plot import show_images
from ..preprocess import prepare
from .gradcam import _normalize, overlay

__all__ = ["attention_maps", "rollout", "head_maps", "attention_rollout", "upsample", "plot_attention"]


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor, blocks: Sequence[int] | None = None) -> torch.Tensor:
    """Attention weights (len(blocks), B, heads, N, N) of the chosen blocks (all if None; negative counts from the end),
    with the model in eval mode. uint8 images go through ``model.preprocess``; float ones are taken as prepared."""
    if not hasattr(model, "attention_maps"):
        raise TypeError(f"{type(model).__name__} has no attention_maps(images) method; use a cvlab ViT or DeiT "
                        "(cvlab.models.create('vit_tiny_28', ...)), or Grad-CAM (cvlab.explain.gradcam) for a CNN.")
    was_training = model.training
    model.eval()
    try:
        maps = model.attention_maps(prepare(model, images).float())  # uint8: as the model was trained
    finally:
        model.train(was_training)
    chosen = range(len(maps)) if blocks is None else blocks
    for b in chosen:
        if not -len(maps) <= b < len(maps):
            raise ValueError(f"block {b} does not exist: the model has {len(maps)} blocks (0 to {len(maps) - 1}).")
    return torch.stack([maps[b] for b in chosen])


def rollout(attentions: torch.Tensor | Sequence[torch.Tensor], *, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (B, N, N) from per-block weights (L, B, heads, N, N), first block first.

    ``head_fusion`` "mean" (the paper) or "max" combines the heads of each block.
    """
    if head_fusion not in ("mean", "max"):
        raise ValueError(f"head_fusion must be 'mean' or 'max'; got {head_fusion!r}")
    result = None
    for a in attentions:  # (B, heads, N, N)
        a = a.mean(1) if head_fusion == "mean" else a.amax(1)  # (B, N, N)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)  # the residual path
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result  # the later block mixes what the earlier ones produced
    if result is None:
        raise ValueError("rollout needs the attention of at least one block")
    return result


def _patch_grid(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    p = model.patch_embed.patch_size
    return images.shape[-2] // p, images.shape[-1] // p


def _to_grid(rows: torch.Tensor, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Attention rows (..., N) over all tokens -> (..., h, w) over the patch tokens only."""
    return rows[..., model.num_prefix_tokens:].unflatten(-1, _patch_grid(model, images))


def head_maps(model: nn.Module, images: torch.Tensor, *, block: int = -1, token: int = 0) -> torch.Tensor:
    """How much ``token`` (0: the class token; 1: DeiT's distillation token) attends to each patch,
    per head, in one block: (B, heads, h, w)."""
    weights = attention_maps(model, images, [block])[0]  # (B, heads, N, N)
    return _to_grid(weights[:, :, token], model, images)


def attention_rollout(model: nn.Module, images: torch.Tensor, *, token: int = 0,
                      head_fusion: str = "mean") -> torch.Tensor:
    """The rollout map of ``token`` over the patches, (B, h, w), through all of the model's blocks."""
    return _to_grid(rollout(attention_maps(model, images), head_fusion=head_fusion)[:, token], model, images)


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Patch-grid maps (B, h, w) -> image-sized maps (B, H, W), bilinear, each scaled to [0, 1]."""
    return _normalize(F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0])


def plot_attention(images, maps, titles: Sequence[str] | None = None, *, alpha: float = 0.5, ncols: int = 8,
                   size: float = 1.6):
    """Each image with its attention map (image-sized, in [0, 1]; see :func:`upsample`) blended on top."""
    return show_images([overlay(img, m, alpha=alpha) for img, m in zip(images, maps)], titles, ncols=ncols, size=size)
