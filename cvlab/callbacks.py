"""Stock callbacks for :func:`cvlab.train.fit`: early stopping, checkpoints, a progress display.

A callback is any object with some of these methods, each called with the training state
(:class:`cvlab.train.TrainState`): ``on_fit_start``, ``on_epoch_start``, ``on_before_step``
(gradients are ready, the optimizer has not stepped), ``on_step_end``, ``on_epoch_end`` (the
epoch's metrics are in ``state.history``) and ``on_fit_end``. To stop training, raise
:class:`StopTraining`. A callback with ``state_dict``/``load_state_dict`` has its state saved in
checkpoints, so a resumed run remembers, say, how long early stopping has been waiting.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

from .checkpoint import save_checkpoint

__all__ = ["StopTraining", "EarlyStopping", "Checkpoint", "Progress"]


class StopTraining(Exception):
    """Raised by a callback to end training after the current step or epoch; fit returns normally."""


def _improved(value: float, best: float, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping:
    """Stop when ``monitor`` (a history key) has not improved for ``patience`` epochs.

    With ``restore_best`` the model's weights at its best epoch are kept (a copy in memory, on the
    model's device) and put back when training ends, so the model ``fit`` returns is the best one seen,
    not the last: what a learner expects from early stopping.
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 3, min_delta: float = 0.0, mode: str | None = None,
                 restore_best: bool = False):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best, self.wait = math.inf if self.mode == "min" else -math.inf, 0
        self.restore_best, self.best_state, self.best_epoch = restore_best, None, None

    def on_epoch_end(self, state) -> None:
        value = _latest(state.history, self.monitor)
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait, self.best_epoch = value, 0, state.history["epoch"][-1]  # 1-based, as printed
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            raise StopTraining(f"{self.monitor} has not improved on {self.best:.4f} for {self.patience} epochs")

    def on_fit_end(self, state) -> None:
        if self.restore_best and self.best_state is not None:
            state.model.load_state_dict(self.best_state)
        elif self.restore_best and self.best_epoch is not None and self.best_epoch != state.history["epoch"][-1]:
            # resumed after the best epoch: its weights were in the killed process's memory, not in the checkpoint
            warnings.warn(f"EarlyStopping(restore_best=True): the best epoch ({self.best_epoch}) came before this run "
                          "was resumed and its weights are not in memory; the model keeps the last epoch's. Load them "
                          "from the Checkpoint callback's best.pt (cvlab.checkpoint.load_checkpoint(path, model)).")

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch}

    def load_state_dict(self, sd: dict) -> None:
        self.best, self.wait, self.best_epoch = sd["best"], sd["wait"], sd.get("best_epoch")


class Checkpoint:
    """Write the whole training state to ``folder/last.pt`` after every epoch (and every ``every`` steps),
    and to ``folder/best.pt`` when ``monitor`` improves. ``fit(..., resume=True)`` continues from ``last.pt``.
    ``monitor="val_acc"`` (the default) watches ``val_loss`` instead for a task that has no accuracy.

    Only the main process (rank 0) writes. Files are replaced atomically, so a crash mid-write
    leaves the previous checkpoint intact.
    """

    def __init__(self, folder: str | Path, *, every: int | None = None, monitor: str | None = "val_acc",
                 mode: str | None = None):
        self.folder = Path(folder)
        self.last, self.best_path = self.folder / "last.pt", self.folder / "best.pt"
        self.every, self.monitor = every, monitor
        self.mode = mode or ("min" if monitor and "loss" in monitor else "max")
        self.best = math.inf if self.mode == "min" else -math.inf

    def _save(self, state, path: Path) -> None:
        state.check_loss()  # on every rank, so that all stop together at a NaN
        if state.rank == 0:
            save_checkpoint(path, state)

    def on_step_end(self, state) -> None:
        if self.every and state.step % self.every == 0 and state.batch < state.batches_per_epoch:
            self._save(state, self.last)  # mid-epoch; the epoch's end writes its own

    def on_epoch_end(self, state) -> None:
        if self.monitor == "val_acc" and "val_acc" not in state.history:  # a reconstruction or contrastive task
            self.monitor, self.mode, self.best = "val_loss", "min", math.inf
        if self.monitor and (self.monitor not in state.history or state.history[self.monitor]):  # none without val
            value = _latest(state.history, self.monitor)
            if _improved(value, self.best, self.mode, 0.0):
                self.best = value
                self._save(state, self.best_path)
        self._save(state, self.last)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, sd: dict) -> None:
        self.best = sd["best"]


class Progress:
    """A tqdm bar per epoch with the running loss, and one line per epoch with its metrics (rank 0 only).

    ``bar=False`` keeps only the per-epoch lines (for logs); ``refresh`` is how often, in seconds,
    the bar's loss is read back from the device.
    """

    def __init__(self, *, bar: bool = True, refresh: float = 0.5):
        self.show_bar, self.refresh = bar, refresh
        self.bar, self.last_refresh = None, 0.0

    def on_epoch_start(self, state) -> None:
        if state.rank == 0 and self.show_bar:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=state.batches_per_epoch, initial=state.batch, leave=False, unit="batch",
                            desc=f"epoch {state.epoch + 1}/{state.epochs}", dynamic_ncols=True)

    def on_step_end(self, state) -> None:
        if self.bar is None:
            return
        self.bar.update(state.batch - self.bar.n)
        now = time.perf_counter()
        if now - self.last_refresh > self.refresh:
            self.last_refresh = now
            self.bar.set_postfix(loss=f"{state.running_loss():.4f}", refresh=False)

    def on_epoch_end(self, state) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if state.rank == 0:
            from tqdm.auto import tqdm
            tqdm.write(format_epoch(state.history, -1, state.epochs))

    def on_fit_end(self, state) -> None:
        if self.bar is not None:  # stopped mid-epoch
            self.bar.close()
            self.bar = None


def _latest(history: dict, key: str) -> float:
    if key not in history or not history[key]:
        raise KeyError(f"{key!r} is not in the history (keys: {', '.join(history)}); "
                       "monitor a key fit records, e.g. 'val_loss' or 'val_acc' (these need val data).")
    return history[key][-1]


def format_epoch(history: dict, i: int, epochs: int) -> str:
    """One line for epoch ``i`` of a history: its losses, metrics (accuracies in %), learning rate and time."""
    parts = [f"epoch {history['epoch'][i]:>{len(str(epochs))}}/{epochs}"]
    for split in ("train", "val"):
        if history.get(f"{split}_loss"):
            metrics = [f"{k[len(split) + 1:]} " + (f"{100 * v[i]:.2f}%" if k.endswith("acc") else f"{v[i]:.4f}")
                       for k, v in history.items() if k.startswith(f"{split}_") and k != f"{split}_loss" and v]
            parts.append(" ".join([f"{split} loss {history[f'{split}_loss'][i]:.4f}", *metrics]))
    parts.append(f"lr {history['lr'][i]:.3g}")
    parts.append(f"{history['time'][i]:.1f}s")
    return "  ".join(parts)
