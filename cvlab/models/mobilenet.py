"""MobileNets V1, V2 and V3, read top-down: shared pieces, each version's block and network, the builders.

    model = cvlab.models.create("mobilenet_v2", num_classes=10, in_chans=1, small_input=True)

- V1 (Howard et al., 2017): depthwise-separable convs, a 3x3 per-channel conv then a 1x1 mix.
- V2 (Sandler et al., 2018): inverted residuals, 1x1 expand, 3x3 depthwise, linear 1x1 project.
- V3 (Howard et al., 2019): V2's block with squeeze-excite, hard-swish and 5x5 kernels where search chose.

V2 and V3 name their modules as torchvision does, so a torchvision state dict loads as it is (the key map
is the identity). V1, which torchvision lacks, follows timm's ``mobilenetv1_100`` tensor for tensor.

Each network is a ``ConvNet``: ``features`` (ending in a (B, C, H/32, W/32) map), ``avgpool``, ``classifier``,
with timm's ``forward_features``/``forward_head``/``get_classifier``/``reset_classifier``.
``small_input=True`` makes the stem stride 1 and takes the stride out of the first downsampling block, so a
32 px image ends as a 4x4 map (overall stride 8, not 32). ``width_mult`` scales every width (the paper's alpha).

timm spells its MobileNets differently (``mobilenetv2_100``, ``mobilenetv3_large_100``): ``create`` reaches them too.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from . import register
from .layers import ConvNet, build, init_weights, linear_head

__all__ = ["ConvBNAct", "SqueezeExcite", "DepthwiseSeparable", "InvertedResidual", "InvertedResidualSE",
           "MobileNetV1", "MobileNetV2", "MobileNetV3", "V1_SETTING", "V2_SETTING", "V3_SMALL", "V3_LARGE"]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a width to a multiple of 8 (hardware-friendly), never more than 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    """Conv (padding keeps the size at stride 1), batch norm, then an activation unless ``act`` is None."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 3, *, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6, norm: type[nn.Module] = nn.BatchNorm2d):
        layers = [nn.Conv2d(in_chans, out_chans, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                            bias=False), norm(out_chans)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: pool to one value per channel, a small MLP, rescale each channel by a 0..1 gate."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)  # 1x1 convs are linears that keep (B, C, 1, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()  # V3's cheap sigmoid: relu6(x + 3) / 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.relu(self.fc1(self.avgpool(x)))))  # (B, C, 1, 1)
        return x * scale


def _for_input(setting: tuple[tuple, ...], small_input: bool) -> tuple[tuple, ...]:
    """The table as it is, or for small inputs with the first stride-2 row (last column) made stride 1."""
    if not small_input:
        return setting
    i = next(i for i, row in enumerate(setting) if row[-1] == 2)
    return setting[:i] + ((*setting[i][:-1], 1),) + setting[i + 1:]


# --- V1 ------------------------------------------------------------------------------------------

class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv (one filter per channel) then 1x1 pointwise: ~8x fewer mult-adds than a 3x3 conv."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1):
        super().__init__(ConvBNAct(in_chans, in_chans, stride=stride, groups=in_chans),
                         ConvBNAct(in_chans, out_chans, 1))


V1_SETTING = (
    # c, n, s: out channels, repeats, stride of the first (Howard et al., table 1)
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 6, 2),
    (1024, 2, 2),
)


class MobileNetV1(ConvNet):
    """A 3x3 stride-2 stem, thirteen depthwise-separable blocks, global pool, linear."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                 width_mult: float = 1.0, drop_rate: float = 0.0):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input, self.min_size = num_classes, in_chans, small_input, 1
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_chans, channels, stride=1 if small_input else 2)]
        for c, n, s in _for_input(V1_SETTING, small_input):
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(DepthwiseSeparable(channels, out, stride=s if i == 0 else 1))
                channels = out
        self.features = nn.Sequential(*layers)  # (B, 1024 * width_mult, H/32, W/32)
        self.num_features = self.head_hidden_size = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), linear_head(channels, num_classes))
        init_weights(self)


# --- V2 ------------------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """Expand with 1x1, filter with 3x3 depthwise, project with a linear 1x1; add x back when shapes match."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_chans * expand_ratio))
        self.use_res_connect = stride == 1 and in_chans == out_chans
        layers: list[nn.Module] = [ConvBNAct(in_chans, hidden, 1)] if expand_ratio != 1 else []
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden),
            # No activation after the projection: ReLU in this narrow space would destroy information.
            nn.Conv2d(hidden, out_chans, 1, bias=False),
            nn.BatchNorm2d(out_chans),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


V2_SETTING = (
    # t, c, n, s: expansion, out channels, repeats, stride of the first (Sandler et al., table 2)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(ConvNet):
    """A 3x3 stride-2 stem, seventeen inverted residuals, a 1x1 conv to 1280, global pool, linear."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                 width_mult: float = 1.0, drop_rate: float = 0.2):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input, self.min_size = num_classes, in_chans, small_input, 1
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_chans, channels, stride=1 if small_input else 2)]
        for t, c, n, s in _for_input(V2_SETTING, small_input):
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, stride=s if i == 0 else 1, expand_ratio=t))
                channels = out
        self.num_features = self.head_hidden_size = make_divisible(1280 * max(1.0, width_mult))  # never below 1280
        layers.append(ConvBNAct(channels, self.num_features, 1))
        self.features = nn.Sequential(*layers)  # (B, num_features, H/32, W/32)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), linear_head(self.num_features, num_classes))
        init_weights(self)


# --- V3 ------------------------------------------------------------------------------------------

class InvertedResidualSE(nn.Module):
    """V2's inverted residual with a squeeze-excite gate on the expanded channels and a choice of activation."""

    def __init__(self, in_chans: int, kernel_size: int, expanded: int, out_chans: int, *, use_se: bool,
                 act: type[nn.Module], stride: int, norm: type[nn.Module]):
        super().__init__()
        self.use_res_connect = stride == 1 and in_chans == out_chans
        layers: list[nn.Module] = [ConvBNAct(in_chans, expanded, 1, act=act, norm=norm)] if expanded != in_chans else []
        layers.append(ConvBNAct(expanded, expanded, kernel_size, stride=stride, groups=expanded, act=act, norm=norm))
        if use_se:
            layers.append(SqueezeExcite(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, out_chans, 1, act=None, norm=norm))  # linear projection, as in V2
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


RE, HS = nn.ReLU, nn.Hardswish  # hard-swish x * relu6(x + 3) / 6: swish's accuracy without its exp

V3_LARGE = (
    # in, k, exp, out, se, act, s (Howard et al., 2019, table 1)
    (16, 3, 16, 16, False, RE, 1),
    (16, 3, 64, 24, False, RE, 2),
    (24, 3, 72, 24, False, RE, 1),
    (24, 5, 72, 40, True, RE, 2),
    (40, 5, 120, 40, True, RE, 1),
    (40, 5, 120, 40, True, RE, 1),
    (40, 3, 240, 80, False, HS, 2),
    (80, 3, 200, 80, False, HS, 1),
    (80, 3, 184, 80, False, HS, 1),
    (80, 3, 184, 80, False, HS, 1),
    (80, 3, 480, 112, True, HS, 1),
    (112, 3, 672, 112, True, HS, 1),
    (112, 5, 672, 160, True, HS, 2),
    (160, 5, 960, 160, True, HS, 1),
    (160, 5, 960, 160, True, HS, 1),
)

V3_SMALL = (
    # in, k, exp, out, se, act, s (Howard et al., 2019, table 2)
    (16, 3, 16, 16, True, RE, 2),
    (16, 3, 72, 24, False, RE, 2),
    (24, 3, 88, 24, False, RE, 1),
    (24, 5, 96, 40, True, HS, 2),
    (40, 5, 240, 40, True, HS, 1),
    (40, 5, 240, 40, True, HS, 1),
    (40, 5, 120, 48, True, HS, 1),
    (48, 5, 144, 48, True, HS, 1),
    (48, 5, 288, 96, True, HS, 2),
    (96, 5, 576, 96, True, HS, 1),
    (96, 5, 576, 96, True, HS, 1),
)


class MobileNetV3(ConvNet):
    """A hard-swish stem, the searched blocks of ``setting``, a 1x1 conv to 6x, pool, a two-layer classifier."""

    def __init__(self, *, setting: tuple[tuple, ...], last_channel: int, num_classes: int = 1000,
                 in_chans: int = 3, small_input: bool = False, width_mult: float = 1.0, drop_rate: float = 0.2):
        super().__init__()
        self.num_classes, self.in_chans, self.small_input, self.min_size = num_classes, in_chans, small_input, 1
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)  # TensorFlow's batch-norm settings

        def width(c: int) -> int:
            return make_divisible(c * width_mult)

        layers: list[nn.Module] = [ConvBNAct(in_chans, width(setting[0][0]), stride=1 if small_input else 2,
                                             act=HS, norm=norm)]
        for c_in, k, exp, c_out, use_se, act, stride in _for_input(setting, small_input):
            layers.append(InvertedResidualSE(width(c_in), k, width(exp), width(c_out), use_se=use_se, act=act,
                                             stride=stride, norm=norm))
        last_conv = 6 * width(setting[-1][3])
        layers.append(ConvBNAct(width(setting[-1][3]), last_conv, 1, act=HS, norm=norm))
        self.features = nn.Sequential(*layers)  # (B, 6 * last block's width, H/32, W/32)
        self.num_features = last_conv
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = self.head_hidden_size = width(last_channel)  # pre_logits: the hidden layer, as in timm
        self.classifier = nn.Sequential(nn.Linear(last_conv, hidden), HS(inplace=True),
                                        nn.Dropout(drop_rate, inplace=True), linear_head(hidden, num_classes))
        init_weights(self)


# --- builders ------------------------------------------------------------------------------------

@register
def mobilenet_v1(**kwargs) -> MobileNetV1:
    """MobileNetV1, width 1.0 unless ``width_mult`` says otherwise."""
    return build(MobileNetV1, "mobilenet_v1", **kwargs)


@register
def mobilenet_v2(**kwargs) -> MobileNetV2:
    """MobileNetV2, width 1.0 unless ``width_mult`` says otherwise."""
    return build(MobileNetV2, "mobilenet_v2", **kwargs)


@register
def mobilenet_v3_small(**kwargs) -> MobileNetV3:
    """MobileNetV3-Small: eleven blocks, a 1024-wide classifier."""
    return build(MobileNetV3, "mobilenet_v3_small", setting=V3_SMALL, last_channel=1024, **kwargs)


@register
def mobilenet_v3_large(**kwargs) -> MobileNetV3:
    """MobileNetV3-Large: fifteen blocks, a 1280-wide classifier."""
    return build(MobileNetV3, "mobilenet_v3_large", setting=V3_LARGE, last_channel=1280, **kwargs)
