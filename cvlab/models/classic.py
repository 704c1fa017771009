"""The classic CNNs, read top-down: LeNet-5 (1998), AlexNet (2012) and VGG (2014).

    model = cvlab.models.create("vgg11_bn", num_classes=10, in_chans=1, small_input=True)

Module names follow torchvision's ``alexnet`` and ``vgg*``, so a torchvision state dict loads as it is
(the key map is the identity): ``create("vgg16").load_state_dict(torchvision.models.vgg16().state_dict())``.

``small_input=True`` builds the form for 28-32 px images (Fashion-MNIST, CIFAR) that the lessons use;
the default is the reference (ImageNet, 224 px) form. Each network is a ``ConvNet`` (``layers.py``):
``features`` -> ``avgpool`` -> ``classifier``, with timm's interface: ``forward_features`` gives the feature
maps, ``forward_head(x, pre_logits=True)`` what the last linear sees, ``get_classifier`` that linear.

- LeNet-5: C1 pads by 2, so a 28 px image gives the 28x28 C1 map the paper got from 32 px.
- AlexNet: a 3x3 stride-1 stem instead of 11x11 stride 4, and a 1024-wide classifier.
- VGG: the last max-pool goes (28 px survives four halvings, not five) and the classifier is 512 wide.

The names shadow timm's ``vgg11``, ``vgg16``...: the builders take timm's ``num_classes``, ``in_chans``,
``pretrained`` (torchvision's weights), ``drop_rate`` and ``global_pool="avg"``; timm's versions (other
module names) stay reachable through ``timm.create_model``.
"""
from __future__ import annotations

import torch.nn as nn

from . import register
from .layers import ConvNet, build, init_weights, linear_head, min_input_size

__all__ = ["LeNet5", "AlexNet", "VGG", "VGG_CFGS"]


class LeNet5(ConvNet):
    """LeNet-5 (LeCun et al., 1998): two conv + subsampling stages, then three fully connected layers."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, small_input: bool = False):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input = num_classes, in_chans, small_input
        # The paper's C3 sees only some of S2's maps and its output layer is RBF units; like every modern
        # re-implementation we use a full conv and a linear layer, and keep its tanh and average pooling.
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=2 if small_input else 0), nn.Tanh(),  # C1: (B, 6, 28, 28)
            nn.AvgPool2d(2),                                                          # S2: (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5), nn.Tanh(),                                           # C3: (B, 16, 10, 10)
            nn.AvgPool2d(2),                                                          # S4: (B, 16, 5, 5)
        )
        self.min_size = min_input_size(self.features)
        self.avgpool = nn.AdaptiveAvgPool2d(5)  # a no-op at the design size; lets larger images through
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.Tanh(),  # C5
            nn.Linear(120, 84), nn.Tanh(),          # F6
            linear_head(84, num_classes),
        )
        self.num_features, self.head_hidden_size = 16, 84


class AlexNet(ConvNet):
    """AlexNet as torchvision has it: the single-GPU widths of "One weird trick" (Krizhevsky, 2014)."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                 drop_rate: float = 0.5):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input = num_classes, in_chans, small_input
        # ImageNet: 224 px -> 55 after the 11x11 stride-4 stem, then 27, 13, 6 after the pools.
        # Small: a 3x3 stride-1 stem keeps 32 px at 32, then 15, 7, 3 (28 px: 13, 6, 2).
        kernel, stride, pad = (3, 1, 1) if small_input else (11, 4, 2)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel, stride, pad), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),  # (B, 256, 6, 6)
        )
        self.min_size = min_input_size(self.features)
        pool, hidden = (2, 1024) if small_input else (6, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate), nn.Linear(256 * pool * pool, hidden), nn.ReLU(inplace=True),
            nn.Dropout(drop_rate), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            linear_head(hidden, num_classes),
        )
        self.num_features, self.head_hidden_size = 256, hidden


# Numbers are the widths of 3x3 convs, "M" a 2x2 max-pool that halves the map (the paper's table 1).
VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),                         # VGG-11
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),  # VGG-16
}


class VGG(ConvNet):
    """VGG (Simonyan & Zisserman, 2014): stacks of 3x3 convs between max-pools, then three linear layers."""

    def __init__(self, *, cfg: tuple[int | str, ...], batch_norm: bool = False, num_classes: int = 1000,
                 in_chans: int = 3, small_input: bool = False, drop_rate: float = 0.5):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input = num_classes, in_chans, small_input
        if small_input:  # five halvings take 28 px to nothing (28, 14, 7, 3, 1, 0): drop the last pool
            cfg = cfg[:-1]
        layers: list[nn.Module] = []
        channels = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(channels, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
        self.features = nn.Sequential(*layers)  # (B, 512, 7, 7) at 224 px
        self.min_size = min_input_size(self.features)
        pool, hidden = (1, 512) if small_input else (7, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            linear_head(hidden, num_classes),
        )
        self.num_features, self.head_hidden_size = channels, hidden
        init_weights(self)


@register
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5: 32 px by design, 28 px with ``small_input``."""
    return build(LeNet5, "lenet5", **kwargs)


@register
def alexnet(**kwargs) -> AlexNet:
    """AlexNet, torchvision's variant."""
    return build(AlexNet, "alexnet", **kwargs)


@register
def vgg11(**kwargs) -> VGG:
    """VGG-11 (configuration A)."""
    return build(VGG, "vgg11", cfg=VGG_CFGS["A"], **kwargs)


@register
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 with batch norm after every conv."""
    return build(VGG, "vgg11_bn", cfg=VGG_CFGS["A"], batch_norm=True, **kwargs)


@register
def vgg16(**kwargs) -> VGG:
    """VGG-16 (configuration D)."""
    return build(VGG, "vgg16", cfg=VGG_CFGS["D"], **kwargs)


@register
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with batch norm after every conv."""
    return build(VGG, "vgg16_bn", cfg=VGG_CFGS["D"], batch_norm=True, **kwargs)
