"""The debugging checklist as tools: run them on your own model before (and after) a long training run.

    print(initial_loss(model, train))                  # the first batch's loss vs ln(number of classes)
    print(overfit_batch(model, train.take(range(64)))) # can it learn 64 images by heart?
    found = lr_find(model, train)                      # the learning-rate range test; found.suggestion
    result = search({"lr": LogUniform(0.01, 1), "label_smoothing": [0, 0.1]}, budget=8,
                    model=lambda: create("small_resnet"), train=train, val=val)   # screen, then train the best
    print(diagnose(result.history))                    # reads the curves and names the pattern
    extra = pseudo_label(model, unlabeled, val=val, threshold=0.95)

``initial_loss`` and ``overfit_batch`` work on a copy of the model and leave yours as it was;
``lr_find`` trains yours and puts its weights back. Each check returns a dataclass whose ``str``
is a verdict line followed by the likely causes when something is wrong. The decode-once image cache
lives in :mod:`cvlab.cache`.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import config
from .data import ImageDataset, TensorLoader
from .train import NonFiniteLossError, StopTraining, _as_loader, _logits, _model_device, _to_device, evaluate, fit

__all__ = ["CheckResult", "initial_loss", "overfit_batch", "LRFindResult", "lr_find", "Diagnosis", "PATTERNS",
           "diagnose", "LogUniform", "SearchResult", "search", "PseudoLabels", "pseudo_label"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass
class CheckResult:
    """The outcome of one check: passed or not, what was measured, and likely causes when it failed."""
    name: str
    passed: bool
    summary: str
    causes: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.name}: {'OK' if self.passed else 'PROBLEM'}: {self.summary}"]
        return "\n".join(lines + [f"  - {cause}" for cause in self.causes])


def _first_batch(data, batch_size: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (images, labels) batch of a dataset, an (images, labels) pair or a loader, on ``dev``."""
    x, y = next(iter(_as_loader(data, batch_size=batch_size, train=False, device=dev)))
    return _to_device(x, dev), y.to(dev)


# ---------------------------------------------------------------------------------------------
# 1. The initial loss
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def initial_loss(model: nn.Module, data, *, batch_size: int = 256, tolerance: float = 0.25) -> CheckResult:
    """The cross-entropy of a fresh model on the first batch, compared with ln(C).

    An untrained classifier should be unsure: about 1/C for every class, so a loss near ln(C).
    ``tolerance`` is the accepted relative distance (0.25: within 25% of ln(C)). The model runs in
    training mode, as fit runs it, on a copy (batch-norm statistics of yours are not touched).
    """
    dev = _model_device(model)
    x, y = _first_batch(data, batch_size, dev)
    logits = _logits(copy.deepcopy(model).train()(x)).float()  # (B, C)
    num_classes = logits.shape[1]
    loss, expected = F.cross_entropy(logits, y).item(), math.log(num_classes)
    ratio = loss / expected
    summary = (f"first-batch loss {loss:.3f}, ln({num_classes}) = {expected:.3f} (ratio {ratio:.2f}, accepted "
               f"{1 - tolerance:.2f}-{1 + tolerance:.2f}); logits have std {logits.std().item():.2f}")
    causes = []
    if ratio > 1 + tolerance:
        causes = ["weights too large, the last layer's above all: the logits start far from 0, so the model is "
                  "confidently wrong. Use the default initialization (or scale the head's weights down)",
                  "inputs not scaled: pixel values 0-255 instead of 0-1 or normalized",
                  "labels that do not match the outputs: label k must mean output k, and the class count must be right",
                  "a loss that adds something (a penalty term) or sums over the batch instead of averaging"]
    elif ratio < 1 - tolerance:
        causes = ["the model is not fresh: trained or pretrained weights (then this check does not apply)",
                  "the answer leaks into the inputs (e.g. a class-coloured border or file order)",
                  "the batch holds few classes and the output bias already favours them"]
    return CheckResult("initial loss", not causes, summary, causes,
                       {"loss": loss, "expected": expected, "ratio": ratio, "logit_std": logits.std().item()})


# ---------------------------------------------------------------------------------------------
# 2. Overfit one small batch
# ---------------------------------------------------------------------------------------------

def overfit_batch(model: nn.Module, batch, steps: int = 200, *, lr: float = 1e-3, optimizer="adam",
                  target: float = 1.0) -> CheckResult:
    """Train a copy of ``model`` on one small batch, with no regularization, until it is learnt by heart.

    ``batch`` is a small dataset (all of it is the batch) or an (images, labels) pair. Reaching
    ``target`` accuracy (100%) within ``steps`` shows that data, model, loss and optimizer are wired
    together; failing names the likely causes: frozen parameters, parameters whose gradient is
    exactly zero, a loss that exploded or one that barely moved.
    """
    dev = _model_device(model)
    # All of a dataset or pair is the batch; a loader gives its first batch.
    size = len(batch[1]) if isinstance(batch, tuple) else len(batch) if isinstance(batch, ImageDataset) else 1
    x, y = _first_batch(batch, size, dev)
    net = copy.deepcopy(model)
    named = list(net.named_parameters())
    if not any(p.requires_grad for _, p in named):
        raise ValueError("the model has no trainable parameters (every requires_grad is False); unfreeze some "
                         "with p.requires_grad_(True) before overfitting a batch.")
    watch = _OverfitWatch(named, target)
    try:  # fit's loop, one step per epoch on the same batch; no weight decay, no schedule
        history = fit(net, [(x, y)], epochs=steps, optimizer=optimizer, lr=lr, weight_decay=0.0, schedule=None,
                      device=dev, progress=False, callbacks=[watch])
        losses = history["train_loss"]
    except NonFiniteLossError:
        losses = watch.losses + [math.nan]
    accuracy, reached = watch.accuracy, watch.reached
    summary = (f"{len(y)} images, accuracy {accuracy:.0%} after {len(losses) - 1} steps (loss {losses[0]:.3f} -> "
               f"{losses[-1]:.3f})" + (f": learnt by heart in {reached} steps" if reached is not None else ""))
    first_zero, last_zero = watch.first_zero, watch.last_zero
    causes = [] if reached is not None else _overfit_causes(named, first_zero, last_zero, losses, lr)
    return CheckResult("overfit one batch", reached is not None, summary, causes,
                       {"accuracy": accuracy, "steps": reached, "losses": losses})


class _OverfitWatch:
    """overfit_batch's callback: dropout off, which gradients are exactly zero, stop once the batch is learnt."""

    def __init__(self, named: list, target: float):
        self.named, self.target = named, target
        self.losses, self.accuracy, self.reached, self.first_zero, self.last_zero = [], 0.0, None, [], []

    def on_epoch_start(self, state) -> None:
        for m in state.model.modules():  # no regularization: dropout off, batch norm still uses batch statistics
            if isinstance(m, _DROPOUT):
                m.eval()

    def on_before_step(self, state) -> None:
        self.last_zero = [n for n, p in self.named if p.requires_grad and (p.grad is None or not p.grad.any())]
        self.first_zero = self.last_zero if state.step == 0 else self.first_zero

    def on_epoch_end(self, state) -> None:
        # The epoch's one forward pass came before its optimizer step: `epoch - 1` steps had been taken.
        self.losses, self.accuracy = state.history["train_loss"], state.history["train_acc"][-1]
        if self.accuracy >= self.target:
            self.reached = state.epoch - 1
            raise StopTraining


def _overfit_causes(named: list, first_zero: list[str], last_zero: list[str], losses: list[float],
                    lr: float) -> list[str]:
    """Why a batch was not learnt: the notes' list, with the evidence this run gives for each."""
    causes = []
    frozen = [n for n, p in named if not p.requires_grad]
    if frozen:
        causes.append(f"{len(frozen)} of {len(named)} parameter tensors are frozen (requires_grad=False): "
                      f"{_names(frozen)}. Unfreeze them")
    if first_zero:
        causes.append(f"{len(first_zero)} trainable tensors got an exactly zero gradient from the start: "
                      f"{_names(first_zero)}. A layer before them outputs zeros (zero or frozen weights) or they "
                      "are not connected to the loss")
    died = [n for n in last_zero if n not in first_zero]
    if died:
        causes.append(f"{len(died)} tensors' gradients became exactly zero during training ({_names(died)}): their "
                      f"units died (ReLUs that output 0 for every image), typically after steps too large: lower the "
                      f"learning rate (it is {lr:g}; try {lr / 10:g})")
    if not math.isfinite(losses[-1]) or losses[-1] > 1.5 * losses[0]:
        causes.append(f"the loss exploded: lower the learning rate (it is {lr:g}; try {lr / 10:g}) and check the "
                      "initialization; a very deep plain network also explodes (add normalization or skips)")
    elif losses[-1] > 0.5 * losses[0]:
        causes.append(f"the loss barely moved: the learning rate may be off (it is {lr:g}: too small moves nothing, "
                      f"too large bounces or kills units; try {lr * 10:g} and {lr / 10:g}, or run lr_find), or too "
                      "few steps; then look for bugs: activations, the model's wiring, zero_grad/backward/step")
    else:
        causes.append("the loss fell but not to zero: more steps, or a model with more capacity")
    return causes


def _names(names: list[str], most: int = 4) -> str:
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")


# ---------------------------------------------------------------------------------------------
# 3. The learning-rate range test
# ---------------------------------------------------------------------------------------------

@dataclass
class LRFindResult:
    """Losses along an exponential learning-rate sweep, and the learning rate it suggests."""
    lrs: list[float]
    losses: list[float]        # smoothed (a debiased running mean), what to read
    raw_losses: list[float]
    lr_min_loss: float         # where the smoothed loss was lowest
    suggestion: float          # a tenth of that: fast, and safely below where the loss turns up
    start_lr: float
    end_lr: float
    diverged: bool             # the sweep stopped early because the loss blew up

    def __str__(self) -> str:
        end = f"stopped at {self.lrs[-1]:.3g}: the loss diverged" if self.diverged else "ran to the end"
        return (f"lr_find: swept {self.start_lr:.3g} to {self.end_lr:.3g} in {len(self.lrs)} steps ({end}); lowest "
                f"loss at lr {self.lr_min_loss:.3g}; suggested lr {self.suggestion:.3g}")


def lr_find(model: nn.Module, data, *, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100,
            optimizer="nesterov", momentum: float = 0.9, batch_size: int = 128, smooth: float = 0.98,
            diverge: float = 4.0, seed: int = 0) -> LRFindResult:
    """Train for ``steps`` batches while the learning rate grows exponentially from ``start_lr`` to ``end_lr``.

    The loss falls slowly while the rate is too small, fast where it is good, and blows up where it
    is too large; the sweep stops once the smoothed loss exceeds ``diverge`` times its minimum. The
    model's weights (and buffers) are restored afterwards, so you can train it from scratch.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr; got start_lr={start_lr}, end_lr={end_lr}")
    if steps < 10:
        raise ValueError(f"steps={steps} is too few to read a curve; use at least 10 (100 is usual)")
    dev = _model_device(model)
    dataset = isinstance(data, (ImageDataset, tuple))
    batches = len(_as_loader(data, batch_size=batch_size, train=True, device=dev, seed=seed))
    if batches == 0:
        raise ValueError("the data yields no batches; use a smaller batch_size or more data")
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    sweep = _Sweep(start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1)), smooth, diverge)
    try:  # fit's loop with the learning rate set by the sweep before every step
        fit(model, data, epochs=math.ceil(steps / batches), optimizer=optimizer, lr=start_lr, momentum=momentum,
            weight_decay=0.0, schedule=None, device=dev, progress=False, callbacks=[sweep],
            **({"batch_size": batch_size, "seed": seed} if dataset else {}))
    except NonFiniteLossError:
        sweep.diverged = True
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    raw, smoothed, diverged = sweep.raw, sweep.smoothed, sweep.diverged
    lrs = sweep.lrs[:len(raw)].tolist()
    finite = [s if math.isfinite(s) else math.inf for s in smoothed]
    lr_min = lrs[int(np.argmin(finite))]
    return LRFindResult(lrs, smoothed, raw, lr_min, max(lr_min / 10, lrs[0]), start_lr, end_lr, diverged)


class _Sweep:
    """lr_find's callback: sets each step's learning rate, reads each step's loss, stops at divergence."""

    def __init__(self, lrs: np.ndarray, smooth: float, diverge: float):
        self.lrs, self.smooth, self.diverge = lrs, smooth, diverge
        self.raw, self.smoothed, self.avg, self.diverged = [], [], 0.0, False

    def _set(self, state, lr: float) -> None:
        for group in state.optimizer.param_groups:
            group["lr"] = float(lr)

    def on_fit_start(self, state) -> None:
        self._set(state, self.lrs[0])

    def on_step_end(self, state) -> None:
        i = len(self.raw)
        self.raw.append(state.losses[state.batch - 1].item())  # a sweep reads every step: it is a diagnostic
        self.avg = self.smooth * self.avg + (1 - self.smooth) * self.raw[-1]
        self.smoothed.append(self.avg / (1 - self.smooth ** (i + 1)))  # debiased: early values are not pulled to 0
        if not math.isfinite(self.raw[-1]) or self.smoothed[-1] > self.diverge * min(self.smoothed):
            self.diverged = True
            raise StopTraining
        if i + 1 == len(self.lrs):
            raise StopTraining
        self._set(state, self.lrs[i + 1])


# ---------------------------------------------------------------------------------------------
# 4. Reading the curves
# ---------------------------------------------------------------------------------------------

PATTERNS = {
    "not learning": "The loss stays where it started: check the initialization and the learning rate "
                    "(run initial_loss and overfit_batch; try lr_find).",
    "overfitting": "Training accuracy runs away from validation: add regularization (weight decay, dropout, "
                   "augmentation, label smoothing), get more data, or stop early at the best validation epoch.",
    "learning-rate drop too early": "Progress stalled right after the learning rate was cut, while it was still "
                                    "falling fast before: cut later (after a plateau) or use a smooth schedule (cosine).",
    "still improving": "Validation is still getting better at the last epoch: keep training (more epochs).",
    "underfitting": "Train and validation agree but neither is good: the model is too weak. Use a bigger model "
                    "and train longer; if the learning rate was constant and the loss flat, lower it (schedule).",
    "healthy": "Training fits well, validation follows it and both have levelled off: keep this recipe.",
}


@dataclass
class Diagnosis:
    """The pattern a history shows, the numbers that show it, and the advice for it."""
    pattern: str
    evidence: str
    advice: str

    def __str__(self) -> str:
        return f"diagnosis: {self.pattern} ({self.evidence})\n  advice: {self.advice}"


def diagnose(history: dict, *, gap: float = 0.05, min_drop: float = 0.05, min_gain: float = 0.005,
             fit_level: float = 0.95, window: int = 3) -> Diagnosis:
    """Name the pattern in a history from :func:`cvlab.train.fit` (per-epoch lists), with the notes' advice.

    Checked in this order: *not learning* (train loss fell less than ``min_drop``, relative);
    *overfitting* (train accuracy above val by more than ``gap``, or val loss up 10% from its minimum,
    reached two or more epochs before the end); *learning-rate drop too early* (after the first cut
    to half the peak rate, train loss falls less than a quarter as fast as just before it, for two
    epochs or more); *still improving* (val accuracy, else train loss, still gained more than
    ``min_gain`` over the last ``window`` epochs); *underfitting* (train accuracy below ``fit_level``);
    else *healthy*. These are rules of thumb: read the evidence too.
    """
    tl, ta = history["train_loss"], history["train_acc"]
    vl, va, lr = history.get("val_loss") or [], history.get("val_acc") or [], history.get("lr") or []
    n = len(tl)
    if n < 3:
        raise ValueError(f"diagnose needs at least 3 epochs of history; got {n}. Train a few epochs first.")

    def found(pattern: str, evidence: str) -> Diagnosis:
        return Diagnosis(pattern, evidence, PATTERNS[pattern])

    drop = 1 - tl[-1] / tl[0]
    if drop < min_drop:
        return found("not learning", f"train loss {tl[0]:.3f} -> {tl[-1]:.3f}, down {drop:.1%} in {n} epochs")
    if va:
        acc_gap, best = ta[-1] - va[-1], int(np.argmin(vl))
        if acc_gap > gap or (vl[-1] > 1.1 * vl[best] and best <= n - 3):
            return found("overfitting", f"train acc {ta[-1]:.3f} vs val {va[-1]:.3f} (gap {acc_gap:.3f}); val loss "
                                        f"lowest {vl[best]:.3f} at epoch {best + 1}, now {vl[-1]:.3f}")
    cut = next((k for k in range(1, n) if lr and lr[k] < 0.5 * max(lr[:k])), None)
    if cut is not None and cut >= 1 and n - 1 - cut >= 2:
        before = 1 - tl[cut - 1] / tl[max(cut - 2, 0)] if cut >= 2 else drop / n
        after = (1 - tl[-1] / tl[cut]) / (n - 1 - cut)  # per epoch, from the first epoch at the lower rate
        if after < 0.25 * before:
            return found("learning-rate drop too early",
                         f"lr cut to {lr[cut]:.3g} at epoch {cut + 1}; train loss fell {before:.1%} per epoch "
                         f"before, {after:.1%} per epoch after")
    w = min(window, n - 1)
    gain = va[-1] - va[-1 - w] if va else 1 - tl[-1] / tl[-1 - w]
    if gain > min_gain and (not va or va[-1] >= max(va) - min_gain):
        what = "val accuracy" if va else "train loss (relative)"
        return found("still improving", f"{what} gained {gain:.3f} over the last {w} epochs")
    if ta[-1] < fit_level:
        return found("underfitting", f"train acc {ta[-1]:.3f} < {fit_level}" +
                     (f", val {va[-1]:.3f}" if va else "") + f", flat over the last {w} epochs")
    return found("healthy", f"train acc {ta[-1]:.3f}" + (f", val {va[-1]:.3f}" if va else "") +
                 f", flat over the last {w} epochs")


# ---------------------------------------------------------------------------------------------
# 5. Random search: screen briefly, train the best longer
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogUniform:
    """A range sampled evenly in log scale: right for learning rates and weight decay, which span decades."""
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass
class SearchResult:
    """Every screened candidate (best first), the best one's values, and its longer training run."""
    rows: list[dict]
    best: dict
    history: dict
    model: nn.Module

    def table(self) -> str:
        """The rows as an aligned text table."""
        keys = list(self.rows[0])
        cells = [[_fmt(row[k]) for k in keys] for row in self.rows]
        widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
        lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
        return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells])

    __str__ = table


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _sample(space: dict, budget: int, seed: int) -> list[dict]:
    """``budget`` random picks from ``space``: a list is a set of choices, a LogUniform a range."""
    for name, values in space.items():
        if not isinstance(values, (list, tuple, LogUniform)) or (not isinstance(values, LogUniform) and not values):
            raise ValueError(f"space[{name!r}] = {values!r}: give a non-empty list of choices or a "
                             f"LogUniform(low, high); a fixed value goes to search(..., {name}=value)")
    rng = np.random.default_rng(seed)
    return [{name: v.sample(rng) if isinstance(v, LogUniform) else v[rng.integers(len(v))]
             for name, v in space.items()} for _ in range(budget)]


def search(space: dict, budget: int, *, model: Callable[..., nn.Module], train, val, screen_epochs: int = 2,
           final_epochs: int = 10, seed: int = 0, **fit_kwargs) -> SearchResult:
    """Random search: screen ``budget`` candidates for ``screen_epochs`` each, then train the best for ``final_epochs``.

    ``space`` maps names to a list of choices or a :class:`LogUniform` range. Names that
    :func:`cvlab.train.fit` takes (``lr``, ``weight_decay``, ``label_smoothing``, ``optimizer``,
    ``schedule``...) go to fit; the others go to ``model(**values)``, a function that builds a fresh
    model. Candidates are ranked by their final validation accuracy: select on ``val``, never on
    the test set. Every candidate starts from the same seed.
    """
    if budget < 1:
        raise ValueError(f"budget is the number of candidates to screen; got {budget}")
    fit_names = set(inspect.signature(fit).parameters)
    fit_kwargs = {"progress": False, **fit_kwargs}

    def run(values: dict, epochs: int) -> tuple[dict, float, nn.Module]:
        config.seed_everything(seed)
        net = model(**{k: v for k, v in values.items() if k not in fit_names})
        started = time.perf_counter()
        seeded = {"seed": seed} if isinstance(train, (ImageDataset, tuple)) else {}  # a loader has its own seed
        history = fit(net, train, val, epochs=epochs, **seeded,
                      **fit_kwargs, **{k: v for k, v in values.items() if k in fit_names})
        return history, time.perf_counter() - started, net

    rows = []
    for i, values in enumerate(_sample(space, budget, seed)):
        history, seconds, _ = run(values, screen_epochs)
        rows.append({"candidate": i, **values, "train_acc": history["train_acc"][-1], "val_loss": history["val_loss"][-1],
                     "val_acc": history["val_acc"][-1], "seconds": seconds})
    rows.sort(key=lambda r: -r["val_acc"])
    best = {k: rows[0][k] for k in space}
    history, _, net = run(best, final_epochs)
    return SearchResult(rows, best, history, net)


# ---------------------------------------------------------------------------------------------
# 6. Pseudo-labeling, with the validation split kept out by construction
# ---------------------------------------------------------------------------------------------

@dataclass
class PseudoLabels:
    """The unlabeled images the model was confident about, labelled with its predictions."""
    dataset: ImageDataset       # the kept images and their predicted labels
    indices: torch.Tensor       # their positions in the unlabeled set
    confidence: torch.Tensor    # the probability of each kept label
    threshold: float
    total: int                  # unlabeled images offered
    dropped: int                # of those, removed because the validation set holds them too

    def __str__(self) -> str:
        return (f"pseudo-labels: kept {len(self.indices)} of {self.total} unlabeled images (confidence >= "
                f"{self.threshold}); {self.dropped} dropped for being in the validation set")

    def with_labeled(self, labeled: ImageDataset) -> ImageDataset:
        """The labeled set and the pseudo-labelled images together, for the next round of training."""
        return ImageDataset(torch.cat([labeled.images, self.dataset.images]),
                            torch.cat([labeled.labels, self.dataset.labels]), labeled.classes,
                            name=f"{labeled.name}+pseudo", source="labeled + pseudo-labeled")


def _fingerprints(ds: ImageDataset) -> list[bytes]:
    """One hash per image, of its pixels: the same picture gives the same hash whatever its index or file."""
    images = ds.images.cpu().numpy()
    return [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in images]


def pseudo_label(model: nn.Module, unlabeled: ImageDataset, *, val: ImageDataset, threshold: float = 0.95,
                 overlap: str = "raise", mean=None, std=None, batch_size: int = 512) -> PseudoLabels:
    """Predict on ``unlabeled`` and keep the images whose top probability is at least ``threshold``.

    ``val`` is required, and only compared, never predicted on: any unlabeled image whose pixels (or
    file path) also appear in ``val`` raises a ValueError (``overlap="drop"`` removes those images
    instead), so validation images can never come back as training data with the model's own labels.
    The labels ``unlabeled`` carries are ignored. ``mean``/``std`` normalize as during training.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    if overlap not in ("raise", "drop"):
        raise ValueError(f"overlap must be 'raise' or 'drop'; got {overlap!r}")
    if not isinstance(val, ImageDataset) or not isinstance(unlabeled, ImageDataset):
        raise TypeError("unlabeled and val must be ImageDatasets (val is compared to keep its images out)")
    seen = set(_fingerprints(val))
    val_paths = set(val.paths or [])
    shared = [i for i, h in enumerate(_fingerprints(unlabeled))
              if h in seen or (unlabeled.paths is not None and unlabeled.paths[i] in val_paths)]
    if shared and overlap == "raise":
        raise ValueError(f"{len(shared)} of the {len(unlabeled)} unlabeled images are also in the validation set "
                         f"(first at index {shared[0]}): pseudo-labeling them would leak validation into training. "
                         "Pass images from outside val, or overlap='drop' to leave those out.")
    keep = torch.ones(len(unlabeled), dtype=torch.bool)
    keep[shared] = False
    candidates = torch.nonzero(keep).flatten()
    pool = unlabeled.take(candidates)
    dev = _model_device(model)
    loader = TensorLoader(pool, batch_size=batch_size, device=dev, mean=mean, std=std)
    probs = evaluate(model, loader)["probabilities"]  # (N, C)
    confidence, labels = probs.max(1)
    sure = confidence >= threshold
    kept = ImageDataset(pool.images[sure], labels[sure], unlabeled.classes,
                        name=f"{unlabeled.name}-pseudo", source=f"pseudo-labels (confidence >= {threshold})")
    return PseudoLabels(kept, candidates[sure], confidence[sure], threshold, len(unlabeled), len(shared))
