"""Evaluation beyond accuracy: reports, curves, calibration and thresholds.

    report = classification_report(labels, predictions, classes)   # per class and averaged
    print(report)
    curve = roc_curve(scores, labels)                                # binary: one score per image
    t = choose_threshold(scores, labels, recall=0.95)                # the threshold that catches 95%

The numbers come from scikit-learn and torchmetrics; this module adds the glue (tensors or arrays in,
plain dataclasses out) and the plots. Scores follow scikit-learn's rule: an image is called positive
when its score is >= the threshold.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Report", "classification_report", "confusion_matrix", "Curve", "roc_curve", "pr_curve", "one_vs_rest",
           "top_k_accuracy", "Reliability", "reliability", "expected_calibration_error", "fit_temperature",
           "choose_threshold", "threshold_metrics", "mcnemar", "plot_curves", "plot_reliability", "plot_threshold"]


def _sk():
    """scikit-learn's metrics module, imported on first use: it adds most of a second to ``import cvlab``."""
    from sklearn import metrics
    return metrics


def _np(x) -> np.ndarray:
    """A tensor or array-like as a NumPy array (on the host)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _binary(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) and 0/1 labels (N,), checked."""
    scores, labels = _np(scores).astype(np.float64), _np(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"binary metrics need one score per image, shape (N,), and labels of the same shape; got "
                         f"scores {scores.shape} and labels {labels.shape}. For a 2-class model pass probabilities[:, 1].")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"binary labels must be 0 or 1; got the values {np.unique(labels)[:10].tolist()}. "
                         "Turn a multi-class task into one class against the rest with (labels == c).")
    if labels.min() == labels.max():
        raise ValueError(f"the labels hold only class {labels[0]}: curves and thresholds need both positives and negatives")
    return scores, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Reports and confusion matrices
# ---------------------------------------------------------------------------------------------

@dataclass
class Report:
    """Per-class precision, recall, F1 and support, with accuracy and the macro and weighted averages."""
    classes: list[str]
    precision: np.ndarray   # (C,)
    recall: np.ndarray      # (C,)
    f1: np.ndarray          # (C,)
    support: np.ndarray     # (C,) images of each class
    accuracy: float
    macro: dict             # precision, recall, f1: the plain mean over classes
    weighted: dict          # the same, each class weighted by its support
    text: str               # scikit-learn's table

    def __str__(self) -> str:
        return self.text


def classification_report(labels, predictions, classes: Sequence[str] | None = None) -> Report:
    """Precision, recall, F1 and support per class, plus accuracy and macro/weighted averages (scikit-learn's)."""
    labels, predictions = _np(labels), _np(predictions)
    k = len(classes) if classes is not None else int(max(labels.max(), predictions.max())) + 1
    names = list(classes) if classes is not None else [str(c) for c in range(k)]
    ids = list(range(k))
    p, r, f, s = _sk().precision_recall_fscore_support(labels, predictions, labels=ids, zero_division=0)
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = _sk().precision_recall_fscore_support(labels, predictions, labels=ids, average=avg, zero_division=0)
        averages[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    text = _sk().classification_report(labels, predictions, labels=ids, target_names=names, digits=3, zero_division=0)
    return Report(names, p, r, f, s, float(_sk().accuracy_score(labels, predictions)), averages["macro"],
                  averages["weighted"], text)


def confusion_matrix(labels, predictions, num_classes: int | None = None, *, normalize: str | None = None) -> np.ndarray:
    """(C, C) matrix, rows true and columns predicted; ``normalize`` "true" (rows sum to 1), "pred" or "all"."""
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize={normalize!r}: use None (counts), 'true' (per true class), 'pred' or 'all'")
    labels, predictions = _np(labels), _np(predictions)
    k = num_classes or int(max(labels.max(), predictions.max())) + 1
    return _sk().confusion_matrix(labels, predictions, labels=list(range(k)), normalize=normalize)


# ---------------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------------

@dataclass
class Curve:
    """A ROC curve (x: false-positive rate, y: true-positive rate) or a PR curve (x: recall, y: precision)."""
    kind: str                # "roc" or "pr"
    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray
    auc: float               # ROC: area under the curve; PR: average precision
    name: str = ""


def roc_curve(scores, labels, *, name: str = "") -> Curve:
    """The ROC curve of a binary task and its AUC: how well the scores rank positives above negatives."""
    scores, labels = _binary(scores, labels)
    fpr, tpr, thresholds = _sk().roc_curve(labels, scores)
    return Curve("roc", fpr, tpr, thresholds, float(_sk().roc_auc_score(labels, scores)), name)


def pr_curve(scores, labels, *, name: str = "") -> Curve:
    """The precision-recall curve of a binary task and its average precision (the telling one when positives are rare)."""
    scores, labels = _binary(scores, labels)
    precision, recall, thresholds = _sk().precision_recall_curve(labels, scores)
    return Curve("pr", recall, precision, thresholds, float(_sk().average_precision_score(labels, scores)), name)


def one_vs_rest(probabilities, labels, *, kind: str = "roc", classes: Sequence[str] | None = None) -> list[Curve]:
    """One binary curve per class of a multi-class task: that class against all the others."""
    if kind not in ("roc", "pr"):
        raise ValueError(f"kind={kind!r}: use 'roc' or 'pr'")
    probs, labels = _np(probabilities), _np(labels)
    if probs.ndim != 2:
        raise ValueError(f"one_vs_rest needs probabilities of shape (N, C); got {probs.shape}")
    names = list(classes) if classes is not None else [str(c) for c in range(probs.shape[1])]
    make = roc_curve if kind == "roc" else pr_curve
    return [make(probs[:, c], (labels == c).astype(np.int64), name=names[c]) for c in range(probs.shape[1])]


def top_k_accuracy(probabilities, labels, k: int = 5) -> float:
    """The fraction of images whose true class is among the ``k`` highest-scored classes."""
    probs, labels = _np(probabilities), _np(labels)
    if not 1 <= k <= probs.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the number of classes, {probs.shape[1]}")
    return float(_sk().top_k_accuracy_score(labels, probs, k=k, labels=list(range(probs.shape[1]))))


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------

@dataclass
class Reliability:
    """A reliability diagram's data: per confidence bin, the mean confidence, the accuracy and the image count."""
    edges: np.ndarray        # (n_bins + 1,) bin edges on [0, 1]
    confidence: np.ndarray   # (n_bins,) mean top-class probability in each bin (0 where empty)
    accuracy: np.ndarray     # (n_bins,) fraction correct in each bin (0 where empty)
    count: np.ndarray        # (n_bins,)
    ece: float               # expected calibration error (torchmetrics)


def expected_calibration_error(probabilities, labels, n_bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins weighted by their size."""
    from torchmetrics.functional.classification import multiclass_calibration_error
    probs = torch.as_tensor(_np(probabilities), dtype=torch.float64)
    labels = torch.as_tensor(_np(labels), dtype=torch.long)
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"))


def reliability(probabilities, labels, n_bins: int = 15) -> Reliability:
    """Bin images by the probability of their predicted class; a calibrated model's accuracy equals that probability.

    The bins are torchmetrics' (``[lo, hi)``, equal widths), so the ECE is the size-weighted mean of the
    gaps ``|accuracy - confidence|`` drawn in the diagram.
    """
    probs, labels = _np(probabilities).astype(np.float64), _np(labels)
    confidence, correct = probs.max(1), (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        conf = np.nan_to_num(np.bincount(bins, confidence, n_bins) / count)
        acc = np.nan_to_num(np.bincount(bins, correct, n_bins) / count)
    return Reliability(edges, conf, acc, count, expected_calibration_error(probs, labels, n_bins))


def fit_temperature(logits, labels, *, max_iter: int = 100) -> float:
    """The temperature T that minimizes the cross-entropy of ``softmax(logits / T)`` on held-out data.

    Temperature scaling (Guo et al., 2017) fixes over-confidence without changing any prediction:
    dividing all logits by one T > 0 keeps their order. Fit it on a validation set, not the test set.
    Log-probabilities work as logits (``probabilities.log()``).
    """
    logits = torch.as_tensor(_np(logits), dtype=torch.float64)
    labels = torch.as_tensor(_np(labels), dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # optimize log T so that T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------

def choose_threshold(scores, labels, *, recall: float | None = None, precision: float | None = None,
                     costs=None) -> float:
    """A decision threshold for binary scores, chosen by exactly one rule.

    - ``recall=r``: the highest threshold that still finds at least ``r`` of the positives (recall first:
      a missed melanoma costs more than a second look);
    - ``precision=p``: the lowest threshold whose alarms are at least ``p`` correct (precision first:
      every alarm costs someone's time);
    - ``costs=(cost_fp, cost_fn)`` or a 2x2 cost matrix ``[[tn, fp], [fn, tp]]``: the threshold with the
      lowest total cost on this data.
    """
    if sum(rule is not None for rule in (recall, precision, costs)) != 1:
        raise ValueError("give exactly one of recall=, precision= or costs= to choose a threshold by")
    scores, labels = _binary(scores, labels)
    if recall is not None:
        if not 0 < recall <= 1:
            raise ValueError(f"recall={recall} must be in (0, 1]")
        _, tpr, thresholds = _sk().roc_curve(labels, scores, drop_intermediate=False)  # thresholds decreasing
        return float(thresholds[np.argmax(tpr >= recall - 1e-12)])
    if precision is not None:
        if not 0 < precision <= 1:
            raise ValueError(f"precision={precision} must be in (0, 1]")
        prec, _, thresholds = _sk().precision_recall_curve(labels, scores, drop_intermediate=False)  # increasing
        ok = np.flatnonzero(prec[:-1] >= precision - 1e-12)
        if len(ok) == 0:
            raise ValueError(f"no threshold reaches precision {precision} on this data (the best is "
                             f"{prec[:-1].max():.3f}); ask for less, or improve the model")
        return float(thresholds[ok[0]])
    return _cheapest_threshold(scores, labels, costs)


def _cheapest_threshold(scores: np.ndarray, labels: np.ndarray, costs) -> float:
    cost = np.asarray(costs, dtype=np.float64)
    if cost.shape == (2,):
        cost = np.array([[0.0, cost[0]], [cost[1], 0.0]])
    if cost.shape != (2, 2):
        raise ValueError(f"costs must be (cost_fp, cost_fn) or a 2x2 matrix [[tn, fp], [fn, tp]]; got shape {cost.shape}")
    fpr, tpr, thresholds = _sk().roc_curve(labels, scores, drop_intermediate=False)
    pos, neg = labels.sum(), len(labels) - labels.sum()
    tp, fp = tpr * pos, fpr * neg
    total = cost[0, 0] * (neg - fp) + cost[0, 1] * fp + cost[1, 0] * (pos - tp) + cost[1, 1] * tp
    return float(min(thresholds[np.argmin(total)], scores.max() + 1.0))  # "flag nothing" as a finite threshold


def threshold_metrics(scores, labels, threshold: float) -> dict:
    """Precision, recall, F1, accuracy and the four counts when images scoring >= ``threshold`` are called positive."""
    scores, labels = _binary(scores, labels)
    predicted = (scores >= threshold).astype(np.int64)
    tn, fp, fn, tp = _sk().confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    p, r, f, _ = _sk().precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    return {"threshold": float(threshold), "precision": float(p), "recall": float(r), "f1": float(f),
            "accuracy": float(_sk().accuracy_score(labels, predicted)),
            "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def mcnemar(correct_a, correct_b) -> float:
    """McNemar's exact test for two classifiers scored on the same images: the p-value that the images only
    one of them gets right split between them as unevenly as they do by chance (a binomial test at 1/2).
    ``correct_a`` and ``correct_b`` are per-image booleans. p < 0.05: the difference is unlikely to be luck."""
    from scipy.stats import binomtest
    a, b = _np(correct_a).astype(bool), _np(correct_b).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar needs the same images for both; got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b).pvalue)


def plot_curves(curves: Sequence[Curve], *, title: str = "", ax=None, size: float = 4.0):
    """ROC or PR curves on one axis, each labelled with its AUC (ROC) or average precision (PR)."""
    import matplotlib.pyplot as plt
    if not curves or len({c.kind for c in curves}) != 1:
        raise ValueError("plot_curves needs at least one curve, all of one kind (all ROC or all PR)")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(size, size))
    roc = curves[0].kind == "roc"
    for c in curves:
        ax.plot(c.x, c.y, lw=1.5, label=f"{c.name} ({'AUC' if roc else 'AP'} {c.auc:.3f})".strip(),
                drawstyle="default" if roc else "steps-post")
    if roc:
        ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8, label="chance")
    ax.set(xlabel="false-positive rate" if roc else "recall", ylabel="true-positive rate (recall)" if roc else "precision",
           xlim=(0, 1), ylim=(0, 1.02), title=title or ("ROC" if roc else "precision-recall"))
    ax.legend(fontsize=7, loc="lower right" if roc else "lower left")
    ax.grid(alpha=0.3)
    return fig


def plot_reliability(diagrams: dict[str, Reliability], *, size: float = 4.0):
    """Reliability diagrams side by side: accuracy per confidence bin against the diagonal of perfect calibration."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(diagrams), figsize=(size * len(diagrams), size), squeeze=False)
    for ax, (name, rel) in zip(axes[0], diagrams.items()):
        width = np.diff(rel.edges)
        filled = rel.count > 0
        ax.bar(rel.edges[:-1][filled], rel.accuracy[filled], width=width[filled], align="edge", edgecolor="black",
               lw=0.5, label="accuracy")
        ax.bar(rel.edges[:-1][filled], rel.confidence[filled] - rel.accuracy[filled], bottom=rel.accuracy[filled],
               width=width[filled], align="edge", color="tab:red", alpha=0.35, label="gap to confidence")
        ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8)
        ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
               title=f"{name}: ECE {rel.ece:.3f}")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_threshold(scores, labels, thresholds: dict[str, float], *, size: float = 4.0):
    """Precision and recall against the threshold, with chosen thresholds marked."""
    import matplotlib.pyplot as plt
    scores, labels = _binary(scores, labels)
    precision, recall, t = _sk().precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(1.6 * size, size))
    ax.plot(t, precision[:-1], label="precision")
    ax.plot(t, recall[:-1], label="recall")
    for name, value in thresholds.items():
        ax.axvline(value, ls="--", color="gray", lw=0.8)
        ax.text(value, 0.02, f" {name}", rotation=90, fontsize=8, va="bottom")
    ax.set(xlabel="threshold (score >= threshold is positive)", ylim=(0, 1.02), title="precision and recall vs threshold")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
