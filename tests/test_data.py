import io
import shutil
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from PIL import Image

from cvlab import config, data, eda

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def fashion():
    return {split: data.load("fashion_mnist", split) for split in ("train", "test")}


@pytest.fixture
def offline_root(monkeypatch, tmp_path):
    """An empty data root, no Debian files and no downloads: only the embedded sample is left."""
    monkeypatch.setenv("CVLAB_DATA", str(tmp_path))
    monkeypatch.setenv("CVLAB_OFFLINE", "1")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-here")
    return tmp_path


# --- named datasets ---------------------------------------------------------------------------

def test_fashion_mnist_full_sizes_and_classes(fashion):
    train, test = fashion["train"], fashion["test"]
    assert "sample" not in train.source, "the full Fashion-MNIST is needed: apt-get install dataset-fashion-mnist"
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == FASHION_CLASSES
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_fashion_mnist_from_debian_files_then_cache(monkeypatch, tmp_path, fashion):
    debian = tmp_path / "debian"
    shutil.copytree(data.DEBIAN_FASHION_MNIST, debian)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setenv("CVLAB_OFFLINE", "1")
    first = data.load("fashion_mnist", "test", root=tmp_path / "root")
    assert first.source.startswith("Debian package files")
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    shutil.rmtree(debian)  # the cache must now be enough on its own
    second = data.load("fashion_mnist", "test", root=tmp_path / "root")
    assert second.source.startswith("cache")
    assert torch.equal(second.images, fashion["test"].images) and torch.equal(second.labels, fashion["test"].labels)


def test_fashion_mnist_tries_download_before_the_sample(monkeypatch, offline_root):
    monkeypatch.delenv("CVLAB_OFFLINE")
    calls = []
    monkeypatch.setattr(data, "_try_torchvision", lambda cls, root, train, download: calls.append(download))
    with pytest.warns(UserWarning, match="embedded"):
        data.load("fashion_mnist", "train")
    assert calls == [False, True]  # the cache, then a download


def test_fashion_mnist_falls_back_to_embedded_sample(offline_root, fashion):
    with pytest.warns(UserWarning, match="embedded 2000-image sample"):
        train = data.load("fashion_mnist", "train")
    with pytest.warns(UserWarning, match="embedded 1000-image sample"):
        test = data.load("fashion_mnist", "test")
    assert train.images.shape == (2000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [200] * 10 and torch.bincount(test.labels).tolist() == [100] * 10
    assert train.classes == FASHION_CLASSES
    # the sample is made from the real data: every image and its label are in the full split
    full = dict(zip(eda.content_hashes(fashion["train"]), fashion["train"].labels.tolist()))
    assert all(full.get(h) == y for h, y in zip(eda.content_hashes(train), train.labels.tolist()))


def test_fashion_mnist_with_no_source_explains_three_ways(monkeypatch, offline_root):
    monkeypatch.setattr(config, "REPO_ROOT", None)
    with pytest.raises(RuntimeError, match=r"(?s)Three ways.*1\. connect.*2\. copy.*3\. set CVLAB_DATA.*apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist")


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_other_datasets_offline_say_how_to_get_them(offline_root, name):
    with pytest.raises(RuntimeError, match=rf"could not load dataset '{name}'(?s:.*)Three ways"):
        data.load(name, "train")


def test_mnist_loads_from_torchvision_cache_layout(monkeypatch, tmp_path, fashion):
    # MNIST and Fashion-MNIST share file names and format, so Fashion-MNIST's files stand in for MNIST's cache
    data.load("fashion_mnist", "test", root=tmp_path)
    shutil.copytree(tmp_path / "FashionMNIST", tmp_path / "MNIST")
    monkeypatch.setenv("CVLAB_OFFLINE", "1")
    mnist = data.load("mnist", "test", root=tmp_path)
    assert mnist.images.shape == (10_000, 1, 28, 28) and mnist.classes[0] == "0 - zero"


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="known datasets: cifar10, fashion_mnist, mnist"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        data.load("fashion_mnist", "validation")


def test_image_dataset_rejects_bad_tensors():
    imgs = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        data.ImageDataset(imgs.float(), torch.zeros(4, dtype=torch.long), ["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        data.ImageDataset(imgs, torch.zeros(3, dtype=torch.long), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        data.ImageDataset(imgs, torch.tensor([0, 1, 2, 0]), ["a", "b"])


# --- image folders ----------------------------------------------------------------------------

def _save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    _save(root / "cat" / "gray.png", rng.integers(0, 256, (40, 30), dtype=np.uint8))
    _save(root / "cat" / "rgb.jpg", rng.integers(0, 256, (50, 50, 3), dtype=np.uint8), quality=95)
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red hidden under full transparency
    _save(root / "dog" / "clear.png", rgba)
    _save(root / "dog" / "deep.png", np.full((16, 16), 65535, dtype=np.uint16))
    return root


def test_image_folder_decodes_modes_and_resizes(folder):
    ds = data.image_folder(folder, size=(12, 20))
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.images.shape == (4, 3, 12, 20) and ds.images.dtype == torch.uint8  # colour present -> RGB
    assert [p.rsplit("/", 1)[1] for p in ds.paths] == ["gray.png", "rgb.jpg", "clear.png", "deep.png"]
    assert (ds.images[2] == 255).all(), "transparent pixels are composited on white"
    assert (ds.images[3] == 255).all(), "16-bit 65535 is full white"
    gray = ds.images[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_image_folder_gray_only_gives_one_channel(tmp_path):
    for c in ("a", "b"):
        _save(tmp_path / c / "x.png", np.full((10, 10), 7 if c == "a" else 9, dtype=np.uint8))
    ds = data.image_folder(tmp_path, size=8)
    assert ds.images.shape == (2, 1, 8, 8) and ds.images[0].unique().tolist() == [7]
    assert data.image_folder(tmp_path, size=8, channels=3).images.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "text"])
def test_image_folder_bad_file_names_the_file(folder, kind):
    # "text": a text file with an image extension (without one it is skipped, not decoded)
    bad = folder / "dog" / {"corrupt": "bad.png", "truncated": "half.jpg", "text": "notes.png"}[kind]
    if kind == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
        bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    else:
        bad.write_text("not an image")
    with pytest.raises(ValueError, match=rf"{bad.name}: cannot decode as an image.*on_error='skip'"):
        data.image_folder(folder, size=8)
    with pytest.warns(UserWarning, match=f"skipped .*{bad.name}"):
        ds = data.image_folder(folder, size=8, on_error="skip")
    assert len(ds) == 4 and [p for p, _ in ds.skipped] == [str(bad)]


def test_image_folder_structure_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.image_folder(tmp_path)
    _save(tmp_path / "only" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="only one class sub-folder \\('only'\\)"):
        data.image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no readable images"):
        data.image_folder(tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        data.image_folder(tmp_path, on_error="ignore")


def _one_warning(fn, *args, **kw):
    """``fn``'s result and the one warning it gave (fails on none or several)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kw)
    assert len(caught) == 1, [str(w.message) for w in caught]
    return out, str(caught[0].message)


def test_image_folder_skips_non_image_files_with_one_summary_warning(folder):
    others = ["cat/README.txt", "cat/Thumbs.db", "dog/desc.json", "dog/notes.md"]
    for name in others + ["cat/.DS_Store"]:
        (folder / name).write_bytes(b"not an image")
    _save(folder / "dog" / ".thumbnails" / "x.png", np.zeros((4, 4), np.uint8))  # hidden folder: skipped silently
    ds, message = _one_warning(data.image_folder, folder, size=8)
    assert len(ds) == 4 and ds.labels.tolist() == [0, 0, 1, 1]
    assert message.startswith(f"skipped 4 non-image files in {folder}/ "
                              "(cat/README.txt, cat/Thumbs.db, dog/desc.json and 1 more)")
    assert [p for p, _ in ds.skipped] == [str(folder / n) for n in others]
    loader, message_again = _one_warning(data.dataloader, folder, size=8)  # the folder loader skips the same files
    assert message_again == message and len(loader.dataset) == 4 and loader.dataset.skipped == ds.skipped


def test_dataloader_folder_without_transform_yields_uint8_batches(tmp_path, folder):
    rng = np.random.default_rng(2)
    same = tmp_path / "same"
    for c in ("a", "b"):
        for i in range(3):
            _save(same / c / f"{i}.png", rng.integers(0, 256, (10, 12), dtype=np.uint8))
    loader = data.dataloader(same, batch_size=6)
    x, y = next(iter(loader))
    assert x.dtype == torch.uint8 and x.shape == (6, 1, 10, 12) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(x, data.image_folder(same, size=(10, 12)).images)
    assert loader.pin_memory == torch.cuda.is_available()
    assert data.dataloader(same, pin_memory=False).pin_memory is False
    xw = torch.cat([xb for xb, _ in data.dataloader(same, batch_size=2, num_workers=2)])  # worker processes too
    assert torch.equal(xw, x)

    with pytest.raises(ValueError, match=r"different shapes \(C x H x W\): 1x16x16, 1x40x30, 3x16x16, 3x50x50\. Pass size="):
        next(iter(data.dataloader(folder, batch_size=4)))
    x, y = next(iter(data.dataloader(folder, batch_size=4, size=(12, 20), channels=3)))
    assert torch.equal(x, data.image_folder(folder, size=(12, 20), channels=3).images) and y.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="size and channels are for image folders"):
        data.dataloader(data.image_folder(same, size=4), size=8)

    bad = folder / "dog" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    with pytest.raises(ValueError, match=rf"{bad}: cannot decode as an image"):
        list(data.dataloader(folder, batch_size=4, size=8))


def _write_kind(path, kind, rng):
    """Write one test file of ``kind``; returns the uint8 array cvlab should decode it to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "gray":
        a = rng.integers(0, 256, (9, 7), dtype=np.uint8)
        Image.fromarray(a).save(path)
        return a
    if kind == "gray16":
        a = rng.integers(0, 256, (9, 7), dtype=np.uint8)
        Image.fromarray(a.astype(np.uint16) * 257 + 100).save(path)  # +100 of 257 rounds back down
        return a
    if kind == "jpeg":
        Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(path, quality=90)
        return np.asarray(Image.open(path).convert("RGB"))
    if kind in ("rgba", "la"):
        c = 3 if kind == "rgba" else 1
        a = rng.integers(0, 256, (9, 7, c + 1), dtype=np.uint8)
        a[..., -1] = np.where(np.arange(7) % 2, 255, 0)  # every other column fully transparent
        Image.fromarray(a).save(path)
        expected = np.where(a[..., -1:] == 0, 255, a[..., :c])
        return expected if c == 3 else expected[..., 0]
    if kind == "palette":
        palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
        index = rng.integers(0, 4, (9, 7), dtype=np.uint8)
        im = Image.frombytes("P", (7, 9), index.tobytes())
        im.putpalette(palette.flatten().tolist())
        im.save(path, transparency=0)  # colour 0 is transparent
        return np.where(index[..., None] == 0, 255, palette[index])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["gray", "gray16", "jpeg", "rgba", "la", "palette"])
def test_every_reader_decodes_a_file_to_the_same_array(tmp_path, kind):
    from cvlab import cache
    rng = np.random.default_rng(3)
    f = tmp_path / "a" / ("x.jpg" if kind == "jpeg" else "x.png")
    expected = _write_kind(f, kind, rng)
    _save(tmp_path / "b" / "y.png", np.zeros((5, 5), np.uint8))  # a second class, as image folders need
    arr = data.read_image(f)
    assert arr.dtype == np.uint8 and np.array_equal(arr, expected)
    assert arr.ndim == (2 if kind in ("gray", "gray16", "la") else 3)
    chw = torch.from_numpy(arr).unsqueeze(0) if arr.ndim == 2 else torch.from_numpy(arr).permute(2, 0, 1)
    ds = data.image_folder(tmp_path, size=arr.shape[:2], channels=len(chw))  # a size equal to the file's: no resizing
    assert torch.equal(ds.images[0], chw)
    x, _ = next(iter(data.dataloader(tmp_path, batch_size=1)))
    assert torch.equal(x[0], chw)
    assert np.array_equal(cache.decode(f), arr) and np.array_equal(cache.DecodeCache()(f), arr)
    assert np.array_equal(cache.cached_image_folder(tmp_path)[0][0], arr)


def test_augment_takes_what_the_cache_decodes_from_16_bit(tmp_path):
    from cvlab import augment, cache
    f = tmp_path / "deep.png"
    Image.fromarray(np.full((6, 5), 65535, dtype=np.uint16)).save(f)
    assert Image.open(f).mode.startswith("I")  # really a 16-bit file
    out = augment.pipeline("none")(cache.decode(f))
    assert out.shape == (1, 6, 5) and torch.equal(out, torch.ones(1, 6, 5))


def test_image_files_expands_files_and_folders(folder, tmp_path):
    (folder / "cat" / "README.txt").write_text("not an image")
    single = tmp_path / "one.JPG"  # upper-case extensions count too
    _save(single, np.zeros((4, 4, 3), np.uint8))
    assert data.image_files(single, str(folder)) == [single] + [folder / n for n in (
        "cat/gray.png", "cat/rgb.jpg", "dog/clear.png", "dog/deep.png")]
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        data.image_files(folder, tmp_path / "missing.png")
    with pytest.raises(ValueError, match="README.txt is not an image file"):
        data.image_files(folder / "cat" / "README.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files in .*empty"):
        data.image_files(tmp_path / "empty")


def test_load_images_resizes_exactly_as_image_folder(folder):
    ds = data.image_folder(folder, size=(12, 20))
    files = data.image_files(folder)
    assert [str(f) for f in files] == ds.paths
    for channels in (3, None):
        assert torch.equal(data.load_images(files, size=(12, 20), channels=channels), ds.images)
    gray = data.image_folder(folder, size=9, channels=1).images
    assert torch.equal(data.load_images(files, size=9, channels=1), gray)
    assert torch.equal(data.load_images(str(files[0]), size=9, channels=1), gray[:1])
    bad = folder / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.png: cannot decode as an image"):
        data.load_images([files[0], bad], size=9, channels=1)


# --- splits and subsets -----------------------------------------------------------------------

def _toy(counts):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.arange(len(labels), dtype=torch.int64).remainder(256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    return data.ImageDataset(images.contiguous(), labels, [f"c{i}" for i in range(len(counts))])


def test_split_stratified_keeps_class_shares():
    ds = _toy([400, 100, 20])
    train, val = data.split(ds, 0.25, seed=3)
    assert torch.bincount(val.labels).tolist() == [100, 25, 5]
    assert torch.bincount(train.labels).tolist() == [300, 75, 15]
    ids = lambda d: set(d.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert len(train) + len(val) == len(ds)
    again, _ = data.split(ds, 0.25, seed=3)
    assert torch.equal(again.labels, train.labels) and torch.equal(again.images, train.images)
    assert ids(train) | ids(val) == ids(ds)
    with pytest.raises(ValueError, match="val_fraction"):
        data.split(ds, 1.5)


def test_subset_balanced_and_total():
    ds = _toy([50, 30, 40])
    assert torch.bincount(data.subset(ds, n_per_class=10).labels).tolist() == [10, 10, 10]
    assert len(data.subset(ds, n=17)) == 17
    with pytest.raises(ValueError, match="smallest class has 30"):
        data.subset(ds, n_per_class=31)
    with pytest.raises(ValueError, match="exactly one"):
        data.subset(ds, 5, n=5)


# --- the tensor-resident loader ---------------------------------------------------------------

@pytest.fixture(scope="module")
def small(fashion):
    return data.subset(fashion["test"], n=300, seed=1)


def test_loader_plain_pass_returns_the_data_in_order(small):
    loader = data.TensorLoader(small, batch_size=64, device="cpu")
    batches = list(loader)
    assert len(loader) == len(batches) == 5 and batches[-1][0].shape == (300 - 256, 1, 28, 28)
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and torch.equal((x * 255).round(), small.images.float())
    assert torch.equal(torch.cat([b[1] for b in batches]), small.labels)
    assert len(data.TensorLoader(small, batch_size=64, drop_last=True, device="cpu")) == 4


def test_loader_shuffle_is_a_seeded_permutation_per_epoch(small):
    loader = data.TensorLoader(small, batch_size=100, shuffle=True, device="cpu", seed=5)
    epoch0 = torch.cat([y for _, y in loader])
    epoch1 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == sorted(small.labels.tolist())
    assert not torch.equal(epoch0, epoch1)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in loader]), epoch0)


def test_pad_crop_matches_torchvision_crop_of_padded_image(small):
    x = small.images[:16]
    dy, dx = torch.randint(0, 9, (2, 16), generator=torch.Generator().manual_seed(0))
    flip = torch.arange(16) % 3 == 0
    crops = [TF.crop(TF.pad(img, [4]), int(i), int(j), 28, 28) for img, i, j in zip(x, dy, dx)]
    assert torch.equal(data.pad_crop(x, 4, dy, dx), torch.stack(crops))
    mirrored = [TF.horizontal_flip(c) if f else c for c, f in zip(crops, flip)]
    assert torch.equal(data.pad_crop(x, 4, dy, dx, flip), torch.stack(mirrored))
    rgb = torch.randint(0, 256, (4, 3, 5, 7), dtype=torch.uint8)
    assert torch.equal(data.pad_crop(rgb, 0, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long),
                                     torch.tensor([True, False, True, False])),
                       torch.stack([rgb[0].flip(-1), rgb[1], rgb[2].flip(-1), rgb[3]]))


def test_loader_augmentation_gives_flips_and_crops_of_each_image(small):
    loader = data.TensorLoader(small, batch_size=300, device="cpu", flip=True, pad_crop=2)
    x, _ = next(iter(loader))
    x = (x * 255).round().to(torch.uint8)
    padded = TF.pad(small.images, [2])
    candidates = torch.stack([TF.crop(padded, i, j, 28, 28) for i in range(5) for j in range(5)])  # (25, N, 1, 28, 28)
    candidates = torch.cat([candidates, candidates.flip(-1)])
    match = (candidates == x[None]).flatten(2).all(-1)  # (50, N): which crop/flip each output is
    assert match.any(0).all(), "every output is a flip and/or pad-crop of its own image"
    flipped = match[25:].any(0) & ~match[:25].any(0)
    assert 0.3 < flipped.float().mean() < 0.7


def test_loader_normalization_equals_torchvision(small):
    loader = data.TensorLoader(small, batch_size=300, device="cpu", mean=[0.2860], std=[0.3530])
    x, _ = next(iter(loader))
    ref = T.Normalize([0.2860], [0.3530])(small.images.float() / 255)
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="one value per channel"):
        data.TensorLoader(small, device="cpu", mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="both mean and std"):
        data.TensorLoader(small, device="cpu", mean=[0.5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_on_cuda_matches_cpu(small):
    cpu = next(iter(data.TensorLoader(small, batch_size=300, device="cpu", mean=[0.5], std=[0.25])))[0]
    gpu = next(iter(data.TensorLoader(small, batch_size=300, device="cuda", mean=[0.5], std=[0.25])))[0]
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_torch_dataloader_path_for_memory_and_folders(small, folder):
    loader = data.dataloader(small, batch_size=50, transform=T.ToDtype(torch.float32, scale=True))
    x, y = next(iter(loader))
    assert x.shape == (50, 1, 28, 28) and torch.equal((x * 255).round(), small.images[:50].float())
    folder_loader = data.dataloader(folder, batch_size=4, transform=T.Compose([T.ToImage(), T.Resize((8, 8))]))
    xb, yb = next(iter(folder_loader))
    assert xb.shape == (4, 3, 8, 8) and yb.tolist() == [0, 0, 1, 1]
    with pytest.raises(FileNotFoundError):
        data.dataloader(folder / "nope")


# --- sample photos ----------------------------------------------------------------------------

def test_sample_images_are_real_photos():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shapes = {name: data.sample_image(name).shape for name in data.SAMPLE_IMAGES}
    assert shapes["chelsea"] == (300, 451, 3) and shapes["camera"] == (512, 512) and shapes["logo"][-1] == 4
    assert shapes["china"] == (427, 640, 3)
    assert data.sample_image("coffee").dtype == np.uint8 and data.sample_image("coffee").std() > 20
    with pytest.raises(ValueError, match="choose one of: astronaut"):
        data.sample_image("lena")
