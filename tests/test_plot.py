"""cvlab.plot's statistical plots (seaborn): each draws exactly the numbers it is given."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cvlab import data as cvdata  # noqa: E402
from cvlab import plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _dataset(counts):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)]).long()
    return cvdata.ImageDataset(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels, ["a", "b", "c"])


def test_confusion_heatmap_cells_are_row_fractions_of_the_counts():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    fig = plot.confusion_matrix(labels, preds, ["a", "b", "c"])
    cells = np.asarray(fig.axes[0].collections[0].get_array()).reshape(3, 3)
    expected = np.array([[2, 1, 1], [1, 1, 0], [0, 1, 3]]) / np.array([[4], [2], [4]])
    assert np.allclose(cells, expected)
    assert fig.axes[0].get_title() == "confusion matrix (accuracy 60.00%)"
    counts = np.asarray(plot.confusion_matrix(labels, preds, ["a", "b", "c"], normalize=False).axes[0]
                        .collections[0].get_array()).reshape(3, 3)
    assert counts.tolist() == [[2, 1, 1], [1, 1, 0], [0, 1, 3]]


def test_class_counts_bars_equal_the_label_counts_of_each_set():
    fig = plot.class_counts({"train": _dataset([5, 2, 7]), "test": _dataset([1, 3, 0])})
    heights = [p.get_height() for p in fig.axes[0].patches if p.get_width() > 0 and not np.isnan(p.get_height())]
    assert sorted(heights) == sorted([5, 2, 7, 1, 3, 0])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]


def test_by_class_boxes_span_each_class_quartiles_and_refuses_mismatched_lengths():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    values = rng.normal(labels * 3.0, 1.0)
    fig = plot.by_class(values, labels, ["a", "b", "c"], name="brightness")
    boxes = [p.get_path().vertices[:, 1] for p in fig.axes[0].patches]
    assert len(boxes) == 3
    for c, ys in enumerate(boxes):
        assert np.allclose([ys.min(), ys.max()], np.percentile(values[labels == c], [25, 75]))
    with pytest.raises(ValueError, match="one value per label"):
        plot.by_class(values[:-1], labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match="kind="):
        plot.by_class(values, labels, ["a", "b", "c"], kind="bars")


def test_spread_draws_every_repeat_and_the_mean_with_its_standard_deviation():
    results = {"2 folds": [0.80, 0.84], "5 folds": [0.81, 0.83, 0.85, 0.79, 0.82]}
    ax = plot.spread(results).axes[0]
    dots = [c.get_offsets()[:, 1].tolist() for c in ax.collections[:2]]
    assert [sorted(d) for d in dots] == [sorted(v) for v in results.values()]
    means = ax.lines[0].get_ydata()
    assert np.allclose(means, [np.mean(v) for v in results.values()])
    bar = ax.lines[1].get_ydata()  # the first setting's error bar: mean - sd .. mean + sd (ddof=1)
    sd = np.std(results["2 folds"], ddof=1)
    assert np.nanmin(bar) == pytest.approx(0.82 - sd) and np.nanmax(bar) == pytest.approx(0.82 + sd)
