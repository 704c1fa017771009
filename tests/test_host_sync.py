"""fit's training step never makes the host wait for the device: checked on CPU, without a GPU.

On a GPU, ``loss.item()``, ``if x.any():``, ``x[mask]``, ``x.cpu()`` or a blocking copy of a host
tensor to the GPU make Python wait until the GPU has run everything queued so far, and the GPU then
idles while Python prepares the next step. :class:`SyncCounter` counts such calls.

It is a ``TorchFunctionMode``: it sees every torch call made from Python. A ``TorchDispatchMode``
would not do (checked on torch 2.14): ``tolist``, ``numpy`` and a ``.cpu()`` with nothing to copy
never reach the dispatcher, and on CPU it also sees reads that only CPU kernels make (``F.one_hot``
reads the labels' min and max on CPU, not on CUDA).

On CPU every tensor is a host tensor, so the counter models a GPU run: fit trains on ``DEVICE``
(``cpu:0``, the stand-in for ``cuda:0``: a device object keeps its index, tensors drop it), and the
counter remembers the tensors it saw made on the host (by a factory without ``device=DEVICE``, by
``.cpu()``, or from host tensors only). Every other tensor lives on the device, including those made
before the counter started (parameters, the loader's images).
"""
from __future__ import annotations

import collections
import os
import traceback
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

import cvlab
from cvlab.augment import MixUpCutMix
from cvlab.data import TensorLoader
from cvlab.models import create
from cvlab.tasks import Contrastive
from cvlab.train import fit

DEVICE = torch.device("cpu", 0)  # stands in for cuda:0
STEPS = 50                       # 400 images in batches of 8
BUDGET = STEPS // 25             # at most one sync per 25 steps (fit reads the losses every 25 steps)

T = torch.Tensor
# Calls that hand a tensor's values to Python.
READS = {T.item, T.tolist, T.numpy, T.__array__, T.__bool__, T.__int__, T.__float__, T.__index__, T.__complex__,
         T.__format__, T.__repr__, torch.is_nonzero, T.is_nonzero, torch.equal, T.equal, torch.allclose, T.allclose}
# Ops whose output size depends on the values: the host must read it before it can allocate the output.
DATA_SIZED = {torch.nonzero, T.nonzero, torch.argwhere, T.argwhere, torch.masked_select, T.masked_select,
              torch.unique, T.unique, torch.unique_consecutive, T.unique_consecutive, torch.bincount, T.bincount}
INDEXING = {T.__getitem__, T.__setitem__, T.index_put_, T.index_put, torch.index_put}
FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray}  # copy Python or host data into a new tensor
PACKAGE = Path(cvlab.__file__).parent
TORCH = Path(torch.__file__).parent


class SyncCounter(TorchFunctionMode):
    """Records, per training step, each torch call that would make the host wait for the device.

    Enter it around ``fit`` and pass it in ``callbacks``: its hooks only mark where steps end,
    so they make no torch calls of their own. Calls before an epoch's first batch count towards
    that epoch's first step; calls after its last step (evaluation, metrics) are dropped.
    """

    def __init__(self):
        super().__init__()
        self.steps: list[list[str]] = []   # per step: one line per sync, what and where
        self._step: list[str] | None = None  # the step being recorded; None between epochs
        self._host: dict[int, weakref.ref] = {}  # id -> tensor, for the tensors known to live on the host

    def on_epoch_start(self, state) -> None:
        self._step = []

    def on_step_end(self, state) -> None:
        self.steps.append(self._step)
        self._step = []

    def on_epoch_end(self, state) -> None:
        self._step = None

    def culprits(self, steps: list[list[str]]) -> str:
        lines = collections.Counter(line for step in steps for line in step)
        return "\n".join(f"  {n:3d} x {line}" for line, n in lines.most_common())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__self__", None) is T.device:  # the `tensor.device` property
            return DEVICE if not self._on_host(args[0]) else func(*args, **kwargs)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        target, non_blocking = self._target(func, args, kwargs)
        if self._step is not None:
            why = self._why(func, args, kwargs, tensors, target, non_blocking)
            if why:
                name = getattr(func, "__qualname__", repr(func)).replace("TensorBase.", "Tensor.")
                self._step.append(f"{name}: {why} at {_where()}")
        out = func(*args, **kwargs)
        if target is not None and any(out is t for t in tensors) and (target == "host") != self._on_host(out):
            out = out.clone()  # a copy across devices is a new tensor, even where CPU needs no copy
        host = target == "host" if target is not None else all(self._on_host(t) for t in tensors)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and host and not any(t is u for u in tensors):
                self._host[id(t)] = weakref.ref(t, lambda _, key=id(t): self._host.pop(key, None))
        return out

    def _on_host(self, t: torch.Tensor) -> bool:
        ref = self._host.get(id(t))
        return ref is not None and ref() is t

    def _target(self, func, args, kwargs) -> tuple[str | None, bool]:
        """Where the call puts its result ("host", "device", or None: where its inputs are), and non_blocking."""
        if func in (T.cpu, T.numpy):
            return "host", False
        if func is T.to:
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.get("other"))
            if other is not None:
                return ("host" if self._on_host(other) else "device"), bool(kwargs.get("non_blocking"))
            device, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
        else:
            device, non_blocking = kwargs.get("device"), False
        if device is None:
            return None, False
        return ("device" if torch.device(device) == DEVICE else "host"), non_blocking

    def _why(self, func, args, kwargs, tensors, target, non_blocking) -> str | None:
        """Why the call would make the host wait for the device, or None."""
        on_device = [t for t in tensors if not self._on_host(t)]
        if func in READS and on_device:
            return "reads a device tensor"
        if func in (T.cpu, T.to) and target == "host" and on_device:
            return "copies a device tensor to the host"
        if func in (T.copy_, T.__setitem__) and self._on_host(args[0]) and on_device:
            return "copies a device tensor into a host tensor"
        # Without non_blocking, a copy from host memory waits for the device (cudaStreamSynchronize).
        if target == "device" and not non_blocking and (
                (func is T.to and self._on_host(args[0]))
                or (func in FROM_DATA and not (isinstance(args[0], torch.Tensor) and not self._on_host(args[0])))):
            return "copies host data to the device without non_blocking=True"
        if not on_device:
            return None
        if func in DATA_SIZED:
            return "its output size depends on the values"
        if func in INDEXING and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in tree_leaves(args[1])):
            return "boolean-mask indexing (its size depends on the mask)"
        if func is torch.where and len(args) + len(kwargs) == 1:
            return "torch.where(condition) is nonzero"
        if func is F.one_hot and (args[1] if len(args) > 1 else kwargs.get("num_classes", -1)) == -1:
            return "one_hot without num_classes reads the largest label"
        if func in (torch.repeat_interleave, T.repeat_interleave) and kwargs.get("output_size") is None and (
                len(args) == 1 or isinstance(args[1] if len(args) > 1 else kwargs.get("repeats"), torch.Tensor)):
            return "repeat_interleave without output_size reads the repeats"
        return None


def _where() -> str:
    """The caller outside torch, then the cvlab frames around it, innermost first."""
    frames = [f for f in traceback.extract_stack()[:-2] if not f.filename.startswith(str(TORCH))]
    ours = [f for f in frames[:-1] if f.filename.startswith(str(PACKAGE) + os.sep)] + frames[-1:]
    return " <- ".join(f"{os.path.relpath(f.filename, PACKAGE.parent)}:{f.lineno} ({f.name})" for f in ours[::-1][:3])


def _train(counter: SyncCounter, callbacks=(), **kwargs) -> SyncCounter:
    """50 steps of small_resnet on random 16x16 images through an augmenting TensorLoader, counted."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8 * STEPS, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (8 * STEPS,), generator=g)
    loader = TensorLoader((images, labels), batch_size=8, shuffle=True, flip=True, pad_crop=2, device=DEVICE)
    model = create("small_resnet", num_classes=10, in_chans=1)
    with counter:
        fit(model, loader, epochs=1, progress=False, device=DEVICE, callbacks=[counter, *callbacks], **kwargs)
    assert len(counter.steps) == STEPS
    return counter


@pytest.mark.parametrize("kwargs", [
    {},
    {"loss_fn": nn.CrossEntropyLoss(weight=torch.linspace(0.5, 1.5, 10, device=DEVICE))},
    {"loss_fn": nn.CrossEntropyLoss(weight=torch.linspace(0.5, 1.5, 10))},  # made on the host: fit moves it once
    {"batch_transform": MixUpCutMix(num_classes=10)},
    {"task": Contrastive()},  # two views drawn on the device, NT-Xent's partner indices made there
], ids=["default_loss", "weighted_loss", "host_weighted_loss", "mixup_cutmix", "contrastive"])
def test_training_step_does_not_sync(kwargs):
    counter = _train(SyncCounter(), **kwargs)
    later = counter.steps[1:]  # the first step checks the first batch, once
    syncs = sum(map(len, later))
    assert syncs <= BUDGET, (f"{syncs} host syncs in steps 2-{STEPS} (budget {BUDGET}, one per 25 steps):\n"
                             + counter.culprits(later))


class ReadsLoss:
    """A careless callback: reads the loss every step."""

    def on_before_step(self, state) -> None:
        state.losses[state.batch].item()


def test_counter_sees_a_sync_every_step():
    counter = _train(SyncCounter(), callbacks=[ReadsLoss()])
    reads = [line for step in counter.steps for line in step if line.startswith("Tensor.item")]
    assert len(reads) >= STEPS, counter.culprits(counter.steps)
    assert "test_host_sync.py" in reads[0]


@pytest.mark.parametrize("snippet, syncs", [
    ("d.sum().item()", True), ("d.tolist()", True), ("d.cpu()", True), ("d.to('cpu')", True),
    ("d.to(device='cpu')", True), ("bool(d[0])", True), ("int(d[0])", True), ("f'{d[0]:.2f}'", True),
    ("d[d > 1]", True), ("torch.nonzero(d)", True), ("torch.unique(d)", True), ("torch.where(d > 1)", True),
    ("torch.tensor([1.0]).to(DEVICE)", True), ("torch.tensor([1.0], device=DEVICE)", True),
    ("torch.zeros(2).copy_(d[:2])", True),
    ("d.to(DEVICE)", False), ("d.to(d.device)", False), ("torch.zeros(3, device=d.device) + d[:3]", False),
    ("torch.tensor([1.0]).to(DEVICE, non_blocking=True)", False), ("float(torch.rand(()))", False),
    ("torch.randperm(4)[torch.rand(4) > 0.5].tolist()", False), ("d[torch.arange(2, device=DEVICE)]", False),
    ("torch.where(d > 1, d, 0)", False), ("F.one_hot(d.long(), 10)", False),
])
def test_counter_tells_syncs_apart(snippet, syncs):
    counter = SyncCounter()
    with counter:
        d = torch.arange(4.0, device=DEVICE)
        counter.on_epoch_start(None)
        eval(snippet, {"torch": torch, "F": F, "DEVICE": DEVICE, "d": d})
        counter.on_step_end(None)
    assert bool(counter.steps[0]) == syncs, counter.culprits(counter.steps)
