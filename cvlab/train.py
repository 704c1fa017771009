"""Training: one fit loop, evaluation, prediction, checkpoints, and multi-GPU through torchrun.

    history = fit(model, train, test, epochs=10, lr=0.1, schedule="onecycle",
                  callbacks=[Checkpoint("runs/x")], resume=True)
    result = evaluate(model, test)   # loss, accuracy, predictions, probabilities, labels

``train`` and ``val`` may be an :class:`~cvlab.data.ImageDataset` (fit puts it in a
:class:`~cvlab.data.TensorLoader` on the device), a ``TensorLoader`` or a torch ``DataLoader``.
Started by ``torchrun``, fit trains with DistributedDataParallel: each process trains on its share
of the data, and only rank 0 prints and writes checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from . import config
from .callbacks import Checkpoint, EarlyStopping, Progress, StopTraining
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import ImageDataset, TensorLoader
from .preprocess import Preprocess
from .tasks import Classification, Task, logits_of as _logits
from .schedules import make_optimizer, make_scheduler

__all__ = ["fit", "evaluate", "predict", "TrainState", "NonFiniteLossError", "StopTraining", "EarlyStopping",
           "Checkpoint", "Progress", "save_checkpoint", "load_checkpoint", "setup_distributed"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _new_history(task: Task | None = None) -> dict:
    """Per-epoch lists: epoch, train_loss, train_<metric>..., val_loss, val_<metric>..., lr, time."""
    task = task or Classification()
    return {"epoch": [], "train_loss": [], **{f"train_{m}": [] for m in task.train_metrics}, "val_loss": [],
            **{f"val_{m}": [] for m in task.metrics}, "lr": [], "time": []}


@dataclass(eq=False)
class TrainState:
    """What callbacks read, and what a checkpoint saves."""
    model: nn.Module                 # the bare model, not its DDP or compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    scaler: torch.amp.GradScaler
    callbacks: list
    epochs: int
    batches_per_epoch: int
    accumulate: int = 1
    device: torch.device = torch.device("cpu")
    rank: int = 0
    world_size: int = 1
    history: dict = field(default_factory=_new_history)
    epoch: int = 0                   # epochs finished
    batch: int = 0                   # batches finished in the current epoch
    step: int = 0                    # optimizer steps taken in all
    lr: float = 0.0                  # the learning rate of the last step
    elapsed: float = 0.0             # seconds trained before `started` (a resumed run keeps counting)
    started: float = field(default_factory=time.perf_counter)
    epoch_rng: dict | None = None    # RNG states at the start of this epoch, to replay its shuffle on resume
    # This epoch's running sums. Per-batch losses stay on the device, so steps do not wait for
    # the device, until check_loss() reads them: every 25 steps, for the progress bar, before a checkpoint.
    meta: dict = field(default_factory=dict)  # what rebuilds the model: its spec, preprocessing, classes, data sizes
    losses: torch.Tensor | None = None   # (batches_per_epoch,)
    sizes: list = field(default_factory=list)
    host_losses: list = field(default_factory=list)
    sums: dict = field(default_factory=dict)  # the task's running metric sums, device tensors (e.g. correct answers)

    def seconds(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.elapsed + time.perf_counter() - self.started

    def check_loss(self) -> list[float]:
        """This epoch's per-batch losses so far, on the host; raises NonFiniteLossError at the first NaN or inf."""
        new = self.losses[len(self.host_losses):self.batch].tolist() if self.losses is not None else []
        for k, value in enumerate(new):
            if not math.isfinite(value):
                i = len(self.host_losses) + k  # the batch, within this epoch
                step = self.step - math.ceil(self.batch / self.accumulate) + i // self.accumulate + 1
                lr = self.optimizer.param_groups[0]["lr"]
                raise NonFiniteLossError(
                    f"the loss is {value} at step {step} (epoch {self.epoch + 1}, batch {i + 1}); training stopped. "
                    f"Lower the learning rate (it is {lr:.3g}; try {lr / 10:.3g}) or clip gradients (grad_clip=1.0). "
                    "The last checkpoint, if one was written, is from before this step and intact.")
        self.host_losses += new
        return self.host_losses

    def running_loss(self) -> float:
        """The mean training loss of this epoch so far (reads the device)."""
        losses = self.check_loss()
        n = sum(self.sizes[:len(losses)])
        return sum(loss * b for loss, b in zip(losses, self.sizes)) / max(n, 1)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def fit(model: nn.Module, train, val=None, *, epochs: int, task: Task | None = None, optimizer="nesterov",
        lr: float | None = None, momentum: float | None = None, weight_decay: float | None = None,
        schedule="warmup_cosine", warmup: float = 0.1, label_smoothing: float = 0.0, loss_fn=None,
        batch_transform=None, grad_clip: float | None = None, accumulate: int = 1, batch_size: int | None = None,
        num_classes: int | None = None, device=None, amp=None, channels_last: bool = False, compile: bool = False,
        tta: bool | str = False, callbacks=(), progress: bool = True, resume: bool | str | Path = False,
        seed: int | None = None) -> dict:
    """Train ``model`` on ``train`` for ``epochs``, evaluating on ``val`` after each; returns the history.

    The history is a dict of per-epoch lists: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc``, ``lr`` and ``time`` (seconds since the start, evaluation included); another ``task``
    records its own metrics (``val_map``, ``val_psnr``, ...).

    - ``task`` (:mod:`cvlab.tasks`): what is learnt, its loss and metrics; default classification, whose
      cross-entropy takes ``label_smoothing``, or ``loss_fn(outputs, targets)`` instead (not both);
      targets may be class indices (B,) or probabilities (B, C). ``batch_transform(x, y) -> (x, targets)``
      runs on each training batch, under autocast: that is where Mixup/CutMix plugs in.
    - ``optimizer``: "sgd", "nesterov", "adam", "adamw" (with ``lr`` default 0.05, ``momentum`` 0.9,
      ``weight_decay`` 5e-4, which spares biases and norm parameters) or a ``torch.optim.Optimizer``
      (which has its own: passing them too is an error). ``schedule``:
      a name from :data:`cvlab.schedules.SCHEDULES`, ``None``, or a torch scheduler (see
      :func:`cvlab.schedules.make_scheduler`); ``warmup`` is the fraction of steps spent warming up.
    - ``accumulate`` batches are summed into each optimizer step; ``grad_clip`` caps the gradient norm.
    - ``amp``: None (bf16/fp16 on GPUs, off on CPU), True, False, "bf16" or "fp16" (with a gradient scaler).
      ``channels_last`` and ``compile`` (``torch.compile``) can make convolutions faster; ``tta``
      evaluates ``val`` with test-time augmentation (see :func:`evaluate`).
    - ``callbacks``: objects with any of the methods listed in :mod:`cvlab.callbacks`; ``progress``
      adds a :class:`Progress` display unless you pass one. ``resume=True`` continues from the
      :class:`Checkpoint` callback's ``last.pt`` if it exists (a path resumes from that file).
    - ``batch_size`` (default 128) and ``seed`` (default 0) are for data fit wraps in a TensorLoader (a
      dataset or an (images, labels) pair); a loader has its own, so passing them with one is an error.

    fit records how the training images were prepared (a :class:`~cvlab.preprocess.Preprocess`) as
    ``model.preprocess``, so ``evaluate``/``predict`` on raw images feed the model as it was trained;
    checkpoints carry it with the model's registry name and the class names (``cvlab.load`` rebuilds it).
    """
    task = _task(task, loss_fn, label_smoothing)
    lr, momentum, weight_decay = _optimizer_args(optimizer, lr, momentum, weight_decay)
    batch_size, seed = _data_args(train, batch_size, seed)
    rank, world_size, dev = setup_distributed(device)
    model.to(dev, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    loader = _as_loader(train, batch_size=batch_size, train=True, device=dev, seed=seed,
                        channels_last=channels_last, rank=rank, world_size=world_size)
    val_loader = _as_loader(val, batch_size=max(getattr(loader, "batch_size", None) or batch_size, 512), train=False,
                            device=dev, preprocess=getattr(loader, "preprocess", None),
                            channels_last=channels_last) if val is not None else None
    _check_tta(tta, task)  # before training, not after the first epoch
    num_classes = _check_labels(loader, num_classes) if task.classifies else None
    # Labels the loader does not hold in one place (a DataLoader) are checked batch by batch on the host.
    check_each = task.classifies and _all_labels(loader) is None
    batches = len(loader)
    if batches == 0:
        raise ValueError(f"the training data yields no batches ({len(getattr(loader, 'labels', []))} images, batch size "
                         f"{getattr(loader, 'batch_size', '?')}, drop_last); use a smaller batch size or more data.")
    steps_per_epoch = math.ceil(batches / accumulate)
    opt = make_optimizer(optimizer, model, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         fused=dev.type == "cuda")  # one kernel for the whole update on GPUs
    scheduler, interval = make_scheduler(schedule, opt, epochs=epochs, steps_per_epoch=steps_per_epoch, warmup=warmup)
    amp_dtype = _amp_dtype(amp, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    task.to(dev)  # a loss's class weights, a focal loss's alpha, a teacher: on the device with the model
    if isinstance(batch_transform, nn.Module):
        batch_transform.to(dev)
    preprocess = _preprocess_of(loader, channels_last)
    model.preprocess = preprocess
    model.classes = list(_classes_of(loader) or []) or getattr(model, "classes", None)  # as cvlab.load gives them back
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None) \
        if world_size > 1 else None
    net = torch.compile(ddp or model) if compile else (ddp or model)
    callbacks = list(callbacks) + ([Progress()] if progress and not any(isinstance(c, Progress) for c in callbacks) else [])
    state = TrainState(model, opt, scheduler, scaler, callbacks, epochs, batches, accumulate=accumulate,
                       device=dev, rank=rank, world_size=world_size, history=_new_history(task),
                       meta=_meta(model, loader, preprocess, num_classes, task))
    path = _resume_path(resume, callbacks) if resume else None
    if path is not None:
        load_checkpoint(path, state)
    autocast = torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    _call(callbacks, "on_fit_start", state)
    try:
        while state.epoch < epochs:
            model.train()
            _call(callbacks, "on_epoch_start", state)
            if state.batch == 0:
                state.losses, state.sizes, state.host_losses = torch.zeros(batches, device=dev), [], []
                state.sums = {m: torch.zeros((), device=dev) for m in task.train_metrics}
            for i, (x, y) in enumerate(_epoch_batches(loader, state), start=state.batch):
                if check_each and num_classes is not None and y.device.type == "cpu":
                    _check_batch_labels(y, num_classes, state.epoch, i)  # on the host: no device sync
                x, y = _to_device(x, dev, preprocess), y.to(dev, non_blocking=True)
                if state.step == 0 and i == 0 and task.classifies:  # before the first step: clear errors, not CUDA asserts
                    _check_batch(model, x, y, num_classes)
                targets = y
                # The last group of an epoch may hold fewer than `accumulate` batches.
                group_start = i - i % accumulate
                group_size = min(accumulate, batches - group_start)
                last_in_group = i + 1 == group_start + group_size
                # DDP: average gradients across processes only on a group's last batch.
                sync = ddp.no_sync() if ddp is not None and not last_in_group else nullcontext()
                with sync:
                    with autocast:  # a teacher or Mixup in batch_transform runs in the same precision
                        if batch_transform is not None:
                            x, targets = batch_transform(x, y)
                        x, targets = task.prepare(x, targets, True)
                        out = net(x)
                        loss = task.loss(out, targets)
                    scaler.scale(loss / group_size).backward()
                state.losses[i] = loss.detach()
                state.sizes.append(len(y))
                for name, value in task.train_sums(out, targets).items():
                    state.sums[name] += value
                if not last_in_group:
                    continue
                scaler.unscale_(opt)  # gradients at their true scale for clipping and callbacks
                _call(callbacks, "on_before_step", state)
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                state.lr = opt.param_groups[0]["lr"]
                if scheduler is not None and interval == "step":
                    scheduler.step()
                state.step, state.batch = state.step + 1, i + 1
                if state.step % 25 == 0:  # reading the loss waits for the device: not every step
                    state.check_loss()
                _call(callbacks, "on_step_end", state)

            _end_epoch(state, net, val_loader, task, scheduler, interval, amp_dtype, tta)
            _call(callbacks, "on_epoch_end", state)
    except StopTraining:
        pass
    _call(callbacks, "on_fit_end", state)
    return state.history


def _end_epoch(state: TrainState, net, val_loader, task: Task, scheduler, interval: str, amp_dtype,
               tta: bool | str) -> None:
    """Record the finished epoch's metrics in the history and step per-epoch schedules."""
    losses = state.check_loss()
    names = list(state.sums)
    sums = torch.tensor([sum(l * b for l, b in zip(losses, state.sizes)), *(float(state.sums[m]) for m in names),
                         sum(state.sizes)], dtype=torch.float64)
    if state.world_size > 1:  # every rank trained on its own share: add them up
        sums = sums.to(state.losses.device)
        dist.all_reduce(sums)
        for b in state.model.buffers():  # batch-norm statistics drift apart per rank; use rank 0's everywhere
            dist.broadcast(b, 0)
    loss_sum, *metric_sums, seen = sums.tolist()
    h = state.history
    h["epoch"].append(state.epoch + 1)
    h["train_loss"].append(loss_sum / seen)
    for name, total in zip(names, metric_sums):
        h[f"train_{name}"].append(total / seen)
    h["lr"].append(state.lr)
    if val_loader is not None:
        # DDP: every rank evaluates all of val with the same weights and buffers, so all agree on
        # metrics (and on early stopping) with no further communication.
        result = evaluate(state.model if state.world_size > 1 else net, val_loader, task=task, amp=amp_dtype or False,
                          tta=tta)
        h["val_loss"].append(result["loss"])
        for name, key in task.metrics.items():
            h[f"val_{name}"].append(result[key])
    if scheduler is not None and interval == "epoch":
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(h["val_loss"][-1] if val_loader is not None else h["train_loss"][-1])
        else:
            scheduler.step()
    h["time"].append(state.seconds())
    state.epoch, state.batch = state.epoch + 1, 0
    state.losses, state.sizes, state.host_losses = None, [], []


def _call(callbacks: list, name: str, state: TrainState) -> None:
    """Call ``name`` on every callback that has it; a StopTraining is raised after all have run."""
    stop = None
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            try:
                fn(state)
            except StopTraining as e:
                stop = stop or e
    if stop is not None:
        raise stop


def _epoch_batches(loader, state: TrainState):
    """This epoch's batches, from where a resumed state left off."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(state.epoch)  # TensorLoader: shuffle and augmentation replay per epoch
    if isinstance(getattr(loader, "sampler", None), DistributedSampler):
        loader.sampler.set_epoch(state.epoch)
    if state.batch == 0:
        state.epoch_rng = rng_state()
        return iter(loader)
    # Mid-epoch resume: rewind the RNG to the epoch's start so a DataLoader draws the same
    # shuffle and augmentations, skip the batches already trained on, then continue from the
    # checkpoint's RNG.
    resumed = rng_state()
    set_rng_state(state.epoch_rng)
    batches = iter(loader)
    for _ in range(state.batch):
        next(batches)
    set_rng_state(resumed)
    return batches


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, data, *, task: Task | None = None, batch_size: int = 512, device=None, amp=None,
             tta: bool | str = False, preprocess: Preprocess | None = None) -> dict:
    """The task's loss and metrics on ``data``; for classification (the default): loss (cross-entropy),
    accuracy, and per-image predictions, probabilities and labels.

    Raw images (a dataset, uint8 tensors) go through ``preprocess``, by default the one ``fit`` or
    ``cvlab.load`` recorded as ``model.preprocess``; a loader's batches are used as it yields them.
    Test-time augmentation averages the logits of several views of each image: ``tta=True`` (or "flip")
    the image and its mirror; ``tta="shift"`` those and the image moved one pixel in each of four
    directions (``cvlab.ensemble.DEFAULT_TTA``, six views; the uncovered edge is filled with 0 in the
    network's input). The model is put in eval mode and returned to its previous mode afterwards.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    preprocess = preprocess or getattr(model, "preprocess", None)
    loader = _as_loader(data, batch_size=batch_size, train=False, device=dev, preprocess=preprocess)
    dtype = _amp_dtype(amp, dev)
    task = (task or Classification()).to(dev)
    _check_tta(tta, task)
    views = _tta_views(tta)
    was_training = model.training
    model.eval()
    outs, targets = [], []
    with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
        for x, y in loader:
            x, t = task.prepare(_to_device(x, dev, preprocess), y.to(dev), False)
            out = sum(_logits(model(view(x))).float() for view in views) / len(views)  # (B, C) for a classifier
            outs.append(out)
            targets.append(t)
    model.train(was_training)
    return task.evaluate(outs, targets)


def _check_tta(tta, task: Task) -> None:
    if tta and not getattr(task, "mirror_safe", False):
        raise ValueError(f"tta averages predictions over mirrored and shifted images, whose targets must not change; "
                         f"{type(task).__name__}'s do (or depend on the image itself). Use tta=False.")


def _tta_views(tta: bool | str) -> tuple:
    """``evaluate``'s ``tta`` -> the transforms of a batch whose logits it averages."""
    from .ensemble import DEFAULT_TTA, hflip, identity  # ensemble builds on this module
    views = {False: (identity,), True: (identity, hflip), "flip": (identity, hflip), "shift": DEFAULT_TTA}
    if not isinstance(tta, (bool, str)) or tta not in views:
        raise ValueError(f"tta must be False, True, 'flip' or 'shift'; got {tta!r}")
    return views[tta]


@torch.no_grad()
def predict(model: nn.Module, data, *, batch_size: int = 512, device=None, amp=None, tta: bool | str = False,
            preprocess: Preprocess | None = None) -> torch.Tensor:
    """Class probabilities (N, C) for a dataset, a loader or an image tensor (N, C, H, W); ``.argmax(1)`` gives classes.

    A uint8 image tensor goes through ``preprocess`` (default: ``model.preprocess``, else scaling to [0, 1]);
    a float tensor is taken as already prepared.
    """
    if isinstance(data, torch.Tensor):
        data = (data, torch.zeros(len(data), dtype=torch.long))  # no labels: the loss and accuracy are ignored
    return evaluate(model, data, batch_size=batch_size, device=device, amp=amp, tta=tta,
                    preprocess=preprocess)["probabilities"]


def _resume_path(resume, callbacks: list) -> Path | None:
    """The checkpoint to resume from, or None to start fresh (resume=True and no last.pt yet)."""
    if resume is True:
        found = [cb for cb in callbacks if isinstance(cb, Checkpoint)]
        if not found:
            raise ValueError("resume=True continues from the Checkpoint callback's last.pt, but there is no Checkpoint "
                             "callback: add callbacks=[Checkpoint(folder)], or pass resume='path/to/last.pt'.")
        return found[0].last if found[0].last.is_file() else None
    if not Path(resume).is_file():
        raise FileNotFoundError(f"resume={str(resume)!r}: no such checkpoint file")
    return Path(resume)


# ---------------------------------------------------------------------------------------------
# Devices, data and checks
# ---------------------------------------------------------------------------------------------

def setup_distributed(device=None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device) of this process; under torchrun, joins its process group first.

    CUDA processes use NCCL and the GPU numbered LOCAL_RANK; others use gloo (CPU).
    """
    dev = torch.device(device) if device is not None else config.device()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def _amp_dtype(amp, dev: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``dev``, or None for full precision."""
    if amp is False or (amp is None and dev.type == "cpu"):
        return None
    if amp in ("bf16", "bfloat16", torch.bfloat16):
        return torch.bfloat16
    if amp in ("fp16", "float16", torch.float16):
        return torch.float16
    if amp is True or amp is None:
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if dev.type == "mps" else torch.bfloat16
    raise ValueError(f"amp={amp!r} is not understood; use None (automatic), True, False, 'bf16' or 'fp16'")


def _as_loader(data, *, batch_size: int, train: bool, device: torch.device, seed: int = 0,
               channels_last: bool = False, rank: int = 0, world_size: int = 1, preprocess: Preprocess | None = None):
    """Batches of ``data``: a dataset goes into a TensorLoader on ``device``; loaders are used as given.

    ``preprocess`` (a val set gets the training data's; evaluate gets the model's) replaces the new
    TensorLoader's own, so raw images are scaled, normalized and resized as the model was trained.
    """
    if isinstance(data, tuple) and data[0].dtype != torch.uint8:  # float images, prepared by the caller
        return DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=train,
                          generator=torch.Generator().manual_seed(seed) if train else None)
    if isinstance(data, (ImageDataset, tuple)):
        loader = TensorLoader(data, batch_size=batch_size, shuffle=train, device=device, seed=seed,
                              channels_last=channels_last, rank=rank, world_size=world_size if train else 1)
        if preprocess is not None:
            loader.preprocess = dataclasses.replace(preprocess, channels_last=channels_last or preprocess.channels_last)
        return loader
    if isinstance(data, TensorLoader):
        return data.shard(rank, world_size) if train and data.world_size != world_size else data
    if train and world_size > 1 and not isinstance(getattr(data, "sampler", None), DistributedSampler):
        raise ValueError("under torchrun each process must train on its own share of the data: build the DataLoader "
                         "with sampler=DistributedSampler(dataset), or pass the dataset itself and fit shards it.")
    if hasattr(data, "__iter__") and hasattr(data, "__len__"):
        return data
    raise TypeError(f"cannot train or evaluate on a {type(data).__name__}; pass an ImageDataset, a TensorLoader, "
                    "a DataLoader or an (images, labels) pair of tensors")


def _all_labels(loader) -> torch.Tensor | None:
    """Every label the loader will yield, where the data keeps them in one place (else None)."""
    dataset = getattr(loader, "dataset", None)
    for owner in (loader, dataset, getattr(dataset, "dataset", None)):
        for name in ("labels", "targets"):
            labels = getattr(owner, name, None)
            if labels is not None and not callable(labels):
                return torch.as_tensor(labels)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) > 1:
        return dataset.tensors[1]
    return None


def _label_error(labels: torch.Tensor, num_classes: int, where: str = "") -> ValueError:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    return ValueError(f"{where}labels must lie in [0, {num_classes}) for {num_classes} classes, but {len(bad)} do not "
                      f"(min {labels.min().item()}, max {labels.max().item()}). Class indices start at 0: fix the "
                      f"labels, or pass num_classes= with the true number of classes and build the model with as many outputs.")


def _classes_of(loader) -> list | None:
    """The class names the loader (or its dataset) carries, if any."""
    return getattr(loader, "classes", None) or getattr(getattr(loader, "dataset", None), "classes", None)


def _check_labels(loader, num_classes: int | None) -> int | None:
    """The number of classes (given, else from the data's class names); all labels must be in range."""
    classes = _classes_of(loader)
    if num_classes is None and classes:
        num_classes = len(classes)
    labels = _all_labels(loader)
    if num_classes is not None and labels is not None and len(labels) \
            and (labels.min() < 0 or labels.max() >= num_classes):
        raise _label_error(labels, num_classes)
    return num_classes


@torch.no_grad()
def _check_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int | None) -> None:
    """The first batch: the model's output width must equal the number of classes, and labels fit it."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # one image in eval mode: no batch-norm statistics or dropout draws are touched
    width = _logits(model(x[:1])).shape[-1]
    for m, training in modes:  # as they were (a callback may have switched dropout off)
        m.training = training
    n = num_classes or width
    if width != n:
        raise ValueError(f"the model outputs {width} values per image but the data has {n} classes. Build the "
                         f"model with num_classes={n} (e.g. cvlab.models.create(name, num_classes={n}, ...)) "
                         f"or replace its last layer with one of {n} outputs.")
    if y.dtype == torch.long and (y.min() < 0 or y.max() >= n):
        raise _label_error(y.cpu(), n)


def _task(task: Task | None, loss_fn, label_smoothing: float) -> Task:
    """The task fit trains: the one given, else classification with ``loss_fn`` or ``label_smoothing``."""
    if task is None:
        return Classification(label_smoothing=label_smoothing, loss_fn=loss_fn)
    if loss_fn is not None or label_smoothing:
        raise ValueError(f"loss_fn and label_smoothing describe the default classification task; with "
                         f"task={type(task).__name__}(...) give them to the task instead.")
    return task


def _optimizer_args(optimizer, lr, momentum, weight_decay) -> tuple:
    """Defaults for a named optimizer; an optimizer object already has its own, so none may be given."""
    if isinstance(optimizer, torch.optim.Optimizer):
        given = [name for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} would be ignored: the {type(optimizer).__name__} you passed has its "
                             f"own. Set them when you build it (e.g. torch.optim.AdamW(params, lr=..., weight_decay=...)), "
                             f"or pass optimizer by name.")
        return None, None, None
    return (0.05 if lr is None else lr, 0.9 if momentum is None else momentum,
            5e-4 if weight_decay is None else weight_decay)


def _data_args(train, batch_size, seed) -> tuple:
    """Defaults for data fit wraps in a TensorLoader; a loader has its own batch size and seed."""
    if isinstance(train, (ImageDataset, tuple)):
        return 128 if batch_size is None else batch_size, 0 if seed is None else seed
    given = [name for name, v in (("batch_size", batch_size), ("seed", seed)) if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)} would be ignored: the {type(train).__name__} you passed batches and "
                         f"shuffles the data itself. Set them on the loader (TensorLoader(data, batch_size=..., "
                         f"seed=...)), or pass the dataset and let fit build the loader.")
    return 128, 0


def _to_device(x: torch.Tensor, dev: torch.device, preprocess: Preprocess | None = None) -> torch.Tensor:
    """A batch on ``dev``; raw uint8 images (a DataLoader without a float transform) go through ``preprocess``."""
    x = x.to(dev, non_blocking=True)
    if x.dtype == torch.uint8:
        x = (preprocess or Preprocess())(x)
    elif preprocess is not None and preprocess.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _preprocess_of(loader, channels_last: bool) -> Preprocess:
    """How the training batches were prepared: the TensorLoader's preprocessing, else scaling only."""
    pre = getattr(loader, "preprocess", None) or Preprocess()
    return dataclasses.replace(pre, channels_last=channels_last or pre.channels_last)


def _meta(model: nn.Module, loader, preprocess: Preprocess, num_classes: int | None, task: Task) -> dict:
    """What a checkpoint needs to rebuild and feed the model, and what a resumed run must match."""
    classes, labels = _classes_of(loader), _all_labels(loader)
    return {"model": getattr(model, "cvlab_spec", None), "preprocess": preprocess.to_dict(),
            "classes": list(classes) if classes else None, "num_classes": num_classes, "task": type(task).__name__,
            "batch_size": getattr(loader, "batch_size", None),
            "dataset_size": len(labels) if labels is not None else None}


def _check_batch_labels(y: torch.Tensor, num_classes: int, epoch: int, batch: int) -> None:
    """A host-side label batch must fit the classes (a bad label deep in a DataLoader, caught before the device)."""
    if y.dtype == torch.long and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise _label_error(y, num_classes, where=f"batch {batch + 1} of epoch {epoch + 1}: ")


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device
