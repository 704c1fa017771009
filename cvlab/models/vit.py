"""Vision Transformer (Dosovitskiy et al., 2020) and DeiT (Touvron et al., 2021), read top-down:
self-attention, the encoder block, the network, the distilled network, one builder per variant.

    model = cvlab.models.create("vit_tiny_28", num_classes=10, in_chans=1)       # 28 px, 4x4 patches
    deit = cvlab.models.create("deit_tiny_28", num_classes=10, in_chans=1, distilled_training=True)

A ViT cuts the image into patches, embeds each patch as a token with one linear map (a convolution
whose stride equals its kernel), prepends a learned class token, adds learned position embeddings
and runs pre-norm encoder blocks: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``. The class token's
final state, after a last layer norm, goes to a linear head.

DeiT adds a second learned token, the distillation token, with its own head. The class head learns
from the labels, the distillation head from a teacher (see :mod:`cvlab.distill`). At inference the
two heads' softmax outputs are averaged: the model returns ``log((softmax(a) + softmax(b)) / 2)``, so
a softmax of the output gives exactly that average (and ``cvlab.train.evaluate`` reports it as is).
timm's ``deit_*_distilled`` average the two heads' *logits* instead; per head the logits are the
same (tested), the combined predictions can differ where the heads disagree.

Module names follow timm's ``vision_transformer.py``, so the key map from timm's ``state_dict`` to
cvlab's is the identity: ``vit_tiny_patch16_224`` and ``deit_tiny_distilled_patch16_224`` load timm's
tensors as they are (and have exactly their parameter counts). Like timm's ``dynamic_img_size``, an
image of another size than ``img_size`` gets the position embeddings resampled (bicubic) to its grid;
a side that is not a multiple of the patch size loses its last pixels, as a strided convolution does.

Those two names are timm's too: their builders take timm's ``num_classes``, ``in_chans``, ``drop_rate``,
``drop_path_rate``, ``global_pool="token"`` and ``pretrained`` (timm's weights, downloaded), but the
architecture keywords are cvlab's (``width``, ``heads`` for timm's ``embed_dim``, ``num_heads``).
The models have timm's interface: ``forward_features`` gives the tokens (B, N, width),
``forward_head(x, pre_logits=True)`` the pooled (B, width) state, ``get_classifier`` the head
(DeiT: both heads, as timm), ``reset_classifier`` new ones.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .layers import OFFLINE_HINT, check_global_pool, linear_head, new_classifier

__all__ = ["attention", "PatchEmbed", "Attention", "Mlp", "DropPath", "Block", "VisionTransformer", "DeiT"]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention by hand: ``softmax(q k^T / sqrt(d)) v`` and the weights.

    q, k, v: (..., N, d). Returns the output (..., N, d) and the attention weights (..., N, N), whose
    row i says how much token i takes from every token. Equal to
    ``torch.nn.functional.scaled_dot_product_attention`` (tested), which does not return the weights.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., N, N): every query against every key
    weights = scores.softmax(dim=-1)                            # each row sums to 1
    return weights @ v, weights


class PatchEmbed(nn.Module):
    """Cut (B, C, H, W) images into p x p patches and map each to ``width`` numbers: (B, h*w, width).

    A linear map of each flattened patch is a convolution with kernel = stride = p.
    """

    def __init__(self, *, patch_size: int, in_chans: int, width: int):
        super().__init__()
        self.patch_size, self.in_chans = patch_size, in_chans
        self.proj = nn.Conv2d(in_chans, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens (B, h*w, width) and the patch grid (h, w)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"the ViT expects a (B, {self.in_chans}, H, W) batch, got shape {tuple(x.shape)}.")
        if min(x.shape[-2:]) < self.patch_size:
            raise ValueError(f"images of {x.shape[-2]}x{x.shape[-1]} px are smaller than one {self.patch_size}x"
                             f"{self.patch_size} patch; resize them up or build the model with a smaller patch_size.")
        x = self.proj(x)  # (B, width, h, w)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class Attention(nn.Module):
    """Multi-head self-attention: one linear map gives queries, keys and values for all heads at once."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}: each head gets width / heads "
                             "numbers. Change one of them.")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, width) -> (B, N, width), and the weights (B, heads, N, N) if asked for (else None)."""
        b, n, c = x.shape
        # Each of q, k, v: (B, heads, N, c / heads).
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if return_weights:
            out, weights = attention(q, k, v)
        else:  # PyTorch's fused kernel: same result, faster, keeps no (N, N) matrix
            out, weights = F.scaled_dot_product_attention(q, k, v), None
        out = out.transpose(1, 2).reshape(b, n, c)  # heads side by side again
        return self.proj(out), weights


class Mlp(nn.Module):
    """The block's feed-forward part, applied to every token alone: widen, GELU, project back."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): in training, drop a residual branch for a random ``p`` of the
    samples and scale the kept ones by 1 / (1 - p), so the expected output is unchanged. Timm's ``DropPath``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], *(1,) * (x.ndim - 1)).bernoulli_(1 - self.p)  # (B, 1, 1): per sample
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class Block(nn.Module):
    """A pre-norm encoder block: tokens talk to each other (attention), then each thinks alone (MLP)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.drop_path1 = DropPath(drop_path) if drop_path else nn.Identity()
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.drop_path2 = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, weights = self.attn(self.norm1(x), return_weights)
        x = x + self.drop_path1(mixed)
        return x + self.drop_path2(self.mlp(self.norm2(x))), weights


class VisionTransformer(nn.Module):
    """Patch embedding, class token, learned position embeddings, ``depth`` blocks, a final norm, a head.

    timm's keywords: ``drop_rate`` is dropout before the head, ``drop_path_rate`` the stochastic depth of
    the last block (rising linearly from 0 at the first), ``global_pool`` must be "token" (the class token).
    """

    num_prefix_tokens = 1  # tokens before the patches: the class token

    def __init__(self, *, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 width: int = 192, depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, global_pool: str = "token"):
        super().__init__()
        if img_size < patch_size:
            raise ValueError(f"img_size {img_size} is smaller than patch_size {patch_size}; use a smaller patch.")
        check_global_pool(type(self).__name__, global_pool, "token")
        self.num_classes, self.in_chans = num_classes, in_chans
        self.num_features = self.head_hidden_size = width
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, width=width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        num_tokens = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, width))
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]  # deeper blocks dropped more often
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, rate) for rate in rates])
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = linear_head(width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's ViT init: small truncated-normal position embeddings and linears, a near-zero class token."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        """The learned tokens put before the patch tokens: (B, num_prefix_tokens, width)."""
        return self.cls_token.expand(batch, -1, -1)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, prefix + h*w, width): the learned table, resampled (bicubic) when the patch grid differs."""
        if grid == self.grid_size:
            return self.pos_embed
        from timm.layers import resample_abs_pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(grid), list(self.grid_size),
                                      num_prefix_tokens=self.num_prefix_tokens)

    def encode(self, x: torch.Tensor, keep_attention: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images -> normed tokens (B, prefix + h*w, width), and every block's attention weights if asked for."""
        tokens, grid = self.patch_embed(x)
        tokens = torch.cat([self.prefix_tokens(len(x)), tokens], dim=1) + self.position_embedding(grid)
        maps = []
        for block in self.blocks:
            tokens, weights = block(tokens, keep_attention)
            if keep_attention:
                maps.append(weights)  # (B, heads, N, N)
        return self.norm(tokens), maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, prefix + h*w, width) tokens after the final norm."""
        return self.encode(x)[0]

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's attention weights, one (B, heads, N, N) tensor per block (token 0 is the class token)."""
        return self.encode(x, keep_attention=True)[1]

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Tokens -> logits from the class token, or with ``pre_logits`` the class token's (B, width) state."""
        x = self.head_drop(x[:, 0])
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh head with ``num_classes`` outputs (0: ``nn.Identity``, the model returns the pooled token)."""
        check_global_pool(type(self).__name__, global_pool, "token")
        self.num_classes = num_classes
        self.head = new_classifier(self, self.num_features, num_classes)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter groups, input first (``cvlab.transfer`` splits the network by them): the
        embeddings and prefix tokens, then one group per block, the final norm with the last block."""
        return dict(stem=r"^cls_token|pos_embed|patch_embed|dist_token",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])


def average_softmax(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log((softmax(a) + softmax(b)) / 2)``, computed stably: its softmax is the two heads' mean probability."""
    both = torch.stack([F.log_softmax(a, dim=-1), F.log_softmax(b, dim=-1)])
    return torch.logsumexp(both, dim=0) - math.log(2)


class DeiT(VisionTransformer):
    """A ViT with a distillation token and head beside the class token and head.

    ``distilled_training=True`` (or :meth:`set_distilled_training`, timm's name): in training mode the
    forward returns both heads' logits ``(class, distillation)`` for a distillation loss. Otherwise,
    and always in eval mode, it returns the log of the two heads' mean softmax.
    """

    num_prefix_tokens = 2  # the class token, then the distillation token

    def __init__(self, *, distilled_training: bool = False, **kwargs):
        super().__init__(**kwargs)
        width = self.num_features
        self.dist_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.head_dist = linear_head(width, self.num_classes)
        if self.num_classes:
            nn.init.trunc_normal_(self.head_dist.weight, std=0.02)
            nn.init.zeros_(self.head_dist.bias)
        self.distilled_training = distilled_training

    def set_distilled_training(self, enable: bool = True) -> None:
        self.distilled_training = enable

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        return torch.cat([self.cls_token, self.dist_token], dim=1).expand(batch, -1, -1)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens -> (class-head logits, distillation-head logits), each (B, num_classes), in any mode."""
        return self.head(self.head_drop(x[:, 0])), self.head_dist(self.head_drop(x[:, 1]))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False):
        """Tokens -> both heads' logits (distilled training) or their averaged softmax as log-probabilities;
        with ``pre_logits`` (or without heads, ``num_classes=0``) the mean of the two tokens' states, as timm."""
        if pre_logits or self.num_classes == 0:
            return (self.head_drop(x[:, 0]) + self.head_drop(x[:, 1])) / 2
        logits, logits_dist = self.forward_heads(x)
        if self.training and self.distilled_training:
            return logits, logits_dist
        return average_softmax(logits, logits_dist)

    def get_classifier(self) -> tuple[nn.Module, nn.Module]:
        """Both heads, as timm's ``VisionTransformerDistilled`` returns them: ``cvlab.transfer`` treats the pair
        as the classifier (replaced, frozen and given a learning rate together)."""
        return self.head, self.head_dist

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Fresh class and distillation heads with ``num_classes`` outputs each (0: ``nn.Identity`` both)."""
        super().reset_classifier(num_classes, global_pool)
        self.head_dist = new_classifier(self, self.num_features, num_classes)


# ---------------------------------------------------------------------------------------------
# Variants. For 28-32 px images: 4x4 patches (7x7 = 49 tokens at 28 px). The ImageNet references
# have timm's shapes: ViT-Tiny/16 is width 192, 12 blocks, 3 heads at 224 px.
# ---------------------------------------------------------------------------------------------

TINY_28 = dict(img_size=28, patch_size=4, width=64, depth=6, heads=4)
SMALL_28 = dict(img_size=28, patch_size=4, width=128, depth=6, heads=4)
TINY_224 = dict(img_size=224, patch_size=16, width=192, depth=12, heads=3)


def _build(cls: type[VisionTransformer], name: str, pretrained: bool, kwargs: dict, **defaults) -> VisionTransformer:
    """``cls`` with the variant's ``defaults``, any of them overridden by the caller's ``kwargs``; with
    ``pretrained``, timm's weights for the same name (the module names are timm's: the key map is the identity)."""
    model = cls(**{**defaults, **kwargs})
    if not pretrained:
        return model
    import timm
    if not timm.is_model(name):
        raise ValueError(f"cvlab ships no weights for {name}. Its module names are timm's, so timm's load as they are: "
                         f"model.load_state_dict(timm.create_model(<timm name>, pretrained=True).state_dict()) "
                         f"(needs the internet); or use pretrained=False.")
    # timm fits its weights to the classes (a fresh head), the channels and the image size (resampled positions).
    size = {"img_size": kwargs["img_size"]} if "img_size" in kwargs else {}
    try:
        reference = timm.create_model(name, pretrained=True, num_classes=model.num_classes, in_chans=model.in_chans,
                                      **size)
    except Exception as e:
        raise RuntimeError(f"could not fetch timm's pretrained weights for {name!r} ({type(e).__name__}: {e}). "
                           f"{OFFLINE_HINT}") from e
    model.load_state_dict(reference.state_dict())
    return model


@register
def vit_tiny_28(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT for 28 px: 4x4 patches, width 64, 6 blocks, 4 heads (about 0.3M parameters)."""
    return _build(VisionTransformer, "vit_tiny_28", pretrained, kwargs, **TINY_28)


@register
def vit_small_28(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT for 28 px: 4x4 patches, width 128, 6 blocks, 4 heads (about 1.2M parameters)."""
    return _build(VisionTransformer, "vit_small_28", pretrained, kwargs, **SMALL_28)


@register
def deit_tiny_28(*, pretrained: bool = False, **kwargs) -> DeiT:
    """vit_tiny_28 with a distillation token and head."""
    return _build(DeiT, "deit_tiny_28", pretrained, kwargs, **TINY_28)


@register
def vit_tiny_patch16_224(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-Tiny/16 at 224 px: width 192, 12 blocks, 3 heads; timm's ``vit_tiny_patch16_224`` shapes (5.7M)."""
    return _build(VisionTransformer, "vit_tiny_patch16_224", pretrained, kwargs, **TINY_224)


@register
def deit_tiny_distilled_patch16_224(*, pretrained: bool = False, **kwargs) -> DeiT:
    """DeiT-Tiny distilled at 224 px; timm's ``deit_tiny_distilled_patch16_224`` shapes (5.9M)."""
    return _build(DeiT, "deit_tiny_distilled_patch16_224", pretrained, kwargs, **TINY_224)
