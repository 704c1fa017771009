"""cvlab.metrics against scikit-learn, torchmetrics and SciPy on fixed examples; thresholds meet their targets."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm
from torchmetrics.functional import classification as tmc

from cvlab import metrics

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def multiclass():
    """500 images, 4 classes of unequal size, probabilities that are right about 60% of the time."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.multinomial(torch.tensor([0.4, 0.3, 0.2, 0.1]), 500, replacement=True, generator=gen)
    logits = torch.randn(500, 4, generator=gen) + 1.5 * torch.nn.functional.one_hot(labels, 4)
    return logits.softmax(1), labels


@pytest.fixture(scope="module")
def binary():
    """1,000 scores, 10% positives, positives scoring higher on average."""
    rng = np.random.default_rng(1)
    labels = (rng.random(1000) < 0.1).astype(np.int64)
    scores = rng.normal(size=1000) + 1.5 * labels
    return scores, labels


def test_report_equals_scikit_learn(multiclass):
    probs, labels = multiclass
    preds = probs.argmax(1)
    names = ["a", "b", "c", "d"]
    report = metrics.classification_report(labels, preds, names)
    ref = skm.classification_report(labels.numpy(), preds.numpy(), target_names=names, output_dict=True)
    for i, name in enumerate(names):
        assert report.precision[i] == pytest.approx(ref[name]["precision"])
        assert report.recall[i] == pytest.approx(ref[name]["recall"])
        assert report.f1[i] == pytest.approx(ref[name]["f1-score"])
        assert report.support[i] == ref[name]["support"]
    for avg in ("macro", "weighted"):
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert getattr(report, avg)[key] == pytest.approx(ref[f"{avg} avg"][ref_key])
    assert report.accuracy == pytest.approx(ref["accuracy"])
    assert "weighted avg" in str(report) and "d" in str(report)


def test_a_class_never_predicted_gets_zero_precision_not_an_error():
    report = metrics.classification_report([0, 1, 2, 2], [0, 1, 1, 1], ["x", "y", "z"])
    assert report.precision[2] == 0 and report.recall[2] == 0 and report.support.tolist() == [1, 1, 2]


def test_confusion_matrix_counts_and_normalized(multiclass):
    probs, labels = multiclass
    preds = probs.argmax(1)
    counts = metrics.confusion_matrix(labels, preds, 4)
    np.testing.assert_array_equal(counts, skm.confusion_matrix(labels, preds))
    assert counts.sum() == 500 and (counts.sum(1) == np.bincount(labels, minlength=4)).all()
    rows = metrics.confusion_matrix(labels, preds, 4, normalize="true")
    np.testing.assert_allclose(rows.sum(1), 1.0)
    np.testing.assert_allclose(rows, counts / counts.sum(1, keepdims=True))
    with pytest.raises(ValueError, match="normalize='rows'"):
        metrics.confusion_matrix(labels, preds, 4, normalize="rows")


def test_binary_curves_equal_scikit_learn_and_torchmetrics(binary):
    scores, labels = binary
    roc = metrics.roc_curve(scores, labels)
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    np.testing.assert_allclose(roc.x, fpr)
    np.testing.assert_allclose(roc.y, tpr)
    t_scores, t_labels = torch.tensor(scores, dtype=torch.float64), torch.tensor(labels)
    assert roc.auc == pytest.approx(tmc.binary_auroc(t_scores.sigmoid(), t_labels).item(), abs=1e-6)
    assert 0.8 < roc.auc < 0.9  # the planted separation: 1.5 standard deviations
    pr = metrics.pr_curve(scores, labels)
    assert pr.auc == pytest.approx(tmc.binary_average_precision(t_scores.sigmoid(), t_labels).item(), abs=1e-6)
    assert pr.x[0] == 1.0 and pr.x[-1] == 0.0  # recall runs from all positives found to none


def test_one_vs_rest_macro_auc_equals_scikit_learn(multiclass):
    probs, labels = multiclass
    curves = metrics.one_vs_rest(probs, labels, classes=["a", "b", "c", "d"])
    assert [c.name for c in curves] == ["a", "b", "c", "d"]
    macro = np.mean([c.auc for c in curves])
    assert macro == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    ap = metrics.one_vs_rest(probs, labels, kind="pr")
    ref = tmc.multiclass_average_precision(probs, labels, num_classes=4, average=None)
    np.testing.assert_allclose([c.auc for c in ap], ref.numpy(), atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy_equals_torchmetrics(multiclass, k):
    probs, labels = multiclass
    ref = tmc.multiclass_accuracy(probs, labels, num_classes=4, top_k=k, average="micro").item()
    assert metrics.top_k_accuracy(probs, labels, k) == pytest.approx(ref)
    with pytest.raises(ValueError, match="k=5"):
        metrics.top_k_accuracy(probs, labels, 5)


def test_reliability_bins_give_torchmetrics_ece(multiclass):
    probs, labels = multiclass
    rel = metrics.reliability(probs, labels, n_bins=10)
    ref = tmc.multiclass_calibration_error(probs, labels, num_classes=4, n_bins=10, norm="l1").item()
    assert rel.ece == pytest.approx(ref, abs=1e-6)
    from_bins = (rel.count / rel.count.sum() * np.abs(rel.accuracy - rel.confidence)).sum()
    assert from_bins == pytest.approx(ref, abs=1e-6)  # the diagram shows exactly the gaps the ECE averages
    assert rel.count.sum() == 500


def test_calibrated_scores_have_low_ece_and_temperature_recovers_the_overconfidence():
    gen = torch.Generator().manual_seed(2)
    logits = 2 * torch.randn(20_000, 5, generator=gen)
    labels = torch.multinomial(logits.softmax(1), 1, generator=gen)[:, 0]  # labels drawn from the model's own beliefs
    assert metrics.expected_calibration_error(logits.softmax(1), labels) < 0.02
    sharp = 3 * logits  # an over-confident model: same predictions, logits three times too large
    assert metrics.expected_calibration_error(sharp.softmax(1), labels) > 0.1
    t = metrics.fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    nll = lambda temp: torch.nn.functional.cross_entropy(sharp.double() / temp, labels).item()  # noqa: E731
    assert t == pytest.approx(minimize_scalar(nll, bounds=(0.05, 20), method="bounded").x, rel=1e-3)
    assert metrics.expected_calibration_error((sharp / t).softmax(1), labels) < 0.02


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 1.0])
def test_choose_threshold_meets_the_recall_and_is_the_highest_that_does(binary, target):
    scores, labels = binary
    t = metrics.choose_threshold(scores, labels, recall=target)
    assert metrics.threshold_metrics(scores, labels, t)["recall"] >= target
    above = np.min(scores[scores > t]) if (scores > t).any() else np.inf
    assert metrics.threshold_metrics(scores, labels, above)["recall"] < target  # one step stricter misses it


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_choose_threshold_meets_the_precision_and_is_the_lowest_that_does(binary, target):
    scores, labels = binary
    t = metrics.choose_threshold(scores, labels, precision=target)
    assert metrics.threshold_metrics(scores, labels, t)["precision"] >= target
    below = np.sort(scores)[np.sort(scores) < t]
    assert all(metrics.threshold_metrics(scores, labels, s)["precision"] < target for s in below[-20:])


def test_choose_threshold_by_cost_is_the_cheapest_on_the_data(binary):
    scores, labels = binary

    def cost(t, c_fp, c_fn):  # by brute force: count the two kinds of error at threshold t
        flagged = scores >= t
        return c_fp * (flagged & (labels == 0)).sum() + c_fn * (~flagged & (labels == 1)).sum()

    candidates = np.append(np.unique(scores), np.inf)
    for c_fp, c_fn in [(1, 1), (1, 20), (10, 1)]:
        t = metrics.choose_threshold(scores, labels, costs=(c_fp, c_fn))
        assert cost(t, c_fp, c_fn) == min(cost(s, c_fp, c_fn) for s in candidates)
    matrix = metrics.choose_threshold(scores, labels, costs=[[0, 1], [20, 0]])
    assert matrix == metrics.choose_threshold(scores, labels, costs=(1, 20))
    # Missed positives 20x dearer: flag more images than with equal costs.
    assert metrics.choose_threshold(scores, labels, costs=(1, 20)) < metrics.choose_threshold(scores, labels, costs=(1, 1))


def test_threshold_errors_name_the_problem(binary):
    scores, labels = binary
    with pytest.raises(ValueError, match="exactly one"):
        metrics.choose_threshold(scores, labels)
    with pytest.raises(ValueError, match="exactly one"):
        metrics.choose_threshold(scores, labels, recall=0.9, precision=0.9)
    with pytest.raises(ValueError, match="recall=1.5"):
        metrics.choose_threshold(scores, labels, recall=1.5)
    with pytest.raises(ValueError, match="no threshold reaches precision"):
        metrics.choose_threshold(-scores, labels, precision=0.99)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        metrics.choose_threshold(scores, labels * 2, recall=0.9)
    with pytest.raises(ValueError, match=r"probabilities\[:, 1\]"):
        metrics.roc_curve(np.stack([1 - scores, scores], 1), labels)


def test_plots_draw_the_data(binary, multiclass):
    scores, labels = binary
    fig = metrics.plot_curves([metrics.roc_curve(scores, labels, name="model")])
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), skm.roc_curve(labels, scores)[0])
    assert "AUC" in line.get_label()
    probs, y = multiclass
    fig = metrics.plot_reliability({"before": metrics.reliability(probs, y), "after": metrics.reliability(probs, y)})
    assert len(fig.axes) == 2 and "ECE" in fig.axes[0].get_title()
    fig = metrics.plot_threshold(scores, labels, {"recall 0.9": metrics.choose_threshold(scores, labels, recall=0.9)})
    assert len(fig.axes[0].lines) == 3  # precision, recall, one marker
    with pytest.raises(ValueError, match="all of one kind"):
        metrics.plot_curves([metrics.roc_curve(scores, labels), metrics.pr_curve(scores, labels)])


def test_mcnemar_is_a_binomial_test_on_the_disagreements():
    from scipy.stats import binomtest
    a = torch.tensor([True] * 30 + [False] * 5 + [True] * 50 + [False] * 15)
    b = torch.tensor([False] * 30 + [True] * 5 + [True] * 50 + [False] * 15)
    assert metrics.mcnemar(a, b) == pytest.approx(binomtest(30, 35).pvalue) and metrics.mcnemar(a, b) < 0.001
    assert metrics.mcnemar(a, a) == 1.0
    with pytest.raises(ValueError, match="same images"):
        metrics.mcnemar(a, b[:10])
