"""The general core: preprocessing that travels with the model, checkpoints that rebuild it, device
placement of the loss, host-side label checks, weight-decay groups, validation splits in the recipe."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cvlab
from cvlab import data as cvdata
from cvlab.callbacks import Checkpoint
from cvlab.preprocess import Preprocess
from cvlab.train import evaluate, fit, predict

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(1024))


def quiet(**kw):
    return dict(progress=False, device="cpu", **kw)


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(8 * 7 * 7, num_classes))


# ---------------------------------------------------------------------------------------------
# Preprocess
# ---------------------------------------------------------------------------------------------

def test_preprocess_equals_the_formula():
    x = torch.randint(0, 256, (4, 3, 10, 12), dtype=torch.uint8)
    pre = Preprocess(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    expected = (x.float() / 255 - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(pre(x), expected, atol=1e-6)
    assert torch.equal(Preprocess()(x), x.float() / 255)
    floats = x.float() / 255
    assert torch.allclose(pre(floats), expected, atol=1e-6) and torch.equal(floats, x.float() / 255)  # input untouched


def test_preprocess_resizes_and_adapts_channels():
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    pre = Preprocess(size=(56, 40), channels=3, channels_last=True)
    out = pre(gray)
    ref = F.interpolate((gray.float() / 255).repeat(1, 3, 1, 1), size=(56, 40), mode="bilinear", antialias=True)
    assert out.shape == (2, 3, 56, 40) and torch.allclose(out, ref, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(Preprocess(channels=1)(rgb), (rgb.float() / 255).mean(1, keepdim=True))
    assert Preprocess.from_dict(pre.to_dict()) == pre
    bicubic = Preprocess(size=(56, 40), interpolation="bicubic")(gray)  # what some pretrained weights ask for
    ref = F.interpolate(gray.float() / 255, size=(56, 40), mode="bicubic", antialias=True)
    assert torch.allclose(bicubic, ref, atol=1e-6) and not torch.allclose(bicubic, out[:, :1], atol=1e-3)


def test_preprocess_refuses_bad_settings():
    with pytest.raises(ValueError, match="both mean and std"):
        Preprocess(mean=(0.5,))
    with pytest.raises(ValueError, match="one value per channel \\(3\\)"):
        Preprocess(mean=(0.5,), std=(0.5,), channels=3)
    with pytest.raises(ValueError, match="std must be positive"):
        Preprocess(mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match="interpolation must be 'bilinear' or 'bicubic'; got 'nearest'"):
        Preprocess(interpolation="nearest")
    with pytest.raises(ValueError, match="trained on 3-channel images; got 2"):
        Preprocess(channels=3)(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))


def test_tensor_loader_batches_go_through_its_preprocess(fmnist):
    loader = cvdata.TensorLoader(fmnist, batch_size=100, device="cpu", mean=[0.3], std=[0.35])
    x, _ = next(iter(loader))
    assert loader.preprocess == Preprocess(mean=(0.3,), std=(0.35,), size=(28, 28), channels=1)
    assert torch.allclose(x, (fmnist.images[:100].float() / 255 - 0.3) / 0.35, atol=1e-6)


def test_evaluate_on_raw_images_uses_the_training_normalization(fmnist):
    """A model trained on a normalized loader was evaluated on unnormalized images before fit recorded its preprocessing."""
    torch.manual_seed(0)
    model = tiny_cnn()
    loader = cvdata.TensorLoader(fmnist, batch_size=64, shuffle=True, device="cpu", mean=[0.5], std=[0.1])
    fit(model, loader, epochs=1, lr=0.05, **quiet())
    assert model.preprocess.mean == (0.5,) and model.preprocess.std == (0.1,)
    by_dataset = evaluate(model, fmnist)
    normalized = cvdata.TensorLoader(fmnist, batch_size=512, device="cpu", mean=[0.5], std=[0.1])
    by_loader = evaluate(model, normalized)
    assert torch.allclose(by_dataset["probabilities"], by_loader["probabilities"], atol=1e-6)
    raw = evaluate(model, cvdata.TensorLoader(fmnist, batch_size=512, device="cpu"))  # what it used to be fed
    assert not torch.allclose(raw["probabilities"], by_loader["probabilities"], atol=1e-3)
    assert torch.allclose(predict(model, fmnist.images), by_loader["probabilities"], atol=1e-6)


def test_explanations_feed_raw_images_as_the_model_was_trained(fmnist):
    from cvlab.explain import attention_maps, feature_maps, gradcam
    torch.manual_seed(0)
    cnn = cvlab.models.create("small_resnet", num_classes=10, in_chans=1)
    fit(cnn, cvdata.TensorLoader(fmnist.take(range(256)), batch_size=64, device="cpu", mean=[0.3], std=[0.35]),
        epochs=1, **quiet())
    raw = fmnist.images[:4]
    prepared = (raw.float() / 255 - 0.3) / 0.35
    assert torch.allclose(gradcam(cnn, "stages.1", raw), gradcam(cnn, "stages.1", prepared), atol=1e-5)
    assert torch.allclose(feature_maps(cnn, "stem", raw), feature_maps(cnn, "stem", prepared), atol=1e-5)
    vit = cvlab.models.create("vit_tiny_28", num_classes=10, in_chans=1)
    vit.preprocess = Preprocess(mean=(0.3,), std=(0.35,))
    assert torch.allclose(attention_maps(vit, raw), attention_maps(vit, prepared), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The loop: devices, autocast, labels, weight decay
# ---------------------------------------------------------------------------------------------

class MovedLoss(nn.CrossEntropyLoss):
    """A weighted cross-entropy that records where fit moved it."""

    def __init__(self, weight):
        super().__init__(weight=weight)
        self.moves = []

    def _apply(self, fn, recurse=True):
        self.moves.append(fn(torch.zeros(())).device)
        return super()._apply(fn, recurse)


def test_fit_moves_a_weighted_loss_to_the_device(fmnist):
    """On CUDA a class-weight tensor left on the CPU crashed the first step; fit now moves the loss module."""
    loss = MovedLoss(cvlab.imbalance.class_weights(fmnist.labels))
    fit(tiny_cnn(), fmnist.take(range(128)), epochs=1, loss_fn=loss, **quiet())
    assert loss.moves == [torch.device("cpu")]


def test_batch_transform_runs_under_autocast(fmnist):
    seen = []

    def transform(x, y):
        seen.append(torch.is_autocast_enabled("cpu"))
        return x, y
    fit(tiny_cnn(), fmnist.take(range(128)), epochs=1, batch_transform=transform, amp="bf16", **quiet())
    assert seen and all(seen)


def test_a_bad_label_after_the_first_batch_of_a_dataloader_is_named(fmnist):
    items = [(fmnist.images[i].float() / 255, 12 if i == 40 else int(fmnist.labels[i])) for i in range(64)]
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"batch 3 of epoch 1: labels must lie in \[0, 10\) .* 1 do not \(min \d+, max 12\)"):
        fit(model, torch.utils.data.DataLoader(items, batch_size=16), epochs=1, num_classes=10, **quiet())


def test_weight_decay_spares_biases_and_norm_parameters():
    model = tiny_cnn()
    opt = cvlab.schedules.make_optimizer("nesterov", model, lr=0.1, weight_decay=5e-4)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names == {"0.weight", "5.weight"}  # the conv kernel and the linear weight; not BN, not biases
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_fast_kernels_is_an_explicit_switch():
    cvlab.config.fast_kernels(True)
    try:
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
    finally:
        cvlab.config.fast_kernels(False)
    assert not torch.backends.cudnn.benchmark and not torch.backends.cuda.matmul.allow_tf32


# ---------------------------------------------------------------------------------------------
# Checkpoints that rebuild their model; what they refuse
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fmnist):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = cvlab.models.create("small_resnet", num_classes=10, in_chans=1)
    train, val = cvdata.split(fmnist.take(range(512)), 0.25)
    loader = cvdata.TensorLoader(train, batch_size=64, shuffle=True, device="cpu", mean=[0.29], std=[0.35])
    fit(model, loader, val, epochs=2, lr=0.05, callbacks=[Checkpoint(out)], **quiet())
    return out, model


def test_load_rebuilds_the_model_with_its_preprocessing_and_classes(trained_run, fmnist):
    out, model = trained_run
    loaded = cvlab.load(out / "last.pt")
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.classes == fmnist.classes and loaded.preprocess == model.preprocess
    assert loaded.preprocess.mean == (0.29,) and loaded.preprocess.size == (28, 28)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    images = fmnist.images[600:700]
    assert torch.allclose(predict(loaded, images), predict(model, images), atol=1e-6)


def test_load_refuses_a_model_it_cannot_rebuild(fmnist, tmp_path):
    fit(tiny_cnn(), fmnist.take(range(128)), epochs=1, callbacks=[Checkpoint(tmp_path, monitor=None)], **quiet())
    with pytest.raises(ValueError, match=r"last\.pt does not say how to build its model"):
        cvlab.load(tmp_path / "last.pt")


def test_truncated_and_foreign_checkpoints_are_named(trained_run, tmp_path):
    out, model = trained_run
    data = (out / "last.pt").read_bytes()
    cut = tmp_path / "last.pt"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"last\.pt .* cannot be read as a checkpoint.*truncated"):
        cvlab.load(cut)
    foreign = tmp_path / "weights.pt"
    torch.save(model.state_dict(), foreign)
    with pytest.raises(ValueError, match=r"weights\.pt is not a cvlab checkpoint.*load_state_dict"):
        cvlab.load(foreign)
    with pytest.raises(ValueError, match=r"cannot be read as a checkpoint"):
        fit(tiny_cnn(), (torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long)),
            epochs=1, resume=cut, **quiet())


@pytest.mark.parametrize("change", ["batch_size", "dataset_size", "model"])
def test_resume_refuses_a_different_run(fmnist, tmp_path, change):
    def run(batch_size=32, n=256, width=(8, 32, 64, 128), resume=False):
        model = cvlab.models.create("small_resnet", num_classes=10, in_chans=1, widths=width)
        return fit(model, fmnist.take(range(n)), epochs=2, batch_size=batch_size, resume=resume,
                   callbacks=[Checkpoint(tmp_path, monitor=None)], **quiet())
    run()
    other = {"batch_size": dict(batch_size=64), "dataset_size": dict(n=320), "model": dict(width=(8, 16, 32, 64))}[change]
    expected = {"batch_size": "batch_size 32 -> 64", "dataset_size": "dataset_size 256 -> 320", "model": "model "}[change]
    with pytest.raises(ValueError, match=rf"last\.pt is from a different run: .*{expected}"):
        run(resume=True, **other)


# ---------------------------------------------------------------------------------------------
# The recipe and the command line
# ---------------------------------------------------------------------------------------------

def test_recipe_chooses_best_on_a_validation_split_not_the_test_set(monkeypatch, tmp_path):
    seen = {}
    real_fit = cvlab.train.fit

    def spy(model, train, val=None, **kw):
        seen["train"], seen["val"] = train, val
        return real_fit(model, train, val, **kw)
    monkeypatch.setattr(cvlab.recipes.train, "fit", spy)
    result = cvlab.recipes.run(quick=True, epochs=1, out=tmp_path, progress=False)
    val, n_train = seen["val"], len(seen["train"].labels)
    assert val is not None and len(val) + n_train == cvlab.recipes.QUICK_SIZES["n_train"]
    assert len(val) == cvlab.recipes.QUICK_SIZES["n_train"] // 10
    # stratified: every class in the same share
    counts = np.bincount(val.labels.numpy(), minlength=10)
    assert counts.min() >= 15 and counts.max() <= 25
    test = cvdata.load("fashion_mnist", "test")
    test_rows = {bytes(img.numpy()) for img in test.images}
    assert not any(bytes(img.numpy()) in test_rows for img in val.images[:50])  # drawn from train, not test
    assert result["test"]["accuracy"] > 0.3 and (tmp_path / "best.pt").is_file()


def write_folder(root: Path, fmnist, classes=(0, 1, 7), per_class: int = 40, offset: int = 0) -> Path:
    """Fashion-MNIST images as PNG files, one sub-folder per class, with clutter a real folder has."""
    from PIL import Image
    for c in classes:
        d = root / fmnist.classes[c].replace("/", "-")
        d.mkdir(parents=True)
        idx = (fmnist.labels == c).nonzero().flatten()[offset:offset + per_class]
        for i in idx.tolist():
            Image.fromarray(fmnist.images[i, 0].numpy()).save(d / f"{i}.png")
        (d / "Thumbs.db").write_bytes(b"\0" * 10)
    (root / "README.txt").write_text("my photos\n")
    return root


def cli(*args, timeout=300):
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "CVLAB_QUICK": "0", "OMP_NUM_THREADS": "2",
           "PYTHONPATH": str(HERE.parent)}
    return subprocess.run([sys.executable, "-m", "cvlab", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_command_line_trains_evaluates_and_predicts_on_an_image_folder(tmp_path, fmnist):
    photos = write_folder(tmp_path / "photos", fmnist)
    held_out = write_folder(tmp_path / "held_out", fmnist, per_class=15, offset=40)
    out = tmp_path / "run"
    done = cli("train", "--data", photos, "--model", "small_resnet", "--size", 28, "--epochs", 6,
               "--batch-size", 16, "--lr", 0.05, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation accuracy" in done.stdout and (out / "best.pt").is_file()
    model = cvlab.load(out / "best.pt")
    assert model.classes == sorted(p.name for p in photos.iterdir() if p.is_dir())

    done = cli("evaluate", out / "best.pt", "--data", held_out)
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(done.stdout.split("accuracy ")[-1].split("%")[0]) / 100
    assert accuracy > 0.6, done.stdout  # three easy classes (T-shirt, trouser, sneaker), 45 unseen images
    assert (out / "confusion_matrix_eval.png").stat().st_size > 0

    files = sorted(held_out.rglob("*.png"))
    done = cli("predict", out / "best.pt", files[0], held_out / model.classes[1], "--csv", tmp_path / "p.csv")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 1 + 15 and rows[0]["file"] == str(files[0])
    paths = [Path(r["file"]) for r in rows]
    probs = predict(model, cvdata.load_images(paths, size=(28, 28), channels=1))
    assert [r["class_1"] for r in rows] == [model.classes[i] for i in probs.argmax(1).tolist()]


def test_command_line_names_bad_input(tmp_path):
    done = cli("predict", tmp_path / "missing.pt", tmp_path)
    assert done.returncode == 2 and "missing.pt" in done.stderr and "Traceback" not in done.stderr
