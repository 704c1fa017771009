"""Augmentation pipelines, Mixup/CutMix and widget previews (lesson 03).

``pipeline(name, size=..., mean=..., std=...)`` builds a named recipe (:data:`PIPELINES`) on
albumentations or, for the learned policies, torchvision.transforms.v2, wrapped in an
:class:`Augment`: one uint8 image in (a tensor (C, H, W), an array (H, W[, C]) or a PIL image), a
float32 tensor (C, H, W) out, scaled to [0, 1] and normalized, ready for
``cvlab.data.dataloader(ds, transform=...)``.

    train_tf = cvlab.augment.pipeline("strong", size=32, mean=MEAN, std=STD)
    eval_tf = cvlab.augment.pipeline("eval", size=32, mean=MEAN, std=STD)
    fit(model, train, val, batch_transform=cvlab.augment.MixUpCutMix(num_classes=10))
"""
from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from . import widgets
from .image import INTERPOLATIONS, _cv2_flag, _pair, as_hwc, from_hwc, normalize

__all__ = ["PIPELINES", "register", "pipeline", "Augment", "one_hot", "mixup", "cutmix", "MixUpCutMix",
           "preview", "grid"]


# ---------------------------------------------------------------------------------------------
# The adapter: a library transform applied to cvlab images
# ---------------------------------------------------------------------------------------------

# Ops that refuse some channel counts (found by trying 1..5 channels); colour ops pass gray through.
_CHANNELS = {name: (1, 3) for name in (
    "HueSaturationValue", "ColorJitter", "ToSepia", "Equalize", "CLAHE",  # albumentations
    "AutoAugment", "RandAugment", "TrivialAugmentWide", "AugMix", "Grayscale", "RandomGrayscale",
    "RandomAdjustSharpness", "RandomAutocontrast", "RandomPhotometricDistort")}  # torchvision
_CHANNELS.update(ToGray=(3,), PlanckianJitter=(3,), ISONoise=(3,), RandomFog=(3,))


def _ops(t):
    """``t`` and every op nested in it (albumentations and torchvision composes both keep ``.transforms``)."""
    yield t
    for sub in getattr(t, "transforms", None) or ():
        yield from _ops(sub)


class Augment:
    """One uint8 image in, a float32 tensor (C, H, W) out: a library transform, then [0, 1] scaling and normalization.

    ``transform`` is an albumentations or torchvision.transforms.v2 transform, or any function of
    a uint8 (C, H, W) tensor; or give ``build(h, w, channels)`` to make one per output size
    (``size``, or each input's size when None) and channel count, as pipelines do.
    ``augment(img, seed=...)`` returns the augmented uint8 image in the input's layout, for looking at.
    """

    def __init__(self, transform=None, *, build: Callable | None = None, size: int | tuple[int, int] | None = None,
                 name: str = "custom", mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        if (transform is None) == (build is None):
            raise ValueError("give a transform or a build(h, w, channels) function, not both")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.name, self.size, self.mean, self.std = name, _pair(size), mean, std
        self._transform, self._build, self._built = transform, build, {}
        self._worker_seed = None

    def transform_for(self, h: int, w: int, channels: int):
        """The library transform this applies to an h x w image with ``channels`` channels (checked, cached)."""
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._worker_seed != worker.seed:  # this copy now runs in a new DataLoader worker
            self._built, self._worker_seed = {}, worker.seed
        key = (self.size or (h, w), channels)
        t = self._built.get(key)
        if t is None:
            t = self._transform if self._transform is not None else self._build(*key[0], channels)
            self._check_channels(t, channels)
            if worker is not None and hasattr(t, "set_random_seed"):
                # albumentations keeps its own RNG, which every worker would copy: reseed it from the
                # worker's torch seed, as torch does for its own RNG (workers differ, seeded runs repeat)
                t.set_random_seed(worker.seed % 2**32)
            if len(self._built) >= 64:  # a folder of many image sizes with size=None: keep memory bounded
                self._built.clear()
            self._built[key] = t
        return t

    def _check_channels(self, t, c: int) -> None:
        for op in _ops(t):
            allowed = _CHANNELS.get(type(op).__name__)
            if allowed is not None and c not in allowed:
                hint = " (or pass hue=0, saturation=0 to leave hue/saturation out)" if self.name == "photometric" else ""
                raise ValueError(
                    f"{type(op).__name__} in pipeline {self.name!r} works on {' or '.join(map(str, allowed))}-channel "
                    f"images; this image has {c} channels. Convert it first (RGBA to RGB: image[:3] for a tensor, "
                    f"image[..., :3] for an array; or to gray), or use a pipeline without it such as 'basic', "
                    f"'geometric', 'occlusion' or 'eval'{hint}.")

    def _apply(self, hwc: np.ndarray, seed: int | None) -> np.ndarray:
        t = self.transform_for(*hwc.shape)
        try:
            if hasattr(t, "set_random_seed"):  # albumentations keeps its own RNG
                if seed is not None:
                    t = copy.deepcopy(t)
                    t.set_random_seed(seed)
                return t(image=np.ascontiguousarray(hwc))["image"]
            with torch.random.fork_rng(devices=[], enabled=seed is not None):  # torchvision uses torch's RNG
                if seed is not None:
                    torch.manual_seed(seed)
                x = torch.from_numpy(hwc if hwc.flags.writeable else hwc.copy())  # PIL's arrays are read-only
                return t(x.permute(2, 0, 1)).permute(1, 2, 0).numpy()
        except (TypeError, ValueError) as e:  # ops missing from _CHANNELS fail here, some only on some draws
            if "channel" not in str(e):
                raise
            raise ValueError(f"pipeline {self.name!r} cannot handle a {hwc.shape[2]}-channel image: {e}. "
                             "Convert the image to RGB or gray first.") from e

    def augment(self, img, *, seed: int | None = None):
        """The augmented uint8 image in the input's layout (a PIL image comes back as an array)."""
        hwc, layout = as_hwc(img, f"pipeline {self.name!r}")
        return from_hwc(self._apply(hwc, seed), layout)

    def __call__(self, img) -> torch.Tensor:
        out = self._apply(as_hwc(img, f"pipeline {self.name!r}")[0], None)
        # one uint8 copy into a contiguous (C, H, W), so the float passes below run on contiguous memory
        x = torch.from_numpy(np.ascontiguousarray(out.reshape(*out.shape[:2], -1).transpose(2, 0, 1)))
        return normalize(x, self.mean, self.std) if self.mean is not None else x.float().div_(255)

    def __repr__(self) -> str:
        built = self._transform if self._transform is not None else next(iter(self._built.values()), "(built on first use)")
        return f"Augment({self.name!r}, mean={self.mean}, std={self.std}):\n{built}"


# ---------------------------------------------------------------------------------------------
# Named pipelines: a registry of builders (h, w, channels, **params) -> list of library ops
# ---------------------------------------------------------------------------------------------

class Recipe(NamedTuple):
    build: Callable
    sliders: dict   # parameter -> (min, max, step) or a list of choices, for preview()
    crops: bool     # the ops themselves output (h, w); otherwise a resize to ``size`` goes first


PIPELINES: dict[str, Recipe] = {}


def register(name: str, *, sliders: dict | None = None, crops: bool = False):
    """Decorator: register ``build(h, w, channels, **params) -> [ops]`` as pipeline ``name``."""
    def add(build):
        if name in PIPELINES:
            raise ValueError(f"pipeline {name!r} is already registered")
        PIPELINES[name] = Recipe(build, sliders or {}, crops)
        return build
    return add


def _albu():
    import albumentations  # imported on first use: it takes seconds
    return albumentations


def _v2():
    from torchvision.transforms import v2
    return v2


@register("none")
def _none(h, w, c):
    """No augmentation: the image (resized to ``size`` if given), scaled to [0, 1] and normalized."""
    return []


@register("eval", crops=True, sliders={"crop": (0.5, 1.0, 0.025), "interpolation": list(INTERPOLATIONS)})
def _eval(h, w, c, *, crop=1.0, interpolation="bilinear"):
    """Evaluation: resize to size / ``crop``, cut the central ``size`` (crop=1: a plain resize); no randomness."""
    A, flag = _albu(), _cv2_flag(interpolation)
    return [A.Resize(round(h / crop), round(w / crop), interpolation=flag), A.CenterCrop(h, w)]


@register("basic", sliders={"padding": (0, 8, 1), "flip": (0.0, 1.0, 0.1)})
def _basic(h, w, c, *, padding=4, flip=0.5):
    """Horizontal flip and a random crop after zero padding by ``padding`` pixels (the classic CIFAR recipe)."""
    A = _albu()
    return [A.HorizontalFlip(p=flip), A.PadIfNeeded(h + 2 * padding, w + 2 * padding, border_mode=0, fill=0),
            A.RandomCrop(h, w)]


@register("geometric", crops=True, sliders={
    "rotate": (0, 180, 5), "scale": (0.0, 0.5, 0.05), "translate": (0.0, 0.3, 0.02), "shear": (0, 30, 1),
    "perspective": (0.0, 0.2, 0.01), "crop": (0.1, 1.0, 0.05), "flip": (0.0, 1.0, 0.1)})
def _geometric(h, w, c, *, rotate=15, scale=0.1, translate=0.1, shear=0, perspective=0.05, crop=0.8, flip=0.5):
    """Flip; an affine warp (rotation ±``rotate`` degrees, zoom 1 ± ``scale``, shift ±``translate`` of the size,
    shear ±``shear`` degrees); a perspective warp up to ``perspective``; a random resized crop of ``crop``-100%."""
    A = _albu()
    ops = [A.HorizontalFlip(p=flip), A.Affine(rotate=(-rotate, rotate), scale=(1 - scale, 1 + scale), p=1.0,
                                              translate_percent=(-translate, translate), shear=(-shear, shear))]
    if perspective > 0:
        ops.append(A.Perspective(scale=(0, perspective), p=1.0))
    return ops + [A.RandomResizedCrop((h, w), scale=(crop, 1.0), p=1.0)]


@register("photometric", sliders={
    "brightness": (0.0, 0.8, 0.05), "contrast": (0.0, 0.8, 0.05), "hue": (0, 90, 5), "saturation": (0, 120, 5),
    "gamma": (0.0, 0.8, 0.05), "noise": (0.0, 0.3, 0.01), "blur": (0.0, 4.0, 0.25), "p": (0.0, 1.0, 0.1)})
def _photometric(h, w, c, *, brightness=0.2, contrast=0.2, hue=10, saturation=30, gamma=0.2, noise=0.05, blur=1.0, p=0.5):
    """Each with probability ``p``: brightness, contrast ± fractions; hue ±``hue`` in OpenCV hue units (2° each: hue=10 shifts up to ±20°) and saturation
    ±``saturation`` (of 255; RGB only, left out for gray); gamma 1 ± ``gamma``; Gaussian noise, std up to
    ``noise`` of the range; Gaussian blur, sigma up to ``blur`` pixels."""
    A = _albu()
    ops = [A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast, p=p)]
    if (hue or saturation) and c != 1:  # gray has no hue; other channel counts are refused with a fix
        ops.append(A.HueSaturationValue(hue_shift_limit=hue, sat_shift_limit=saturation, val_shift_limit=0, p=p))
    ops.append(A.RandomGamma(gamma_limit=(100 * (1 - gamma), 100 * (1 + gamma)), p=p))
    if noise > 0:
        ops.append(A.GaussNoise(std_range=(0.0, noise), p=p))
    if blur > 0:
        ops.append(A.GaussianBlur(sigma_limit=(min(0.1, blur), blur), p=p))
    return ops


@register("occlusion", sliders={"holes": (1, 8, 1), "hole": (0.05, 0.5, 0.05), "erasing": (0.0, 1.0, 0.1),
                                "fill": (0, 255, 1), "p": (0.0, 1.0, 0.1)})
def _occlusion(h, w, c, *, holes=2, hole=0.25, erasing=0.5, fill=0, p=0.5):
    """Cutout (probability ``p``): 1 to ``holes`` rectangles up to ``hole`` of each side set to ``fill``;
    random erasing (probability ``erasing``): one rectangle of 2-33% of the area."""
    A, side = _albu(), (min(0.05, hole), hole)
    return [A.CoarseDropout(num_holes_range=(1, holes), hole_height_range=side, hole_width_range=side, fill=fill, p=p),
            A.Erasing(scale=(0.02, 0.33), fill=fill, p=erasing)]


@register("strong", crops=True, sliders={"crop": (0.08, 1.0, 0.02), "jitter": (0.0, 0.8, 0.05), "hole": (0.1, 0.5, 0.05)})
def _strong(h, w, c, *, crop=0.35, jitter=0.4, hole=0.3):
    """Random resized crop (``crop``-100% of the area), flip, colour jitter ``jitter`` (p=0.8; 1 or 3 channels),
    Gaussian blur (p=0.2), one cutout hole up to ``hole`` of each side (p=0.5)."""
    A = _albu()
    return [A.RandomResizedCrop((h, w), scale=(crop, 1.0)), A.HorizontalFlip(),
            A.ColorJitter(jitter, jitter, jitter, min(0.5, jitter / 4), p=0.8), A.GaussianBlur(sigma_limit=(0.1, 1.5), p=0.2),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, hole), hole_width_range=(0.1, hole), p=0.5)]


@register("standard", crops=True, sliders={"crop": (0.08, 1.0, 0.02), "backend": ["albumentations", "torchvision"]})
def _standard(h, w, c, *, crop=0.08, backend="albumentations"):
    """The usual ImageNet training recipe in either library (``backend``): random resized crop (``crop``-100%,
    aspect 3/4-4/3, bilinear), horizontal flip, colour jitter 0.4/0.4/0.4/0.1 (1 or 3 channels)."""
    if backend == "torchvision":
        v2 = _v2()
        return [v2.RandomResizedCrop((h, w), scale=(crop, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                v2.ColorJitter(0.4, 0.4, 0.4, 0.1)]
    if backend != "albumentations":
        raise ValueError(f"backend must be 'albumentations' or 'torchvision'; got {backend!r}")
    A = _albu()
    return [A.RandomResizedCrop((h, w), scale=(crop, 1.0)), A.HorizontalFlip(), A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)]


@register("autoaugment", sliders={"policy": ["imagenet", "cifar10", "svhn"]})
def _autoaugment(h, w, c, *, policy="imagenet", fill=0):
    """AutoAugment (torchvision): the searched sub-policies for ``policy``; 1 or 3 channels."""
    v2 = _v2()
    return [v2.AutoAugment(v2.AutoAugmentPolicy(policy), fill=fill)]


@register("randaugment", sliders={"num_ops": (1, 5, 1), "magnitude": (0, 30, 1)})
def _randaugment(h, w, c, *, num_ops=2, magnitude=9, fill=0):
    """RandAugment (torchvision): ``num_ops`` random ops, each at ``magnitude`` (0-30); 1 or 3 channels."""
    return [_v2().RandAugment(num_ops=num_ops, magnitude=magnitude, fill=fill)]


@register("trivialaugment", sliders={"bins": (2, 31, 1)})
def _trivialaugment(h, w, c, *, bins=31, fill=0):
    """TrivialAugment (torchvision's TrivialAugmentWide): one random op at one of ``bins`` strengths; 1 or 3 channels."""
    return [_v2().TrivialAugmentWide(num_magnitude_bins=bins, fill=fill)]


def _defaults(build) -> dict:
    return {k: p.default for k, p in inspect.signature(build).parameters.items() if p.kind is p.KEYWORD_ONLY}


def pipeline(name: str, *, size: int | tuple[int, int] | None = None, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None, seed: int | None = None, **params) -> Augment:
    """The named pipeline (:data:`PIPELINES`) as an :class:`Augment`; ``params`` override the recipe's defaults.

    ``size`` (int or (H, W)) is the output size, None keeps each image's. ``mean``/``std`` normalize
    after scaling to [0, 1] (e.g. ``cvlab.image.IMAGENET_MEAN``). ``seed`` seeds albumentations'
    draws in this process (torchvision's come from torch's RNG); in DataLoader workers both follow
    each worker's torch seed, so seed torch for a repeatable run. ``help(PIPELINES[name].build)``
    describes one pipeline.
    """
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of: {', '.join(PIPELINES)}")
    recipe = PIPELINES[name]
    unknown = set(params) - set(_defaults(recipe.build))
    if unknown:
        raise TypeError(f"pipeline {name!r} has no parameter {', '.join(sorted(unknown))}; "
                        f"its parameters: {', '.join(_defaults(recipe.build)) or 'none'}")

    def build(h: int, w: int, channels: int):  # the output size
        ops = recipe.build(h, w, channels, **params)
        torchvision = any(isinstance(op, torch.nn.Module) for op in ops)
        if size is not None and not recipe.crops:
            ops = [_v2().Resize((h, w), antialias=True) if torchvision else _albu().Resize(h, w)] + ops
        return _v2().Compose(ops) if torchvision else _albu().Compose(ops, seed=seed)

    return Augment(build=build, size=size, name=name, mean=mean, std=std)


# ---------------------------------------------------------------------------------------------
# Mixup and CutMix: whole batches, soft targets
# ---------------------------------------------------------------------------------------------

def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (B,) as float one-hot rows (B, num_classes); soft targets (B, num_classes) pass through."""
    if y.ndim == 2:
        return y.float()
    return torch.nn.functional.one_hot(y.long(), num_classes).float()


def _beta(alpha: float) -> float:
    # sampled exactly as torchvision's MixUp/CutMix do, so the same seed gives the same batch
    return float(torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha])).sample(()))


def _blend(a: torch.Tensor, lam: float) -> torch.Tensor:
    # each item with its neighbour: lam * a[i] + (1 - lam) * a[i - 1], in torchvision's operation order
    return a.roll(1, 0).mul_(1.0 - lam).add_(a.mul(lam))


def mixup(x: torch.Tensor, y: torch.Tensor, *, num_classes: int, alpha: float = 0.2,
          lam: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup: blend each image and its target with the previous one in the batch by lam ~ Beta(alpha, alpha).

    ``x`` is a float batch (B, C, H, W), ``y`` labels (B,) or soft targets; returns (mixed x, targets (B, num_classes)).
    With the same seed it equals ``torchvision.transforms.v2.MixUp(alpha=alpha, num_classes=num_classes)``.
    """
    if not x.is_floating_point():
        raise ValueError(f"mixup blends pixel values, so it needs a float batch; got {x.dtype}. Use x.float() / 255 first.")
    lam = _beta(alpha) if lam is None else lam
    return _blend(x, lam), _blend(one_hot(y, num_classes), lam)


def cutmix(x: torch.Tensor, y: torch.Tensor, *, num_classes: int, alpha: float = 1.0,
           box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix: paste a box (x1, y1, x2, y2) from the previous image in the batch into each image.

    The box's area is 1 - lam, lam ~ Beta(alpha, alpha), centred at a random pixel and clipped to
    the image; the targets weigh the pasted image by the area actually pasted (after clipping).
    With the same seed it equals ``torchvision.transforms.v2.CutMix(alpha=alpha, num_classes=num_classes)``.
    """
    h, w = x.shape[-2:]
    if box is None:
        lam = _beta(alpha)
        cx, cy = torch.randint(w, size=(1,)), torch.randint(h, size=(1,))
        r = 0.5 * math.sqrt(1.0 - lam)  # half the box side, as a fraction of the image side
        half_w, half_h = int(r * w), int(r * h)
        box = (int(torch.clamp(cx - half_w, min=0)), int(torch.clamp(cy - half_h, min=0)),
               int(torch.clamp(cx + half_w, max=w)), int(torch.clamp(cy + half_h, max=h)))
    x1, y1, x2, y2 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])  # a given box may cross the border
    out = x.clone()
    out[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
    kept = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
    return out, _blend(one_hot(y, num_classes), kept)


@dataclass(kw_only=True)
class MixUpCutMix:
    """A batch transform for ``cvlab.train.fit(batch_transform=...)``: ``(x, y) -> (x, soft targets (B, num_classes))``.

    With probability ``prob`` per batch, mixes it: CutMix with probability ``switch_prob`` (when
    both are on), else Mixup; ``mixup_alpha=0`` or ``cutmix_alpha=0`` turns one off. Unmixed
    batches get one-hot targets, so the loss always sees (B, num_classes) probabilities.
    """
    num_classes: int
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5

    def __post_init__(self):
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            raise ValueError("turn on at least one of mixup_alpha and cutmix_alpha (> 0)")

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if float(torch.rand(())) >= self.prob:
            return x, one_hot(y, self.num_classes)
        use_cutmix = self.mixup_alpha <= 0 or (self.cutmix_alpha > 0 and float(torch.rand(())) < self.switch_prob)
        if use_cutmix:
            return cutmix(x, y, num_classes=self.num_classes, alpha=self.cutmix_alpha)
        return mixup(x, y, num_classes=self.num_classes, alpha=self.mixup_alpha)


# ---------------------------------------------------------------------------------------------
# Looking at augmentations: sliders in a live notebook, a static figure elsewhere
# ---------------------------------------------------------------------------------------------

def _as_augment(transform) -> Augment:
    if isinstance(transform, str):
        return pipeline(transform)
    return transform if isinstance(transform, Augment) else Augment(transform)


def _controls(transform, specs: dict):
    """make(**params) -> Augment, the slider specs, fixed params and starting values from ``preview``'s arguments."""
    if isinstance(transform, str):
        if transform not in PIPELINES:
            raise ValueError(f"unknown pipeline {transform!r}; choose one of: {', '.join(PIPELINES)}")
        defaults, sliders = _defaults(PIPELINES[transform].build), dict(PIPELINES[transform].sliders)
        make = functools.partial(pipeline, transform)
    else:
        signature = inspect.signature(transform).parameters.values()
        defaults, sliders = {p.name: p.default for p in signature if p.default is not p.empty}, {}

        def make(**params):
            return _as_augment(transform(**params))
    fixed = {k: v for k, v in specs.items() if not isinstance(v, (tuple, list))}
    sliders = {k: v for k, v in {**sliders, **specs}.items() if k not in fixed}
    values = {k: s[3] if isinstance(s, tuple) and len(s) == 4 else defaults.get(k, s[0]) for k, s in sliders.items()}
    return make, sliders, fixed, values


def preview(image, transform: str | Callable = "geometric", *, seed: int = 0, live: bool | None = None,
            height: int = 224, **sliders):
    """Sliders for a transform's parameters and a seed; dragging redraws the augmented image beside the original.

    ``transform`` is a pipeline name (its parameters get sliders) or a function ``(**params) ->``
    transform (an Augment, an albumentations or torchvision transform, or a function of a uint8
    (C, H, W) tensor). Each keyword sets one parameter: ``(min, max, step)`` or ``(min, max, step,
    default)`` makes a slider, a list of choices a dropdown, a plain value fixes it.
    In a live notebook it returns the widget; elsewhere (nbval, scripts; or ``live=False``) a
    matplotlib Figure of the original and one draw (see :func:`cvlab.widgets.is_live`).
    """
    make, specs, fixed, values = _controls(transform, sliders)

    def render(seed, **params):
        return [image, make(**fixed, **params).augment(image, seed=seed)]

    if widgets.is_live(live):
        panel = widgets.slider_panel(render, {**specs, "seed": (0, 999, 1)}, {**values, "seed": seed}, height=height)
        panel.add_class("cvlab-preview")
        return panel
    name = transform if isinstance(transform, str) else getattr(transform, "__name__", "transform")
    return widgets.static_figure(render(seed, **values), ["original", f"augmented (seed {seed})"],
                                 f"{name}: " + ", ".join(f"{k}={v}" for k, v in {**fixed, **values}.items()))


def grid(image, transform, n: int = 8, *, seed: int = 0, ncols: int = 6, size: float = 1.8):
    """The original and ``n`` random draws of ``transform`` (a pipeline name, an Augment or a library transform)."""
    from .plot import show_images
    aug = _as_augment(transform)
    images = [widgets.displayable(image)] + [widgets.displayable(aug.augment(image, seed=seed + k)) for k in range(n)]
    fig = show_images(images, ["original"] + [f"seed {seed + k}" for k in range(n)], ncols=ncols, size=size)
    for ax in fig.axes:
        for im in ax.images:
            im.set_clim(0, 255)  # gray images: keep brightness changes visible (no per-image autoscale)
    return fig
