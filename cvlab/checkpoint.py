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

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "load", "rng_state", "set_rng_state"]

FORMAT = 2  # 2: checkpoints carry "meta" (model spec, preprocessing, classes) and can rebuild their model


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
        "epoch_sums": {"losses": losses, "sizes": state.sizes[:len(losses)],
                       "sums": {name: float(v) for name, v in state.sums.items()}},
        "callbacks": {f"{i}:{type(cb).__name__}": cb.state_dict()
                      for i, cb in enumerate(state.callbacks) if hasattr(cb, "state_dict")},
        "meta": {**state.meta, "batches_per_epoch": state.batches_per_epoch, "format": FORMAT},
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


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint at ``path`` as a dict; a clear error for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a pickle from elsewhere, an empty file
        raise ValueError(f"{path} ({path.stat().st_size:,} bytes) cannot be read as a checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}). It may be truncated (a copy or download that "
                         "stopped early) or not a PyTorch file. cvlab writes checkpoints atomically, so the one it "
                         "wrote last is intact: copy it again, or resume from the other file (best.pt / last.pt), "
                         "or delete this one to start afresh.") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epochs" not in ckpt:
        keys = ", ".join(list(ckpt)[:5]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a cvlab checkpoint (it holds {keys}...). If it is a model's state_dict, load "
                         "it with model.load_state_dict(torch.load(path)); cvlab checkpoints are written by "
                         "cvlab.train.Checkpoint or save_checkpoint.")
    return ckpt


def load_checkpoint(path: str | Path, target) -> dict:
    """Restore a checkpoint into a model (weights only) or a TrainState (everything); returns the checkpoint.

    Resuming checks that the run is the same one: its epochs, batch size, dataset size, batches per
    epoch and model must match, or the error says what changed.
    """
    ckpt = read_checkpoint(path)
    if isinstance(target, nn.Module):
        target.load_state_dict(ckpt["model"])
        return ckpt
    state = target
    _check_same_run(path, ckpt, state)
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
        state.sums = {name: torch.tensor(v, device=state.device) for name, v in sums["sums"].items()}
    for i, cb in enumerate(state.callbacks):
        key = f"{i}:{type(cb).__name__}"
        if hasattr(cb, "load_state_dict") and key in ckpt["callbacks"]:
            cb.load_state_dict(ckpt["callbacks"][key])
    set_rng_state(ckpt["rng"])
    return ckpt


def _check_same_run(path, ckpt: dict, state) -> None:
    """Refuse to resume a run into a different one (a changed batch size replays other batches, for instance)."""
    old, new = ckpt.get("meta", {}), {**state.meta, "batches_per_epoch": state.batches_per_epoch}
    changed = [f"{key} {old[key]} -> {new[key]}" for key in ("batch_size", "dataset_size", "batches_per_epoch")
               if old.get(key) is not None and new.get(key) is not None and old[key] != new[key]]
    if old.get("model") and new.get("model") and old["model"] != new["model"]:
        changed.append(f"model {old['model']} -> {new['model']}")
    theirs, ours = ckpt["model"], state.model.state_dict()
    shapes = [k for k in ours if k in theirs and theirs[k].shape != ours[k].shape]
    if set(theirs) != set(ours) or shapes:
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        changed.append("the model's weights differ (" + "; ".join(
            part for part in (f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                              f"other shapes {shapes[:3]}" if shapes else "") if part) + ")")
    if changed:
        raise ValueError(f"{path} is from a different run: {', '.join(changed)}. Resume with the same settings, or "
                         f"start a new run in another folder (or without resume) and load this one's weights with "
                         f"load_checkpoint(path, model) if you want them.")


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


def load(path: str | Path, *, device=None) -> nn.Module:
    """The model a checkpoint holds, rebuilt from its registry name and ready to predict (eval mode).

    ``model.preprocess`` is how its training images were prepared and ``model.classes`` their names, so
    ``cvlab.train.predict(model, images)`` needs nothing else. The model must have been built with
    :func:`cvlab.models.create` for the checkpoint to know how to rebuild it.
    """
    from . import models
    from .preprocess import Preprocess
    ckpt = read_checkpoint(path)
    meta = ckpt.get("meta", {})
    spec = meta.get("model")
    if not spec:
        raise ValueError(f"{path} does not say how to build its model (it was written by an older cvlab, or the model "
                         "was not made by cvlab.models.create). Build the model yourself and load the weights with "
                         "cvlab.checkpoint.load_checkpoint(path, model).")
    model = models.create(spec["name"], num_classes=spec["num_classes"], in_chans=spec["in_chans"], **spec["kwargs"])
    model.load_state_dict(ckpt["model"])
    model.preprocess = Preprocess.from_dict(meta.get("preprocess"))
    model.classes = meta.get("classes")
    model.eval()
    if device is not None:
        model.to(device)
    return model
