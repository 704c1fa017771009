"""Optimizers and learning-rate schedules by name, for :func:`cvlab.train.fit`.

Every schedule is a multiplier of the base learning rate ``lr``. Most change it after every
optimizer step ("step" interval); the classic step decay changes it once per epoch ("epoch"
interval), which is how torch's ``StepLR`` is meant to be stepped. With ``t`` the number of
optimizer steps taken so far, ``T`` their total and ``W = warmup * T``:

    constant        1
    step            gamma ** (epoch // step_size)          (per epoch; step_size = epochs // 3)
    cosine          (1 + cos(pi * t / T)) / 2
    linear          1 - t / T
    warmup_cosine   (t + 1) / W while t < W, then (1 + cos(pi * (t - W) / (T - W))) / 2
    onecycle        torch's OneCycleLR: cosine up from lr/25 to lr over W steps, then down to lr/25e4
    exponential     0.01 ** (t / T): the same factor every step, down to 1% of lr at the end
    plateau         torch's ReduceLROnPlateau (per epoch): x0.1 when the validation loss (the training loss
                    without validation data) has not improved for 2 epochs; it needs no epoch count
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim import lr_scheduler

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_scheduler", "lr_factor", "decay_groups"]

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "linear", "warmup_cosine", "onecycle", "exponential", "plateau")


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: weight matrices and kernels decay; biases and norm scales/shifts (1-D) do not.

    Decaying a batch-norm scale or a bias only shrinks it toward zero without regularising what the
    network computes (a conv followed by batch norm is scale-invariant), so timm and nanoGPT leave them out.
    """
    params = list(model.parameters())  # frozen ones too: a callback may unfreeze them later
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def make_optimizer(optimizer: str | torch.optim.Optimizer, params, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, fused: bool = False) -> torch.optim.Optimizer:
    """An optimizer by name ("sgd", "nesterov" = SGD with Nesterov momentum, "adam", "adamw"), or the one given.

    ``params`` is a model (then :func:`decay_groups` exempts biases and norm parameters from weight
    decay), parameters or parameter groups. ``fused=True`` uses torch's one-kernel update (CUDA).
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(params, torch.nn.Module):
        params = decay_groups(params, weight_decay)
    name = str(optimizer).lower()
    extra = {"fused": True} if fused else {}
    if name in ("sgd", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == "nesterov", weight_decay=weight_decay,
                               **extra)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
    raise ValueError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)} or pass a torch.optim.Optimizer")


def lr_factor(name: str, t: int, total: int, *, warmup: float = 0.0) -> float:
    """The multiplier of the base learning rate after ``t`` of ``total`` optimizer steps (per-step schedules)."""
    if name == "constant":
        return 1.0
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t / total))
    if name == "linear":
        return 1.0 - t / total
    if name == "exponential":
        return 0.01 ** (t / total)
    if name == "warmup_cosine":
        w = max(1, round(warmup * total))
        if t < w:
            return (t + 1) / w
        return 0.5 * (1 + math.cos(math.pi * (t - w) / max(1, total - w)))
    raise ValueError(f"{name!r} is not a per-step schedule; per-step schedules: constant, cosine, linear, warmup_cosine, exponential")


def make_scheduler(schedule, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                   warmup: float = 0.1) -> tuple[lr_scheduler.LRScheduler | None, str]:
    """The scheduler and how often to step it: ``"step"`` (after each optimizer step) or ``"epoch"``.

    ``schedule`` is a name from :data:`SCHEDULES`, ``None`` (constant), a torch scheduler already
    built on ``optimizer``, or a function ``optimizer -> scheduler``. A torch scheduler you pass is
    stepped per epoch, except ``OneCycleLR`` and ``CyclicLR``, which are defined per step.
    """
    total = epochs * steps_per_epoch
    if schedule is None or schedule == "constant":
        return None, "step"
    if isinstance(schedule, str):
        name = schedule.lower()
        if name == "step":
            return lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1), "epoch"
        if name == "plateau":  # fit steps it with the epoch's validation loss
            return lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=1), "epoch"
        if name == "onecycle":
            max_lr = [g["lr"] for g in optimizer.param_groups]
            cycle_momentum = "momentum" in optimizer.defaults and optimizer.defaults["momentum"] > 0 or "betas" in optimizer.defaults
            return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=warmup,
                                           cycle_momentum=cycle_momentum), "step"
        if name in SCHEDULES:
            factor: Callable[[int], float] = lambda t: lr_factor(name, min(t, total), total, warmup=warmup)  # noqa: E731
            return lr_scheduler.LambdaLR(optimizer, factor), "step"
        raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}, None, or a torch LR scheduler")
    if callable(schedule) and not isinstance(schedule, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
        schedule = schedule(optimizer)
    if schedule.optimizer is not optimizer:
        raise ValueError("the scheduler you passed was built on a different optimizer than the one fit uses; "
                         "pass that optimizer too (optimizer=opt), or pass a function optimizer -> scheduler.")
    per_step = isinstance(schedule, (lr_scheduler.OneCycleLR, lr_scheduler.CyclicLR))
    return schedule, "step" if per_step else "epoch"
