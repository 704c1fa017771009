"""cvlab.deploy and the export/predict command line: ONNX files equal to PyTorch for every zoo model,
int8 accuracy on real data, latency measurement, the model card."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn as nn

import cvlab
from cvlab import data, deploy, models
from cvlab.__main__ import main
from cvlab.preprocess import Preprocess
from cvlab.train import evaluate, predict

from test_models_registry import cheap

ATOL = 1e-4  # |ONNX Runtime - PyTorch| on the logits, relative to their scale: max(1, max |logit|)


@pytest.fixture(scope="module")
def test_set():
    return data.load("fashion_mnist", "test").take(range(3000))


# --- export: every zoo model ---------------------------------------------------------------------

# One model per code path runs in `make test`; the rest of the zoo is marked slow (`make test-full` runs them all).
EXPORT_EVERY_RUN = {"lenet5", "small_resnet_narrow", "resnet18", "mobilenet_v3_small", "efficientnet_lite0",
                    "vit_tiny_28", "deit_tiny_28"}


@pytest.mark.parametrize("name", [n if n in EXPORT_EVERY_RUN else pytest.param(n, marks=pytest.mark.slow)
                                  for n in models.list_models()])
def test_every_zoo_model_exports_with_equal_outputs(name, tmp_path):
    torch.manual_seed(0)
    model = models.create(name, **cheap(name)).eval()
    model.preprocess = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), size=(32, 32), channels=3)
    exported = deploy.export_onnx(model, tmp_path / f"{name}.onnx")
    assert exported.input_shape == ("batch", 3, 32, 32) and exported.bytes == (tmp_path / f"{name}.onnx").stat().st_size
    onnx_model = deploy.OnnxModel(exported.path)
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)  # a batch size the export never saw
    with torch.no_grad():
        expected = model(model.preprocess(x))
    got = onnx_model(x)
    assert got.shape == (5, 5)
    scale = max(1.0, expected.abs().max().item())
    assert np.abs(got - expected.numpy()).max() <= ATOL * scale
    assert exported.max_abs_diff <= ATOL * max(1.0, scale)


def test_an_operator_onnx_lacks_is_named(tmp_path):
    class RunningMax(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return torch.cummax(self.conv(x).flatten(1), dim=1).values

    with pytest.raises(deploy.ExportError, match=r"RunningMax cannot be exported to ONNX: operator aten\.cummax"):
        deploy.export_onnx(RunningMax(), tmp_path / "m.onnx", input_size=(8, 8))
    with pytest.raises(ValueError, match="pass input_size"):
        deploy.export_onnx(nn.Sequential(nn.Conv2d(1, 2, 3)), tmp_path / "m.onnx")


def test_export_leaves_the_model_and_its_preprocess_working(tmp_path, test_set):
    torch.manual_seed(0)
    model = models.create("small_resnet", num_classes=10, in_chans=1).eval()
    model.preprocess = Preprocess(mean=(0.286,), std=(0.353,), size=(28, 28), channels=1)
    images = test_set.images[:64]
    before = predict(model, images)
    deploy.export_onnx(model, tmp_path / "m.onnx")
    torch.testing.assert_close(predict(model, images), before)
    assert next(model.parameters()).requires_grad and not model.training


def test_a_traced_preprocess_keeps_working_eagerly(test_set):
    # Regression: a trace (torch.export, which the ONNX exporter runs; torch.compile) cached placeholder tensors
    # in Preprocess's mean/std cache, and every eager call after it normalized with them (logits off by up to 2).
    class Prepare(nn.Module):
        def __init__(self, pre):
            super().__init__()
            self.pre = pre

        def forward(self, x):
            return self.pre(x)

    pre = Preprocess(mean=(0.3,), std=(0.4,), size=(28, 28), channels=1)
    x = test_set.images[:4]
    torch.export.export(Prepare(pre), (x,))  # traced first, before any eager call filled the cache
    torch.testing.assert_close(pre(x), (x.float() / 255 - 0.3) / 0.4)


def test_onnx_model_refuses_files_it_cannot_feed(tmp_path):
    class Scale(nn.Module):
        def forward(self, x):
            return x * 2

    path = tmp_path / "float_input.onnx"
    torch.onnx.export(Scale().eval(), (torch.zeros(1, 3, 8, 8),), str(path), dynamo=True, external_data=False)
    with pytest.raises(ValueError, match="takes tensor\\(float\\).*uint8 images"):
        deploy.OnnxModel(path)


# --- the exported file at work -------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(fmnist_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = cvlab.load(fmnist_checkpoint)
    return model, deploy.export_onnx(model, folder / "model.onnx")


def test_the_onnx_file_carries_classes_and_preprocessing(exported, test_set):
    model, result = exported
    onnx_model = deploy.OnnxModel(result.path, threads=1)
    assert onnx_model.classes == test_set.classes == model.classes
    assert onnx_model.preprocess == model.preprocess and onnx_model.size == (28, 28) and onnx_model.channels == 1
    assert onnx_model.precision == "float32"
    with pytest.raises(ValueError, match="takes uint8 images"):
        onnx_model(test_set.images[:2].float())


def test_onnx_predicts_as_pytorch_on_real_data(exported, test_set):
    model, result = exported
    ours, theirs = evaluate(model, test_set), deploy.OnnxModel(result.path).evaluate(test_set)
    assert theirs["accuracy"] > 0.8
    assert (ours["predictions"] == theirs["predictions"]).float().mean() >= 0.999
    torch.testing.assert_close(theirs["probabilities"], ours["probabilities"], atol=1e-4, rtol=0)
    torch.testing.assert_close(deploy.OnnxModel(result.path).predict(test_set.images[:10]), ours["probabilities"][:10],
                               atol=1e-4, rtol=0)


def test_onnx_model_resizes_other_sizes_like_preprocess(exported, test_set):
    model, result = exported
    big = torch.nn.functional.interpolate(test_set.images[:16].float(), size=(56, 56), mode="nearest").to(torch.uint8)
    # nearest 2x upsampling, then antialiased bilinear down to 28: the pixels come back within rounding
    got = deploy.OnnxModel(result.path).predict(big)
    torch.testing.assert_close(got, predict(model, big), atol=2e-2, rtol=0)
    assert torch.equal(got.argmax(1), predict(model, big).argmax(1))


@pytest.mark.parametrize("mode, max_drop", [("static", 0.01), ("dynamic", 0.01)])
def test_int8_keeps_accuracy_within_a_point(exported, test_set, tmp_path, mode, max_drop):
    model, result = exported
    train = data.load("fashion_mnist", "train")
    calibration = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:300]]
    path = deploy.quantize(result.path, tmp_path / f"{mode}.onnx", mode=mode, calibration=calibration)
    q = deploy.OnnxModel(path)
    assert q.precision == f"int8 ({mode})" and q.classes == model.classes
    fp32 = deploy.OnnxModel(result.path).evaluate(test_set)["accuracy"]
    int8 = q.evaluate(test_set)
    assert int8["accuracy"] >= fp32 - max_drop  # on 3,000 real test images
    assert deploy.file_size(path) < result.bytes / 2.5  # int8 weights: about a quarter of float32 (plus the graph)


def test_static_quantization_needs_calibration_images(exported, tmp_path):
    with pytest.raises(ValueError, match="calibration images"):
        deploy.quantize(exported[1].path, tmp_path / "q.onnx")
    with pytest.raises(ValueError, match="mode must be"):
        deploy.quantize(exported[1].path, tmp_path / "q.onnx", mode="int4")


def test_load_picks_the_runtime_by_suffix(exported, fmnist_checkpoint):
    assert isinstance(deploy.load(exported[1].path), deploy.OnnxModel)
    assert isinstance(deploy.load(fmnist_checkpoint), nn.Module)
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        deploy.load("missing.onnx")


# --- the command line ----------------------------------------------------------------------------

def test_export_and_predict_round_trip_on_the_command_line(fmnist_checkpoint, test_set, tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(test_set.images[i, 0].numpy()).save(folder / f"{i}.png")
    assert main(["export", str(fmnist_checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    diff = float(re.search(r"max \|onnx - torch\| (\S+)", out).group(1))
    assert diff < 1e-4 and f"wrote {tmp_path / 'm.onnx'}" in out

    rows = {}
    for source in (fmnist_checkpoint, tmp_path / "m.onnx"):
        assert main(["predict", str(source), str(folder), "--csv", str(tmp_path / "p.csv")]) == 0
        capsys.readouterr()
        rows[source.suffix] = [line.split(",")[1] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    model = cvlab.load(fmnist_checkpoint)
    expected = predict(model, data.load_images(data.image_files(folder), size=28, channels=1)).argmax(1)
    assert rows[".pt"] == rows[".onnx"] == [model.classes[i] for i in expected]


def test_export_int8_on_the_command_line_reports_accuracy(fmnist_checkpoint, tmp_path, capsys):
    assert main(["export", str(fmnist_checkpoint), "--onnx", str(tmp_path / "q.onnx"), "--int8",
                 "--calibration", "200", "--keep-float"]) == 0
    out = capsys.readouterr().out
    int8, fp32, same = map(float, re.search(r"accuracy (\S+)% \(float32 PyTorch (\S+)%\), the same prediction for "
                                            r"(\S+)%", out).groups())
    assert int8 >= fp32 - 1.5 and same >= 97 and "calibrated on 200 training images" in out
    assert deploy.OnnxModel(tmp_path / "q.onnx").precision == "int8 (static)"
    assert deploy.OnnxModel(tmp_path / "q.float32.onnx").precision == "float32"


def test_export_refuses_options_it_would_ignore(fmnist_checkpoint, tmp_path, capsys):
    assert main(["export", str(fmnist_checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--keep-float"]) == 2
    assert "only apply with --int8" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_export_refuses_int8_without_calibration_data(tmp_path, capsys):
    model = models.create("small_resnet", num_classes=3, in_chans=1)
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    from cvlab.callbacks import Checkpoint
    from cvlab.train import fit
    ds = data.ImageDataset(images, torch.arange(12) % 3, ["a", "b", "c"])
    fit(model, ds, epochs=1, progress=False, device="cpu", callbacks=[Checkpoint(tmp_path, monitor=None)])
    assert main(["export", str(tmp_path / "last.pt"), "--onnx", str(tmp_path / "q.onnx"), "--int8"]) == 2
    assert "--calibration-data" in capsys.readouterr().err


# --- latency and the model card ------------------------------------------------------------------

def test_measure_keeps_the_cold_call_apart():
    import time
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.05 if len(calls) == 1 else 0.001)

    lat = deploy.measure(fn, warmup=3, min_runs=30, min_time=0.0)
    assert lat.runs == 30 == len(calls) - 3 and len(lat.times_ms) == 30
    assert lat.first_ms >= 50 and 1 <= lat.median_ms < 20 and lat.p95_ms >= lat.median_ms
    assert lat.median_ms == pytest.approx(float(np.median(lat.times_ms)))


def test_model_card_reports_what_the_checkpoint_does(fmnist_checkpoint, test_set, tmp_path):
    card = deploy.model_card(fmnist_checkpoint, test_set, path=tmp_path / "card.md")
    result = evaluate(cvlab.load(fmnist_checkpoint), test_set)
    assert f"Accuracy: **{result['accuracy']:.4f}** on 3,000 images" in card
    rows = [line for line in card.splitlines() if line.startswith("| ") and not line.startswith("| class")]
    assert [r.split(" | ")[0][2:] for r in rows] == test_set.classes
    recall = result["predictions"][result["labels"] == 6].eq(6).float().mean().item()
    assert f"| Shirt | " in card and f"| {recall:.3f} |" in rows[6]
    mistakes = re.findall(r"(\d+): ([^,]+?) -> ([^,(]+?) \((\S+)\)", card.split("Most confident mistakes")[1])
    assert len(mistakes) == 8
    conf = [float(c) for *_, c in mistakes]
    assert conf == sorted(conf, reverse=True)
    for i, true, pred, _ in mistakes:
        i = int(i)
        assert test_set.classes[test_set.labels[i]] == true and result["predictions"][i] != test_set.labels[i]
        assert test_set.classes[result["predictions"][i]] == pred
    assert (tmp_path / "card.md").read_text() == card and card.endswith("![the most confident mistakes](card.failures.png)\n")
    assert (tmp_path / "card.failures.png").stat().st_size > 1000


# --- the app's classify (the browser test drives the page: test_app_browser.py) -----------------

def test_classify_agrees_with_predict_and_explains_with_the_last_conv(fmnist_checkpoint, test_set, tmp_path):
    from PIL import Image

    from cvlab import app
    model = cvlab.load(fmnist_checkpoint)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert app.last_conv(model) is convs[-1]
    f = tmp_path / "x.png"
    Image.fromarray(test_set.images[3, 0].numpy()).save(f)
    top, cam = app.classify(model, f)
    probs = predict(model, test_set.images[3:4])[0]
    assert list(top) == [model.classes[i] for i in probs.topk(5).indices]
    assert list(top.values()) == pytest.approx(probs.topk(5).values.tolist(), abs=1e-6)
    assert cam.shape == (224, 224, 3) and cam.dtype == np.uint8
    onnx_top, onnx_cam = app.classify(deploy.OnnxModel(deploy.export_onnx(model, tmp_path / "m.onnx").path), f)
    assert list(onnx_top) == list(top) and onnx_cam is None


def test_compare_times_every_runtime_at_every_batch_and_restores_threads(tmp_path):
    torch.manual_seed(0)
    model = models.create("small_resnet", num_classes=10, in_chans=1, widths=(8, 16, 16, 32)).eval()
    model.preprocess = Preprocess(mean=(0.3,), std=(0.3,), size=(28, 28), channels=1)
    path = deploy.export_onnx(model, tmp_path / "m.onnx").path
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    threads = torch.get_num_threads()
    rows = deploy.compare(model, images, {"onnx": path}, batch_sizes=(1, 4), threads=(1,), compile=False,
                          min_time=0.0, min_runs=3)
    assert [(r["runtime"], r["batch"], r["threads"]) for r in rows] == [
        ("pytorch eager", 1, 1), ("pytorch eager", 4, 1), ("onnx", 1, 1), ("onnx", 4, 1)]
    for r in rows:
        assert r["p95_ms"] >= r["median_ms"] > 0 and r["images_per_s"] == pytest.approx(1000 * r["batch"] / r["median_ms"])
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="at least 8 images"):
        deploy.compare(model, images, batch_sizes=(8,), threads=(1,), compile=False, min_time=0.0)


def test_as_batch_decodes_arrays_as_load_images_decodes_files(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 30), dtype=np.uint8), rng.integers(0, 256, (20, 50, 3), dtype=np.uint8),
              rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)]  # gray, RGB, RGBA (composited on white)
    files = []
    for i, a in enumerate(arrays):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(files[-1])
    for channels in (1, 3):
        assert torch.equal(data.as_batch(arrays, size=(28, 24), channels=channels),
                           data.load_images(files, size=(28, 24), channels=channels))
    with pytest.raises(ValueError, match="image 0: expected uint8"):
        data.as_batch([np.zeros((4, 4), np.float32)], size=8, channels=1)
