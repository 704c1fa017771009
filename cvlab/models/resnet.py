"""ResNet (He et al., 2015), read top-down: the two residual blocks, the network, one builder per depth.

    model = cvlab.models.create("resnet18", num_classes=10, in_chans=1, small_input=True)

Module names follow torchvision's ``resnet*``, so a torchvision state dict loads as it is (the key map
is the identity). Like torchvision, the bottleneck strides in its 3x3 conv ("ResNet v1.5").

``small_input=True`` swaps the 7x7 stride-2 stem and its max-pool for one 3x3 stride-1 conv, so a
32 px image reaches layer1 at 32x32 instead of 8x8 (the CIFAR ResNets' stem).

The names shadow timm's ``resnet18``...: the builders take timm's ``num_classes``, ``in_chans``,
``pretrained`` (torchvision's weights), ``drop_rate`` (dropout before ``fc``, as timm's) and
``global_pool="avg"``; timm's versions stay reachable through ``timm.create_model``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .layers import build, check_global_pool, check_input, init_weights, linear_head, new_classifier

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def conv3x3(in_chans: int, out_chans: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias (the batch norm after it has one)."""
    return nn.Conv2d(in_chans, out_chans, 3, stride, padding=1, bias=False)


def conv1x1(in_chans: int, out_chans: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias."""
    return nn.Conv2d(in_chans, out_chans, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut: relu(x + F(x)). ResNet-18 and -34."""

    expansion = 1  # out channels = planes * expansion

    def __init__(self, in_chans: int, planes: int, *, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_chans, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(in_chans, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 squeeze, 3x3, 1x1 expand (x4) plus a shortcut: the 3x3 runs on 4x fewer channels. ResNet-50."""

    expansion = 4

    def __init__(self, in_chans: int, planes: int, *, stride: int = 1):
        super().__init__()
        self.conv1 = conv1x1(in_chans, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_chans, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _shortcut(in_chans: int, out_chans: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 conv + BN that projects x to F(x)'s shape."""
    if stride == 1 and in_chans == out_chans:
        return nn.Identity()
    return nn.Sequential(conv1x1(in_chans, out_chans, stride), nn.BatchNorm2d(out_chans))


class ResNet(nn.Module):
    """A stem, four stages of residual blocks (each after the first halves the map), global pool, linear."""

    def __init__(self, *, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int],
                 num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, drop_rate: float = 0.0):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input = num_classes, in_chans, small_input
        self.drop_rate = drop_rate
        self.min_size = 1  # every stride-2 layer pads, so even 1 px survives
        if small_input:  # 32 px -> (B, 64, 32, 32)
            self.conv1 = conv3x3(in_chans, 64)
            self.maxpool = nn.Identity()
        else:  # 224 px -> 112 after conv1 -> (B, 64, 56, 56) after the max-pool
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.in_planes = 64
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.num_features = self.head_hidden_size = 512 * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_head(self.num_features, num_classes)
        init_weights(self)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        """One stage: the first block changes width and stride, the rest keep them."""
        layers = [block(self.in_planes, planes, stride=stride)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_features, H/32, W/32) maps (H/8 with small_input)."""
        check_input(self, x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Feature maps -> logits, or with ``pre_logits`` the pooled (B, num_features) embedding."""
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate:  # timm's ResNet: dropout on the pooled features, only when asked for
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh ``fc`` with ``num_classes`` outputs (0: ``nn.Identity``, the model returns the pooled features)."""
        check_global_pool("ResNet", global_pool, "avg")
        self.num_classes = num_classes
        self.fc = new_classifier(self, self.num_features, num_classes)


@register
def resnet18(**kwargs) -> ResNet:
    """ResNet-18: basic blocks, 2-2-2-2."""
    return build(ResNet, "resnet18", block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)


@register
def resnet34(**kwargs) -> ResNet:
    """ResNet-34: basic blocks, 3-4-6-3."""
    return build(ResNet, "resnet34", block=BasicBlock, layers=(3, 4, 6, 3), **kwargs)


@register
def resnet50(**kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks, 3-4-6-3."""
    return build(ResNet, "resnet50", block=Bottleneck, layers=(3, 4, 6, 3), **kwargs)
