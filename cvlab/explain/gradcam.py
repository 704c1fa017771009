"""Grad-CAM and feature maps: where a CNN looks when it decides.

    with GradCAM(model, "stages.2") as cam:      # any layer, by module or by name
        heat = cam(images)                        # (B, H, W) in [0, 1], for the predicted classes
    plot_gradcam(images, heat, titles)

Grad-CAM (Selvaraju et al., 2017) in four steps:

1. a forward hook keeps the chosen layer's output, K feature maps A_k (B, K, h, w);
2. the gradient of the class score y_c with respect to those maps says how much each position of
   each map raises the score;
3. averaging that gradient over the positions gives one weight per map, a_k = mean(dy_c / dA_k);
4. the map is ReLU(sum_k a_k A_k): the regions whose features push the score up. It is upsampled
   to the image size (bilinear) and scaled to [0, 1] per image.

The last convolutional stage is the usual choice: late enough to know about classes, still spatial.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..plot import show_images, to_display
from ..preprocess import prepare

__all__ = ["GradCAM", "gradcam", "overlay", "plot_gradcam", "feature_maps", "plot_feature_maps"]


def _layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """The module itself, or the submodule called ``layer`` (e.g. "stages.2", as in ``model.named_modules()``)."""
    if isinstance(layer, nn.Module):
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) or len(list(m.children())) > 0]
        raise ValueError(f"the model has no layer {layer!r}; some of its layers: {', '.join(n for n in names[-8:] if n)}"
                         ) from None


def _normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map (B, H, W) to [0, 1] (a map that is all zero stays zero)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    span = hi - lo
    return (maps - lo) / torch.where(span > 0, span, torch.ones_like(span))  # no epsilon: maps can be tiny numbers


class GradCAM:
    """Grad-CAM for one layer of ``model``; call it on an image batch. Use it in a ``with`` block, or call
    :meth:`remove`, so that its hook does not stay on the model."""

    def __init__(self, model: nn.Module, layer: nn.Module | str):
        self.model = model
        self.layer = _layer(model, layer)
        self.activations: torch.Tensor | None = None
        self.handle = self.layer.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"Grad-CAM needs a layer with feature maps (B, K, h, w); {type(module).__name__} returns "
                             f"{getattr(output, 'shape', type(output).__name__)}. Choose a convolutional layer or stage.")
        self.activations = output

    def __call__(self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Heat maps (B, H, W) in [0, 1] for ``target`` classes (one for all, one per image, or None: the predicted)."""
        was_training = self.model.training
        self.model.eval()  # batch norm with running statistics, no dropout: the model as it predicts
        try:
            with torch.enable_grad():
                # The input needs a gradient so that the graph reaches the layer even when the weights are frozen.
                logits = self.model(prepare(self.model, images).detach().requires_grad_(True))  # (B, C)
                classes = _targets(target, logits)
                score = logits.gather(1, classes[:, None]).sum()  # images are independent: one backward for all
                grads, = torch.autograd.grad(score, self.activations)  # (B, K, h, w) dy_c / dA
        finally:
            self.model.train(was_training)
        weights = grads.mean(dim=(2, 3), keepdim=True)             # (B, K, 1, 1) a_k
        cam = F.relu((weights * self.activations).sum(1, keepdim=True))  # (B, 1, h, w)
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
        self.activations = None
        return _normalize(cam[:, 0].detach())

    def remove(self) -> None:
        """Take the hook off the model."""
        self.handle.remove()

    def __enter__(self) -> GradCAM:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) to explain."""
    b, c = logits.shape
    if target is None:
        classes = logits.argmax(1)
    else:
        classes = torch.as_tensor(target, dtype=torch.long, device=logits.device).expand(b).clone()
    if classes.min() < 0 or classes.max() >= c:
        raise ValueError(f"target classes must be in [0, {c}); got {classes.unique().tolist()}")
    return classes


def gradcam(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, target=None) -> torch.Tensor:
    """Grad-CAM maps (B, H, W) in one call: hook the layer, explain ``images``, unhook."""
    with GradCAM(model, layer) as cam:
        return cam(images, target)


def overlay(image, cam, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """The image (C, H, W tensor or (H, W[, C]) array) with the heat map ``cam`` (H, W in [0, 1]) blended on top:
    an RGB float array (H, W, 3) in [0, 1]."""
    import matplotlib
    img = to_display(image).astype(np.float32)
    img = img / 255 if img.max() > 1 else img
    img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    heat = np.asarray(cam.detach().cpu() if isinstance(cam, torch.Tensor) else cam, dtype=np.float32)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"the heat map {heat.shape} and the image {img.shape[:2]} must have the same size")
    colored = matplotlib.colormaps[cmap](heat)[..., :3]
    return (1 - alpha) * img + alpha * colored


def plot_gradcam(images, cams, titles: Sequence[str] | None = None, *, alpha: float = 0.5, ncols: int = 8,
                 size: float = 1.6, suptitle: str | None = None):
    """Each image with its Grad-CAM overlay, in a grid."""
    return show_images([overlay(img, cam, alpha=alpha) for img, cam in zip(images, cams)], titles, ncols=ncols,
                       size=size, suptitle=suptitle)


@torch.no_grad()
def feature_maps(model: nn.Module, layer: nn.Module | str, images: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` (B, K, h, w) when the model (in eval mode) runs on ``images``."""
    kept = {}
    handle = _layer(model, layer).register_forward_hook(lambda m, i, out: kept.update(out=out))
    was_training = model.training
    model.eval()
    try:
        model(prepare(model, images))
    finally:
        handle.remove()
        model.train(was_training)
    return kept["out"].detach()


def plot_feature_maps(maps: torch.Tensor, *, n: int = 16, ncols: int = 8, size: float = 1.2, title: str | None = None):
    """The first ``n`` feature maps (K, h, w) of one image, each scaled to its own range."""
    if maps.ndim != 3:
        raise ValueError(f"plot_feature_maps takes one image's maps (K, h, w); got {tuple(maps.shape)}. "
                         "Index the batch: maps[0].")
    shown = _normalize(maps[:n].float().cpu())
    return show_images(list(shown), [f"#{k}" for k in range(len(shown))], ncols=ncols, size=size, suptitle=title)
