import io

import imagehash
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from cvlab import data, eda, plot

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def sample():
    return data.subset(data.load("fashion_mnist", "test"), n_per_class=30, seed=2)  # 300 real images


def _with(ds, extra_images, extra_labels):
    return data.ImageDataset(torch.cat([ds.images, extra_images]), torch.cat([ds.labels, torch.as_tensor(extra_labels)]), ds.classes)


def test_summary_counts_stats_and_memory():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (7, 3, 5, 4), dtype=np.uint8))
    ds = data.ImageDataset(images, torch.tensor([0, 0, 0, 0, 0, 2, 2]), ["a", "b", "c"])
    s = eda.summary(ds)
    assert (s.count, s.shape, s.channels, s.dtype) == (7, (3, 5, 4), 3, "uint8")
    assert s.class_counts == {"a": 5, "b": 0, "c": 2}
    assert s.imbalance_ratio == 2.5  # empty classes are reported but left out of the ratio
    x = images.double() / 255
    np.testing.assert_allclose(s.mean, x.mean(dim=(0, 2, 3)).numpy(), atol=1e-12)
    np.testing.assert_allclose(s.std, x.std(dim=(0, 2, 3), correction=0).numpy(), atol=1e-12)
    assert s.bytes_uint8 == 7 * 3 * 5 * 4 and s.bytes_float32 == 4 * s.bytes_uint8
    assert "imbalance ratio (max/min) 2.50" in str(s)


def test_brightness_contrast_per_image(sample):
    b, c = eda.brightness_contrast(sample)
    x = sample.images.numpy().reshape(len(sample), -1) / 255
    np.testing.assert_allclose(b, x.mean(1), rtol=1e-5)
    np.testing.assert_allclose(c, x.std(1), rtol=1e-4)


def test_exact_duplicates_finds_planted_copies(sample):
    base = eda.exact_duplicates(sample)
    n = len(sample)
    planted = _with(sample, sample.images[[3, 3, 10]], sample.labels[[3, 3, 10]])
    groups = [g for g in eda.exact_duplicates(planted) if g not in base]
    assert sorted(groups) == [[3, n, n + 1], [10, n + 2]]


def test_perceptual_hash_equals_imagehash(sample):
    hashes = eda.perceptual_hashes(sample.take(range(5)))
    for h, img in zip(hashes, sample.images[:5]):
        assert f"{int(h):016x}" == str(imagehash.phash(Image.fromarray(img[0].numpy())))


def _jpeg(img, quality):
    buf = io.BytesIO()
    Image.fromarray(img[0].numpy()).save(buf, "JPEG", quality=quality)
    return torch.from_numpy(np.array(Image.open(buf)))[None]


def test_near_duplicates_finds_recompressed_and_brightened_copies(sample):
    n = len(sample)
    recompressed = _jpeg(sample.images[7], quality=90)
    brighter = (sample.images[20].int() + 12).clamp(max=255).to(torch.uint8)
    planted = _with(sample, torch.stack([recompressed, brighter]), sample.labels[[7, 20]])
    assert not any(n in g or n + 1 in g for g in eda.exact_duplicates(planted)), "a content hash misses them"
    pairs = {(i, j) for i, j, _ in eda.near_duplicates(planted)}
    assert (7, n) in pairs and (20, n + 1) in pairs
    with pytest.raises(ValueError, match="0..64"):
        eda.near_duplicates(sample, max_distance=65)


def test_hash_pairs_match_brute_force():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, 300, dtype=np.uint64)
    a[50] = a[10] ^ np.uint64(0b1011)  # distance 3
    a[51] = a[10]
    b = a[[10, 200]] ^ np.uint64(1)
    ham = lambda x, y: bin(int(x) ^ int(y)).count("1")  # noqa: E731
    within = {(i, j, ham(a[i], a[j])) for i in range(300) for j in range(i + 1, 300) if ham(a[i], a[j]) <= 4}
    assert set(eda._hash_pairs(a, None, 4)) == within
    across = {(i, j, ham(a[i], b[j])) for i in range(300) for j in range(2) if ham(a[i], b[j]) <= 4}
    assert set(eda._hash_pairs(a, b, 4)) == across and len(across) >= 4


def test_leakage_between_splits(sample):
    train, val = data.split(sample, 0.3, seed=0)
    base = eda.leakage(train, val)
    leaky = _with(val, train.images[[5]], train.labels[[5]])
    assert set(eda.leakage(train, leaky)) - set(base) == {(5, len(val))}
    resaved = _with(val, _jpeg(train.images[9], quality=90)[None], train.labels[[9]])
    assert (9, len(val)) not in eda.leakage(train, resaved)
    assert (9, len(val)) in eda.leakage(train, resaved, max_distance=4)


def test_plots_draw_one_panel_per_item(sample):
    fig = plot.class_grid(sample, per_class=4)
    assert len(fig.axes) == 10 * 4 and fig.axes[0].get_ylabel() == "T-shirt/top"
    fig = plot.class_means(sample)
    assert [ax.get_title() for ax in fig.axes] == sample.classes
    mean0 = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(mean0, sample.images[sample.labels == 0].float().mean(0)[0].numpy() / 255, rtol=1e-5)
    dark = sample.images[0] // 4
    fig = plot.show_images([dark, np.zeros((4, 4, 3)), dark.float() / 255], ["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert fig.axes[0].images[0].get_clim() == (0, 255), "a dark uint8 image is not stretched to its own range"
    assert fig.axes[2].images[0].get_clim() == (0.0, 1.0)
