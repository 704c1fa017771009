"""Checkpoints: the whole training state in one file, written so that a crash never corrupts it.

A checkpoint holds the model, optimizer, scheduler and gradient-scaler states, the position in
training (epoch, batch within it, optimizer step), the history, the random-number generators'
states (Python, NumPy, torch, CUDA), and the state of callbacks that have one. ``fit(...,
resume=True)`` continues from it exactly: a run killed mid-epoch and resumed ends with the same
weights, bit for bit, as one never interrupted (on the CPU, with deterministic settings).
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def save_checkpoint(path: str | Path, state) -> Path:  # state: a cvlab.train.TrainState
    """Write the whole training state to ``path`` atomically: a temporary file beside it, fsync, rename."""
    losses = state.check_loss()  # never save a state that has seen a NaN loss
    ckpt = {
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "scaler": state.scaler.state_dict(),
        "epochs": state.epochs, "epoch": state.epoch, "batch": state.batch, "step": state.step, "lr": state.lr,
        "elapsed": state.seconds(), "history": state.history,
        "rng": rng_state(), "epoch_rng": state.epoch_rng,
        "epoch_sums": {"losses": losses, "sizes": state.sizes[:len(losses)], "correct": int(state.correct)},
        "callbacks": {f"{i}:{type(cb).__name__}": cb.state_dict()
                      for i, cb in enumerate(state.callbacks) if hasattr(cb, "state_dict")},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself survive a power cut
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, target) -> dict:
    """Restore a checkpoint into a model (weights only) or a TrainState (everything); returns the checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(target, nn.Module):
        target.load_state_dict(ckpt["model"])
        return ckpt
    state = target
    if ckpt["epochs"] != state.epochs:
        raise ValueError(f"{path} is from a run of {ckpt['epochs']} epochs, and its learning-rate schedule was planned "
                         f"for that many; resume it with epochs={ckpt['epochs']}, or start a new run from its weights "
                         f"(load_checkpoint(path, model)) to train for {state.epochs}.")
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    if state.scheduler is not None and ckpt["scheduler"] is not None:
        state.scheduler.load_state_dict(ckpt["scheduler"])
    state.scaler.load_state_dict(ckpt["scaler"])
    state.epoch, state.batch, state.step, state.lr = ckpt["epoch"], ckpt["batch"], ckpt["step"], ckpt["lr"]
    state.elapsed, state.history, state.epoch_rng = ckpt["elapsed"], ckpt["history"], ckpt["epoch_rng"]
    if state.batch:  # resumed mid-epoch: the epoch's sums so far
        sums = ckpt["epoch_sums"]
        state.losses = torch.zeros(state.batches_per_epoch, device=state.device)
        state.losses[:len(sums["losses"])] = torch.tensor(sums["losses"])
        state.host_losses, state.sizes = list(sums["losses"]), list(sums["sizes"])
        state.correct = torch.tensor(sums["correct"], device=state.device)
    for i, cb in enumerate(state.callbacks):
        key = f"{i}:{type(cb).__name__}"
        if hasattr(cb, "load_state_dict") and key in ckpt["callbacks"]:
            cb.load_state_dict(ckpt["callbacks"][key])
    set_rng_state(ckpt["rng"])
    return ckpt


def rng_state() -> dict:
    """The states of every random-number generator a training run draws from."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(rng: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(rng["python"])
    name, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
