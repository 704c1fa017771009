"""The debugging checklist (initial loss, overfit a batch, lr_find, diagnose, search), pseudo-labeling, the image cache."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from cvlab import data as cvdata, plot
from cvlab.cache import DecodeCache, cached_image_folder
from cvlab.checks import LogUniform, diagnose, initial_loss, lr_find, overfit_batch, pseudo_label, search
from cvlab.models import create
from cvlab.train import fit, predict

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(1024))


def tiny_cnn(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Flatten(), nn.Linear(width * 7 * 7, 10))


def dead_cnn() -> nn.Module:
    """The tiny CNN with its convolution zeroed and frozen: every image looks the same to the head."""
    net = tiny_cnn()
    nn.init.zeros_(net[0].weight), nn.init.zeros_(net[0].bias)
    net[0].requires_grad_(False)
    return net


def weights(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# initial_loss
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [tiny_cnn, lambda: create("small_resnet", num_classes=10, in_chans=1)], ids=["tiny", "small_resnet"])
def test_initial_loss_passes_a_fresh_model(fmnist, build):
    net = build()
    check = initial_loss(net, fmnist, batch_size=256)
    x = fmnist.images[:256].float() / 255
    net.train()
    with torch.no_grad():
        expected = F.cross_entropy(net(x), fmnist.labels[:256]).item()
    assert check.passed and not check.causes, str(check)
    assert check.values["expected"] == pytest.approx(math.log(10))
    assert check.values["loss"] == pytest.approx(expected, rel=1e-4)  # the first batch, as fit sees it


def test_initial_loss_leaves_batch_norm_statistics_alone(fmnist):
    net = tiny_cnn()
    before = weights(net)
    initial_loss(net, fmnist)
    assert same_weights(weights(net), before)


def test_initial_loss_flags_a_head_scaled_by_50(fmnist):
    net = tiny_cnn()
    with torch.no_grad():
        net[-1].weight.mul_(50)
    check = initial_loss(net, fmnist)
    assert not check.passed
    assert check.values["ratio"] > 2
    assert "too large" in check.causes[0] and "PROBLEM" in str(check)


# ---------------------------------------------------------------------------------------------
# overfit_batch
# ---------------------------------------------------------------------------------------------

def test_overfit_batch_learns_64_images_by_heart_and_leaves_the_model_as_it_was(fmnist):
    net = tiny_cnn()
    before = weights(net)
    check = overfit_batch(net, fmnist.take(range(64)), steps=300, lr=1e-2)
    assert check.passed, str(check)
    assert check.values["accuracy"] == 1.0 and 0 < check.values["steps"] < 300
    assert check.values["losses"][-1] < 0.5 * check.values["losses"][0]
    assert same_weights(weights(net), before)


def test_overfit_batch_fails_with_a_frozen_dead_layer_and_names_it(fmnist):
    check = overfit_batch(dead_cnn(), fmnist.take(range(64)), steps=100, lr=1e-2)
    assert not check.passed
    assert check.values["accuracy"] < 0.5 and check.values["steps"] is None
    text = "\n".join(check.causes)
    assert "frozen" in text and "0.weight" in text
    assert "zero gradient" in text  # the batch norm after the dead conv gets none either
    assert "1.weight" in text


def test_overfit_batch_reports_units_that_die_at_a_rate_too_high(fmnist):
    check = overfit_batch(tiny_cnn(), fmnist.take(range(64)), steps=100, lr=1.0)
    assert not check.passed
    died = next(c for c in check.causes if "died" in c)
    assert "became exactly zero during training" in died and "try 0.1" in died
    assert not any("frozen" in c or "from the start" in c for c in check.causes)  # nothing was wrong at step 1


def test_overfit_batch_takes_a_pair_of_tensors(fmnist):
    x, y = fmnist.images[:32].float() / 255, fmnist.labels[:32]
    check = overfit_batch(tiny_cnn(), (x, y), steps=300, lr=1e-2)
    assert check.passed and "32 images" in check.summary


def test_overfit_batch_refuses_a_model_with_nothing_to_train(fmnist):
    net = tiny_cnn().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        overfit_batch(net, fmnist.take(range(16)))


# ---------------------------------------------------------------------------------------------
# lr_find
# ---------------------------------------------------------------------------------------------

def test_lr_find_sweeps_exponentially_suggests_inside_the_range_and_restores_weights(fmnist):
    net = tiny_cnn()
    before = weights(net)
    found = lr_find(net, fmnist, start_lr=1e-5, end_lr=30.0, steps=80, batch_size=64)
    assert same_weights(weights(net), before)  # batch-norm buffers included
    assert len(found.lrs) == len(found.losses) == len(found.raw_losses) <= 80
    ratios = np.diff(np.log(found.lrs))
    assert np.allclose(ratios, math.log(30.0 / 1e-5) / 79)
    assert found.lrs[0] == pytest.approx(1e-5)
    assert found.diverged and found.lrs[-1] < 30.0  # SGD at lr 30 blows up: the sweep stopped early
    assert found.lrs[0] <= found.suggestion <= found.lr_min_loss <= found.lrs[-1]
    assert found.suggestion == pytest.approx(max(found.lr_min_loss / 10, found.lrs[0]))
    assert min(found.losses) < 0.8 * found.losses[0]  # it trained along the way
    i = found.lrs.index(found.lr_min_loss)
    assert found.losses[i] == min(found.losses)
    assert "suggested lr" in str(found)
    fig = plot.lr_find(found)
    smoothed = fig.axes[0].lines[1]
    assert np.allclose(smoothed.get_xdata(), found.lrs) and np.allclose(smoothed.get_ydata(), found.losses)
    assert fig.axes[0].get_xscale() == "log"


def test_lr_find_smoothing_is_a_debiased_running_mean(fmnist):
    found = lr_find(tiny_cnn(), fmnist, start_lr=1e-4, end_lr=1e-2, steps=12, batch_size=128, smooth=0.9)
    avg, expected = 0.0, []
    for i, loss in enumerate(found.raw_losses):
        avg = 0.9 * avg + 0.1 * loss
        expected.append(avg / (1 - 0.9 ** (i + 1)))
    assert np.allclose(found.losses, expected)
    assert found.losses[0] == pytest.approx(found.raw_losses[0]) and not found.diverged


def test_lr_find_refuses_a_bad_range(fmnist):
    with pytest.raises(ValueError, match="start_lr"):
        lr_find(tiny_cnn(), fmnist, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        lr_find(tiny_cnn(), fmnist, steps=3)


# ---------------------------------------------------------------------------------------------
# diagnose
# ---------------------------------------------------------------------------------------------

def history(train_loss, train_acc, val_loss, val_acc, lr=None) -> dict:
    n = len(train_loss)
    return {"epoch": list(range(1, n + 1)), "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
            "val_acc": val_acc, "lr": lr or [0.1] * n, "time": [float(i) for i in range(n)]}


CASES = {
    "not learning": history([2.31, 2.30, 2.30, 2.31, 2.30], [0.10, 0.11, 0.10, 0.10, 0.11],
                            [2.30, 2.30, 2.30, 2.30, 2.30], [0.10, 0.10, 0.10, 0.10, 0.10]),
    "overfitting": history([1.0, 0.5, 0.25, 0.1, 0.05, 0.02], [0.7, 0.85, 0.93, 0.97, 0.99, 1.0],
                           [0.6, 0.45, 0.42, 0.48, 0.55, 0.62], [0.8, 0.85, 0.86, 0.86, 0.85, 0.85]),
    "learning-rate drop too early": history([1.0, 0.7, 0.5, 0.45, 0.447, 0.445, 0.444, 0.443],
                                            [0.6, 0.7, 0.8, 0.82, 0.82, 0.82, 0.82, 0.82],
                                            [0.75, 0.55, 0.48, 0.46, 0.46, 0.46, 0.46, 0.46],
                                            [0.68, 0.76, 0.81, 0.815, 0.815, 0.815, 0.815, 0.815],
                                            lr=[0.1, 0.1, 0.1, 0.001, 0.001, 0.001, 0.001, 0.001]),
    "still improving": history([1.0, 0.8, 0.65, 0.55, 0.47, 0.41], [0.6, 0.7, 0.76, 0.8, 0.83, 0.86],
                               [0.85, 0.7, 0.6, 0.52, 0.46, 0.42], [0.65, 0.72, 0.77, 0.8, 0.83, 0.85]),
    "underfitting": history([1.2, 0.7, 0.62, 0.61, 0.61, 0.61], [0.6, 0.75, 0.78, 0.78, 0.78, 0.78],
                            [0.75, 0.64, 0.62, 0.62, 0.62, 0.62], [0.72, 0.76, 0.77, 0.77, 0.77, 0.77]),
    "healthy": history([0.8, 0.3, 0.15, 0.1, 0.09, 0.09], [0.75, 0.9, 0.95, 0.97, 0.975, 0.975],
                       [0.4, 0.25, 0.2, 0.19, 0.19, 0.19], [0.86, 0.92, 0.943, 0.945, 0.945, 0.945]),
}


@pytest.mark.parametrize("pattern", list(CASES))
def test_diagnose_names_each_pattern(pattern):
    d = diagnose(CASES[pattern])
    assert d.pattern == pattern, str(d)
    assert d.advice and pattern in str(d)


def test_diagnose_still_improving_without_validation():
    h = CASES["still improving"]
    d = diagnose({**h, "val_loss": [], "val_acc": []})
    assert d.pattern == "still improving" and "train loss" in d.evidence


def test_diagnose_the_same_step_cut_later_is_not_too_early():
    h = CASES["learning-rate drop too early"]
    late = history([1.0, 0.7, 0.55, 0.5, 0.48, 0.47, 0.4, 0.39, 0.385], [0.6, 0.7, 0.75, 0.8, 0.81, 0.82, 0.86, 0.865, 0.865],
                   [0.75, 0.55, 0.5, 0.48, 0.47, 0.46, 0.41, 0.405, 0.405], [0.68, 0.76, 0.78, 0.8, 0.81, 0.81, 0.85, 0.85, 0.85],
                   lr=[0.1] * 6 + [0.01] * 3)
    assert diagnose(h).pattern == "learning-rate drop too early"
    assert diagnose(late).pattern != "learning-rate drop too early"


def test_diagnose_reads_a_real_history_of_a_model_that_cannot_learn(fmnist):
    h = fit(dead_cnn(), fmnist, epochs=3, lr=0.05, batch_size=256, progress=False, device="cpu")
    assert diagnose(h).pattern == "not learning"


def test_diagnose_needs_three_epochs():
    with pytest.raises(ValueError, match="at least 3 epochs"):
        diagnose({k: v[:2] for k, v in CASES["healthy"].items()})


# ---------------------------------------------------------------------------------------------
# search
# ---------------------------------------------------------------------------------------------

def test_search_screens_ranks_and_trains_the_best_longer(fmnist):
    train, val = fmnist.take(range(768)), fmnist.take(range(768, 1024))
    space = {"lr": LogUniform(0.01, 0.3), "label_smoothing": [0.0, 0.1], "width": [4, 8]}
    result = search(space, budget=3, model=tiny_cnn, train=train, val=val, screen_epochs=1, final_epochs=2,
                    batch_size=128, device="cpu")
    assert len(result.rows) == 3
    accs = [r["val_acc"] for r in result.rows]
    assert accs == sorted(accs, reverse=True)
    assert result.best == {k: result.rows[0][k] for k in space}
    assert all(0.01 <= r["lr"] <= 0.3 and r["label_smoothing"] in (0.0, 0.1) for r in result.rows)
    assert len(result.history["epoch"]) == 2
    assert result.model[0].out_channels == result.best["width"]  # non-fit names went to the model builder
    assert result.table().splitlines()[0].split() == list(result.rows[0])


def test_search_refuses_a_fixed_value_in_the_space(fmnist):
    with pytest.raises(ValueError, match="fixed value"):
        search({"lr": 0.1}, budget=1, model=tiny_cnn, train=fmnist, val=fmnist)


def test_log_uniform_is_even_in_log_scale():
    rng = np.random.default_rng(0)
    draws = np.log10([LogUniform(1e-4, 1.0).sample(rng) for _ in range(4000)])
    assert draws.min() >= -4 and draws.max() <= 0
    assert np.histogram(draws, bins=4, range=(-4, 0))[0].min() > 900  # each decade gets about a quarter


# ---------------------------------------------------------------------------------------------
# pseudo_label
# ---------------------------------------------------------------------------------------------

class Counting(nn.Module):
    """Wraps a model and counts the images it is asked about."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.seen = net, 0

    def forward(self, x):
        self.seen += len(x)
        return self.net(x)


@pytest.fixture(scope="module")
def trained(fmnist):
    net = tiny_cnn()
    fit(net, fmnist.take(range(512)), epochs=2, lr=0.05, batch_size=64, progress=False, device="cpu")
    return net


def test_pseudo_label_keeps_the_confident_predictions(fmnist, trained):
    unlabeled, val = fmnist.take(range(512, 768)), fmnist.take(range(768, 1024))
    out = pseudo_label(trained, unlabeled, val=val, threshold=0.5)
    probs = predict(trained, unlabeled)  # the reference: the same model through cvlab.train.predict
    confident = probs.max(1).values >= 0.5
    assert 0 < len(out.indices) < len(unlabeled)
    assert torch.equal(out.indices, torch.nonzero(confident).flatten())
    assert torch.equal(out.dataset.labels, probs.argmax(1)[confident])
    assert torch.equal(out.dataset.images, unlabeled.images[confident])
    assert (out.confidence >= 0.5).all() and out.dropped == 0
    merged = out.with_labeled(fmnist.take(range(100)))
    assert len(merged) == 100 + len(out.indices)


def test_pseudo_label_refuses_validation_images(fmnist, trained):
    val = fmnist.take(range(768, 1024))
    with pytest.raises(ValueError, match="also in the validation set"):
        pseudo_label(trained, val, val=val)
    # A copy of one validation image hidden in the unlabeled pool, under another index, is caught by its pixels.
    pool = fmnist.take(list(range(512, 600)) + [900])
    with pytest.raises(ValueError, match="1 of the 89"):
        pseudo_label(trained, pool, val=val)


def test_pseudo_label_drop_never_predicts_on_or_returns_validation_images(fmnist, trained):
    val = fmnist.take(range(768, 1024))
    pool = fmnist.take(range(600, 900))  # 132 of these 300 are validation images
    counting = Counting(trained)
    out = pseudo_label(counting, pool, val=val, threshold=0.05, overlap="drop")  # 0.05: keeps every prediction
    assert out.dropped == 132 and counting.seen == 300 - 132  # the model never saw a validation image
    assert torch.equal(out.indices, torch.arange(168))  # positions 168.. of the pool are the validation images
    kept = out.dataset.images.flatten(1)
    assert not (kept[:, None, :] == val.images.flatten(1)[None, :, :]).all(2).any()


def test_pseudo_label_needs_val_and_a_sane_threshold(fmnist, trained):
    with pytest.raises(TypeError):
        pseudo_label(trained, fmnist, val=None)
    with pytest.raises(ValueError, match="threshold"):
        pseudo_label(trained, fmnist, val=fmnist.take(range(2)), threshold=1.5)


# ---------------------------------------------------------------------------------------------
# The decode-once cache
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path, fmnist):
    """12 PNG files in two class folders: 6 gray Fashion-MNIST images and 6 colour ones."""
    root = tmp_path / "images"
    originals = {}
    for i in range(12):
        img = fmnist.images[i, 0].numpy()
        if i % 2:
            img = np.stack([img, 255 - img, img // 2], axis=-1)  # (28, 28, 3)
        path = root / ("gray" if i % 2 == 0 else "rgb") / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        originals[path] = img
    return root, originals


def test_cache_returns_identical_arrays_and_decodes_each_file_once(folder):
    root, originals = folder
    cache = DecodeCache()
    first = {p: cache(p) for p in originals}
    assert cache.stats.decodes == 12 and cache.stats.memory_hits == 0
    for p, img in originals.items():
        assert np.array_equal(first[p], img) and first[p].dtype == np.uint8
        assert np.array_equal(first[p], np.asarray(Image.open(p)))  # what Pillow decodes
    second = {p: cache(p) for p in originals}
    assert cache.stats.decodes == 12 and cache.stats.memory_hits == 12  # no file decoded twice
    assert all(np.array_equal(first[p], second[p]) for p in originals)
    assert cache.nbytes == sum(img.nbytes for img in originals.values())


def test_npy_cache_serves_a_new_process_without_decoding(folder, tmp_path):
    root, originals = folder
    DecodeCache(tmp_path / "npy", memory=False)  # the folder is created
    writer = DecodeCache(tmp_path / "npy")
    for p in originals:
        writer(p)
    reader = DecodeCache(tmp_path / "npy")  # a fresh cache, e.g. the next run
    assert all(np.array_equal(reader(p), img) for p, img in originals.items())
    assert reader.stats.decodes == 0 and reader.stats.disk_hits == 12
    assert len(list((tmp_path / "npy").glob("*.npy"))) == 12


def test_a_changed_file_is_decoded_again(folder, tmp_path):
    root, originals = folder
    path = next(iter(originals))
    cache = DecodeCache(tmp_path / "npy")
    cache(path)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(path)  # new content, size and mtime
    assert cache(path).shape == (20, 24) and cache.stats.decodes == 2


def test_cached_image_folder_is_torchvisions_image_folder_through_the_cache(folder):
    root, originals = folder
    cache = DecodeCache()
    ds = cached_image_folder(root, cache=cache)
    assert ds.classes == ["gray", "rgb"] and len(ds) == 12
    for _ in range(2):  # two epochs
        items = [ds[i] for i in range(len(ds))]
    assert cache.stats.decodes == 12 and cache.stats.memory_hits == 12
    for (img, label), (path, _) in zip(items, ds.samples):
        assert np.array_equal(img, originals[Path(path)])
        assert label == (0 if "gray" in path else 1)


def test_cache_memory_limit_and_bad_arguments(folder, tmp_path):
    root, originals = folder
    cache = DecodeCache(max_bytes=28 * 28 * 3)
    for p in originals:
        cache(p)
    assert cache.nbytes <= 28 * 28 * 3 and len(cache.arrays) >= 1
    with pytest.raises(ValueError, match="needs a folder"):
        DecodeCache(memory=False)
    with pytest.raises(FileNotFoundError):
        cached_image_folder(tmp_path / "missing")
