"""Transfer learning: a pretrained network's blocks, freezing, new heads, per-block learning rates, features.

    net = cvlab.models.create("efficientnet_lite0", pretrained=True, num_classes=10)
    model = InputAdapter(net, size=96)       # gray 28 px in [0, 1] -> 3 x 96 x 96 with the weights' own mean/std
    [b.name for b in blocks(model)]          # ['conv_stem+bn1', 'blocks.0', ..., 'blocks.6+conv_head+bn2', 'classifier']
    freeze(model, up_to="blocks.4")          # stem..blocks.4 frozen, the rest trainable
    opt = torch.optim.AdamW(param_groups(model, slice(1e-5, 1e-3)))  # early blocks slowest, head fastest
    fit(model, train, test, epochs=5, optimizer=opt, schedule="onecycle",
        callbacks=[GradualUnfreezing(model, {3: "blocks.5", 5: None})])
    feats, labels = extract_features(model, train)   # pooled pre-classifier features (N, 1280)
    probe = linear_probe(feats, labels)              # scikit-learn: probe.score(test_feats, test_labels)

A network is split into **blocks** in the order data flows through it: for timm models (and cvlab's
ViTs) the stages of ``model.group_matcher(coarse=True)`` (the grouping timm itself uses for layer-wise
learning-rate decay), for other models their top-level modules; the classifier (``get_classifier()``,
else the last ``nn.Linear``) is always the last block on its own. A DeiT's classifier is both its
heads, class and distillation, as timm's ``get_classifier()`` returns them: they are replaced, frozen
and trained together. Every parameter belongs to exactly one block. Freezing sets ``requires_grad``:
a frozen block's batch-norm layers still use batch statistics and update their running averages in
train mode, which lets them follow the new data.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .preprocess import Preprocess
from .train import _as_loader, _model_device, _to_device

__all__ = ["Block", "blocks", "block_table", "freeze", "unfreeze", "replace_head", "param_groups",
           "GradualUnfreezing", "InputAdapter", "pooled_features", "extract_features", "linear_probe"]


@dataclass(frozen=True)
class Block:
    """A named run of a network's parameters that is frozen, unfrozen and given a learning rate together."""
    name: str
    params: tuple[str, ...]  # parameter names, as in model.named_parameters()


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------

def _network(model: nn.Module) -> nn.Module:
    """The network itself: an InputAdapter's wrapped model, else the model."""
    return model.model if isinstance(model, InputAdapter) else model


def _head_modules(net: nn.Module) -> list[nn.Module]:
    """The classifier: timm's ``get_classifier()`` (one module, or a DeiT's two heads), else the last Linear."""
    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        return list(head) if isinstance(head, (tuple, list)) else [head]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no get_classifier() and no nn.Linear layer, so cvlab cannot "
                         "tell which layer is the head; give the model a final nn.Linear classifier.")
    return linears[-1:]


def _prefix(name: str) -> str:
    """The top-level module of a parameter, with its index inside a list: 'fc.weight' -> 'fc', 'layer2.0.conv1.weight' -> 'layer2.0'."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]


def _block_names(groups: list[list[str]]) -> list[str]:
    """Name each group by the fewest modules that hold exactly its parameters: 'layer1', 'blocks.6+conv_head+bn2'."""
    owners: dict[str, set[int]] = {}  # module path -> the groups with a parameter under it
    for g, names in enumerate(groups):
        for n in names:
            parts = n.split(".")
            for k in range(1, len(parts) + 1):
                owners.setdefault(".".join(parts[:k]), set()).add(g)
    result = []
    for names in groups:
        modules = []
        for n in names:
            parts = n.split(".")
            modules.append(next(p for p in (".".join(parts[:k]) for k in range(1, len(parts) + 1)) if len(owners[p]) == 1))
        result.append("+".join(dict.fromkeys(modules)))
    return result


def _body_groups(net: nn.Module) -> list[list[str]]:
    """Parameter names in groups, input first: timm's coarse stages, else consecutive top-level modules."""
    names = [n for n, _ in net.named_parameters()]
    if hasattr(net, "group_matcher"):
        from timm.models import group_parameters
        groups = group_parameters(net, net.group_matcher(coarse=True))
        return [groups[k] for k in sorted(groups)]
    groups: list[list[str]] = []
    for n in names:
        if groups and _prefix(groups[-1][-1]) == _prefix(n):
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


def blocks(model: nn.Module) -> list[Block]:
    """The network's blocks from input to output; the last is the classifier (see the module docstring)."""
    net = _network(model)
    named = dict(net.named_parameters())
    head_ids = {id(p) for m in _head_modules(net) for p in m.parameters()}
    groups = [g for g in ([n for n in g if id(named[n]) not in head_ids] for g in _body_groups(net)) if g]
    groups += [[n for n, p in named.items() if id(p) in head_ids]]
    result = [Block(name, tuple(g)) for name, g in zip(_block_names(groups), groups) if g]
    covered = [n for b in result for n in b.params]
    if sorted(covered) != sorted(named):  # guard against a grouping that loses or repeats a parameter
        raise RuntimeError(f"the blocks of {type(net).__name__} do not cover each parameter once")
    return result


def block_table(model: nn.Module) -> list[dict]:
    """One row per block: its name, parameter count and how many of those are trainable (for pandas)."""
    named = dict(_network(model).named_parameters())
    return [{"block": b.name, "params": sum(named[n].numel() for n in b.params),
             "trainable": sum(named[n].numel() for n in b.params if named[n].requires_grad)} for b in blocks(model)]


def _index(bl: list[Block], which: str | int, what: str) -> int:
    """How many blocks ``which`` stands for: a block name (that block and all before it) or a count."""
    if isinstance(which, str):
        for i, b in enumerate(bl):
            if which == b.name or which in b.name.split("+"):
                return i + 1
        raise ValueError(f"{what}={which!r} is not a block of this model; its blocks are: "
                         f"{', '.join(b.name for b in bl)} (see cvlab.transfer.blocks(model)).")
    if isinstance(which, bool) or not isinstance(which, int) or not 0 <= which <= len(bl):
        raise ValueError(f"{what}={which!r} must be a block name or a number of blocks from 0 to {len(bl)} "
                         f"(this model has {len(bl)}: {', '.join(b.name for b in bl)}).")
    return which


def _set_trainable(model: nn.Module, chosen: list[Block], flag: bool) -> None:
    named = dict(_network(model).named_parameters())
    for b in chosen:
        for n in b.params:
            named[n].requires_grad_(flag)


def freeze(model: nn.Module, up_to: str | int | None = None) -> nn.Module:
    """Freeze the blocks from the input up to ``up_to`` and make every later block trainable.

    ``up_to`` is a block name (it and all blocks before it are frozen), a number of blocks counted
    from the input, or None: everything but the classifier.
    Returns the model, so ``freeze(replace_head(net, 10))`` reads as one step.
    """
    bl = blocks(model)
    k = len(bl) - 1 if up_to is None else _index(bl, up_to, "up_to")
    _set_trainable(model, bl[:k], False)
    _set_trainable(model, bl[k:], True)
    return model


def unfreeze(model: nn.Module, down_to: str | int | None = None) -> nn.Module:
    """Make the blocks from the classifier back to ``down_to`` trainable; blocks before it keep their state.

    ``down_to`` is a block name (it and every later block become trainable), a number of blocks
    counted from the output (1 = the classifier only), or None: the whole network.
    """
    bl = blocks(model)
    if down_to is None:
        start = 0
    elif isinstance(down_to, str):
        start = _index(bl, down_to, "down_to") - 1
    else:
        start = len(bl) - _index(bl, down_to, "down_to")
    _set_trainable(model, bl[start:], True)
    return model


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A new, trainable classifier with ``num_classes`` outputs (timm's ``reset_classifier``, else the last Linear).

    A DeiT gets two, class and distillation head. The model's ``cvlab_spec`` (from ``cvlab.models.create``)
    is updated, so a checkpoint of the fine-tuned model rebuilds it with the new number of classes.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive whole number; got {num_classes!r}. For pooled features "
                         "without a classifier use cvlab.transfer.extract_features(model, data).")
    net = _network(model)
    if getattr(net, "cvlab_spec", None) is not None:
        net.cvlab_spec = {**net.cvlab_spec, "num_classes": num_classes}
    if hasattr(net, "reset_classifier"):
        net.reset_classifier(num_classes)
        return model
    old = _head_modules(net)[0]
    name = next(n for n, m in net.named_modules() if m is old)
    parent, _, attr = name.rpartition(".")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(old.weight.device)
    setattr(net.get_submodule(parent) if parent else net, attr, new)
    return model


def _block_lrs(lrs: float | Sequence[float] | slice, bl: list[Block]) -> list[float]:
    """One learning rate per block: a number for all, a list, or slice(low, high) spaced geometrically."""
    if isinstance(lrs, slice):
        low, high = lrs.start, lrs.stop
        if low is None or high is None or not 0 < low <= high:
            raise ValueError(f"lrs=slice({low}, {high}): give slice(lowest, highest) with 0 < lowest <= highest; "
                             "the first block gets the lowest, the classifier the highest.")
        n = len(bl)
        return [low * (high / low) ** (i / max(1, n - 1)) for i in range(n)]
    if isinstance(lrs, (int, float)):
        return [float(lrs)] * len(bl)
    lrs = list(lrs)
    if len(lrs) != len(bl):
        raise ValueError(f"got {len(lrs)} learning rates for {len(bl)} blocks ({', '.join(b.name for b in bl)}); "
                         "give one per block, one number for all, or slice(lowest, highest).")
    return [float(lr) for lr in lrs]


def param_groups(model: nn.Module, lrs: float | Sequence[float] | slice, *, include_frozen: bool = False) -> list[dict]:
    """Optimizer parameter groups, one per block, each with its own ``lr`` (and its block's ``name``).

    ``lrs``: one number, one per block (input first), or ``slice(low, high)``: geometric from the
    first block to the classifier. Frozen parameters are left out unless ``include_frozen``, which
    gradual unfreezing needs: the optimizer must hold them before they start to get gradients
    (an optimizer skips a parameter while its gradient is None). Pass the result to any
    ``torch.optim`` optimizer; :func:`cvlab.train.fit`'s schedules scale each group's own rate
    (``"onecycle"`` peaks at each group's ``lr``).
    """
    bl = blocks(model)
    named = dict(_network(model).named_parameters())
    groups = []
    for block, lr in zip(bl, _block_lrs(lrs, bl)):
        params = [named[n] for n in block.params if include_frozen or named[n].requires_grad]
        if params:
            groups.append({"params": params, "lr": lr, "name": block.name})
    if not groups:
        raise ValueError("the model has no trainable parameters: unfreeze some blocks first "
                         "(cvlab.transfer.unfreeze(model, 1) for the classifier), or pass include_frozen=True.")
    return groups


class GradualUnfreezing:
    """A :func:`cvlab.train.fit` callback that unfreezes more blocks as epochs pass.

    ``schedule`` maps an epoch (1-based, as fit prints them) to what becomes trainable when it
    starts, in :func:`unfreeze`'s terms: ``{3: "blocks.5", 6: None}`` trains what is trainable now
    for epochs 1-2, adds blocks.5 onward from epoch 3 and everything from epoch 6. A number ``k``
    instead of a dict unfreezes one more block every ``k`` epochs. Freeze the model before fit and
    build the optimizer with ``param_groups(model, lrs, include_frozen=True)``.
    """

    def __init__(self, model: nn.Module, schedule: dict[int, str | int | None] | int):
        n = len(blocks(model))
        if isinstance(schedule, int) and not isinstance(schedule, bool):
            if schedule < 1:
                raise ValueError(f"unfreeze one block every k epochs needs k >= 1; got {schedule}")
            schedule = {1 + schedule * i: i + 1 for i in range(1, n)}
        for epoch, down_to in schedule.items():
            if not isinstance(epoch, int) or epoch < 1:
                raise ValueError(f"schedule epochs count from 1 (as fit prints them); got {epoch!r}")
            if down_to is not None:
                _index(blocks(model), down_to, "down_to")  # a bad block name fails here, not mid-training
        self.model, self.schedule = model, dict(sorted(schedule.items()))

    def on_fit_start(self, state) -> None:
        held = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        missing = [n for n, p in _network(self.model).named_parameters() if id(p) not in held]
        if missing:
            raise ValueError(f"{len(missing)} parameters (e.g. {missing[0]}) are not in the optimizer, so unfreezing "
                             "them would not train them: build it with param_groups(model, lrs, include_frozen=True).")

    def on_epoch_start(self, state) -> None:
        # Replays every step due so far, so a resumed run reaches the same state.
        for epoch, down_to in self.schedule.items():
            if epoch <= state.epoch + 1:
                unfreeze(self.model, down_to)


# ---------------------------------------------------------------------------------------------
# Inputs and features
# ---------------------------------------------------------------------------------------------

class InputAdapter(nn.Module):
    """Feed a pretrained network other images: gray to 3 channels, resize, the weights' own normalization.

    Takes float batches (B, 1 or 3, H, W) scaled to [0, 1], as :class:`cvlab.data.TensorLoader` yields
    them without mean/std, and works on whole batches (one interpolate call), so 28 px Fashion-MNIST
    goes straight into ``fit``/``evaluate``. ``size`` defaults to the weights' input size; mean, std
    and interpolation come from the weights' config (timm's ``resolve_data_config``): for
    EfficientNet-Lite0 that is mean = std = 0.5, not the usual ImageNet statistics. The prepared batch
    takes the memory format of the network's first convolution, so after
    ``model.to(memory_format=torch.channels_last)`` (or ``fit(..., channels_last=True)``) the
    convolutions get channels-last input, several times faster on CPUs, with no conversion per layer.
    """

    def __init__(self, model: nn.Module, *, size: int | tuple[int, int] | None = None):
        super().__init__()
        from .models import data_config
        cfg = data_config(model)
        self.model = model
        size = (size, size) if isinstance(size, int) else tuple(size or cfg["input_size"][-2:])
        mode = cfg["interpolation"] if cfg["interpolation"] in ("bilinear", "bicubic") else "bilinear"
        self.adapt = Preprocess(mean=cfg["mean"], std=cfg["std"], size=size, channels=3, interpolation=mode)

    @property
    def size(self) -> tuple[int, int]:
        return self.adapt.size

    @property
    def mode(self) -> str:
        """The interpolation the weights were trained with (bicubic or bilinear)."""
        return self.adapt.interpolation

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, H, W) in [0, 1] (or uint8) -> (B, 3, *size), normalized as the weights expect."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"InputAdapter takes (B, 1 or 3, H, W) images; got shape {tuple(x.shape)}")
        x = self.adapt(x)  # gray: the same value in R, G and B
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last() else x

    def _channels_last(self) -> bool:
        conv = next((p for p in self.model.parameters() if p.ndim == 4), None)  # (out, in, kh, kw)
        return conv is not None and not conv.is_contiguous() and conv.is_contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prepare(x))

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode!r}"


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled features the classifier sees, (B, D): timm's ``forward_head(pre_logits=True)``, else the head's input."""
    if isinstance(model, InputAdapter):
        model, x = model.model, model.prepare(x)
    if hasattr(model, "forward_head") and hasattr(model, "forward_features"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    captured = []
    hook = _head_modules(model)[0].register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return captured[0].flatten(1)


@torch.no_grad()
def extract_features(model: nn.Module, data, *, batch_size: int = 256, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled pre-classifier features (N, D) and labels (N,) of a dataset, on the CPU, in eval mode.

    ``data`` is whatever :func:`cvlab.train.evaluate` takes: an ImageDataset, a TensorLoader, a
    DataLoader or an (images, labels) pair; raw images go through ``model.preprocess`` as evaluate's do.
    The model returns to its previous mode afterwards.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    preprocess = getattr(model, "preprocess", None)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for x, y in _as_loader(data, batch_size=batch_size, train=False, device=dev, preprocess=preprocess):
            feats.append(pooled_features(model, _to_device(x, dev, preprocess)).float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def linear_probe(features: torch.Tensor, labels: torch.Tensor, *, C: float = 1.0, max_iter: int = 1000):
    """A linear classifier on frozen features: scikit-learn's StandardScaler + LogisticRegression, fitted.

    Use ``probe.score(test_features, test_labels)`` for accuracy, ``probe.predict`` for classes.
    ``C`` is the inverse strength of the L2 penalty: smaller C, simpler classifier (good for few images).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels; they must match")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    # One BLAS thread: on a busy 2-core machine, OpenBLAS's threads made this small fit 20-50x slower.
    with threadpool_limits(1, user_api="blas"):
        return probe.fit(_numpy(features), _numpy(labels))


def _numpy(t):
    return t.numpy() if isinstance(t, torch.Tensor) else t
