"""Lesson 11: a trained model out of the notebook. ONNX export, ONNX Runtime, int8, latency, a model card.

    import cvlab, cvlab.deploy as deploy
    model = cvlab.load("runs/demo/best.pt")
    result = deploy.export_onnx(model, "model.onnx")     # uint8 images in, logits out; checked against PyTorch
    print(result)                                         # model.onnx: 1.2 MB, max |onnx - torch| 3e-06, ...
    deploy.quantize("model.onnx", "model.int8.onnx", calibration=train.images[:300])
    onnx_model = deploy.OnnxModel("model.int8.onnx")
    probs = onnx_model.predict(test_images)                 # as cvlab.train.predict(model, test_images)
    print(deploy.measure(lambda: onnx_model(test_images[:1])))   # median and p95 latency

The exported graph holds the preprocessing too (uint8 -> [0, 1] -> channels -> mean/std), so a phone,
a browser or a C++ server feeds it decoded pixels of the training size and needs no Python. The file
carries the class names and the preprocessing as ONNX metadata; :class:`OnnxModel` reads them back.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import logging
import re
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .preprocess import Preprocess
from .tasks import logits_of

__all__ = ["ExportError", "Exported", "export_onnx", "OnnxModel", "quantize", "Latency", "measure", "compare", "load",
           "file_size", "model_card"]


class ExportError(RuntimeError):
    """A model that torch's ONNX exporter cannot translate; the message names the operator."""


class _Deployable(nn.Module):
    """uint8 images (B, C, H, W) -> the model's logits, with the preprocessing inside the graph."""

    def __init__(self, model: nn.Module, preprocess: Preprocess):
        super().__init__()
        self.model, self.preprocess = model, preprocess

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(self.preprocess(images)))


@dataclasses.dataclass
class Exported:
    """What :func:`export_onnx` wrote, and how closely the file reproduces PyTorch."""
    path: Path
    bytes: int
    max_abs_diff: float  # max |ONNX Runtime - PyTorch| over the logits of a random uint8 batch
    seconds: float
    input_shape: tuple  # ("batch", C, H, W)

    def __str__(self) -> str:
        return (f"{self.path}: {self.bytes / 1e6:.2f} MB, input uint8 {self.input_shape}, "
                f"max |onnx - torch| {self.max_abs_diff:.1e} over the logits, exported in {self.seconds:.1f} s")


def _channels_of(model: nn.Module) -> int | None:
    spec = getattr(model, "cvlab_spec", None)
    if spec:
        return spec["in_chans"]
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


def export_onnx(model: nn.Module, path: str | Path, *, preprocess: Preprocess | None = None,
                input_size: tuple[int, int] | None = None, opset: int = 18, check: bool = True) -> Exported:
    """Write ``model`` as an ONNX file taking uint8 images (batch, C, H, W) of one size and giving logits.

    ``preprocess`` (default: ``model.preprocess``, recorded by ``fit`` and ``cvlab.load``) goes into the
    graph; its ``size`` is the input size unless ``input_size`` (H, W) says otherwise. The batch axis is
    dynamic. torch's exporter (``torch.onnx.export(dynamo=True)``) works on a copy on the CPU, so ``model``
    itself is not touched. With ``check``, ONNX Runtime runs the file on a random batch of another size and
    the largest difference from PyTorch's logits is returned (float32 sums in another order: about 1e-5).
    Raises :class:`ExportError` naming the operator when the exporter cannot translate one.
    """
    path = Path(path)
    pre = preprocess or getattr(model, "preprocess", None) or Preprocess()
    size = tuple(input_size) if input_size is not None else pre.size
    channels = pre.channels or _channels_of(model)
    if size is None or channels is None:
        raise ValueError(f"the input size of {type(model).__name__} is not recorded (no model.preprocess with a size); "
                         "pass input_size=(H, W), the size it was trained at (command line: --input-size)")
    pre = dataclasses.replace(pre, size=size, channels=channels, channels_last=False)
    net = _Deployable(copy.deepcopy(model).cpu().eval(), pre).eval()
    example = torch.randint(0, 256, (2, channels, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), dynamo=True, external_data=False, opset_version=opset,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    except ImportError:
        raise  # onnxscript missing: pip install onnxscript (a dependency of cvlab), not the model's fault
    except Exception as e:
        raise _export_error(model, e) from e
    seconds = time.perf_counter() - start
    _write_metadata(path, {"cvlab.preprocess": pre.to_dict(), "cvlab.classes": getattr(model, "classes", None),
                           "cvlab.model": getattr(model, "cvlab_spec", None), "cvlab.precision": "float32"})
    diff = float("nan")
    if check:
        x = torch.randint(0, 256, (3, channels, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = net(x).float().numpy()
        diff = float(np.abs(OnnxModel(path)(x) - expected).max())
    return Exported(path, path.stat().st_size, diff, seconds, ("batch", channels, *size))


def _export_error(model: nn.Module, e: Exception) -> ExportError:
    """The exporter's long report, reduced to the operator it could not translate and what to do."""
    text = f"{e}\n{e.__cause__ or ''}"
    # the node the translation failed on, as the exporter reports it: "Error when translating node %x : ... target=torch.ops.aten.y"
    found = re.search(r"Error when translating node[^\n]*?target=torch\.ops\.(\w+\.\w+)", text) or \
        re.search(r"No decompositions? [^\n]*?\b(aten[.:]+\w+)", text)
    op = found.group(1) if found else None
    why = next((line.strip() for line in text.splitlines() if "NotImplementedError" in line or "Unsupported" in line), "")
    return ExportError(f"{type(model).__name__} cannot be exported to ONNX: "
                       + (f"operator {op} has no ONNX translation in torch {torch.__version__}" if op
                          else f"{type(e).__name__}: {str(e).splitlines()[0]}")
                       + (f" ({why})" if why else "")
                       + ". Replace the layer that uses it with standard operations, or write a translation "
                         "(torch.onnx.export(..., custom_translation_table=...)).")


def _write_metadata(path: Path, props: dict) -> None:
    """Add ``props`` (JSON values) to the ONNX file's metadata, in place."""
    import onnx
    proto = onnx.load(str(path))
    keep = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(proto, str(path))


def _metadata(path: Path) -> dict:
    import onnx
    return {p.key: json.loads(p.value) for p in onnx.load(str(path), load_external_data=False).metadata_props
            if p.key.startswith("cvlab.")}


class OnnxModel:
    """An ONNX file run by ONNX Runtime, with cvlab's ``predict`` and ``evaluate``.

    Call it on uint8 images (B, C, H, W), a tensor or an array, to get logits as a NumPy array; images of
    another size or channel count are resized and converted first, as ``model.preprocess`` would.
    ``threads`` sets ONNX Runtime's intra-op threads (default: all cores); ``providers`` its execution providers
    (default: the CPU). The file must take uint8 images of one size, as :func:`export_onnx` writes them.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime as ort
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = providers or ["CPUExecutionProvider"]  # what the thread counts and the checks assume; pass
        # providers=["CUDAExecutionProvider", "CPUExecutionProvider"] (onnxruntime-gpu) to run on a GPU
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:
            raise ValueError(f"{self.path} cannot be loaded by ONNX Runtime ({type(e).__name__}: "
                             f"{str(e).splitlines()[0]}); export it again with cvlab.deploy.export_onnx") from e
        meta = _metadata(self.path)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        shape = first.shape
        if first.type != "tensor(uint8)" or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise ValueError(f"{self.path} takes {first.type} {shape}; OnnxModel runs files that take uint8 images "
                             "(batch, C, H, W) of one size, as cvlab.deploy.export_onnx writes them. For another ONNX "
                             "file use onnxruntime.InferenceSession directly.")
        _, self.channels, h, w = shape
        self.size = (int(h), int(w))
        self.classes = meta.get("cvlab.classes")
        self.precision = meta.get("cvlab.precision", "float32")
        self.preprocess = Preprocess.from_dict(meta.get("cvlab.preprocess"))
        self._adapt = Preprocess(size=self.size, channels=self.channels)  # to the file's input: scale, resize, channels

    def __repr__(self) -> str:
        return f"OnnxModel({self.path}, input uint8 (batch, {self.channels}, {self.size[0]}, {self.size[1]}), {self.precision})"

    def prepare(self, images) -> np.ndarray:
        """A uint8 batch as the file's input: resized and channel-converted when it differs, a contiguous array."""
        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images.cpu()
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(f"{self.path.name} takes uint8 images (B, C, H, W); got {x.dtype} {tuple(x.shape)}. "
                             "Pass decoded pixels (cvlab.data.load_images), not normalized floats.")
        if x.shape[1] != self.channels or tuple(x.shape[-2:]) != self.size:
            x = self._adapt(x).mul_(255).round_().to(torch.uint8)
        return x.contiguous().numpy()

    def __call__(self, images) -> np.ndarray:
        """Logits (B, num_classes) for a uint8 batch."""
        return self.session.run(None, {self.input_name: self.prepare(images)})[0]

    def evaluate(self, data, *, batch_size: int = 256) -> dict:
        """Accuracy, predictions, probabilities and labels on a dataset or (images, labels), as cvlab.train.evaluate."""
        images, labels = _images_labels(data)
        logits = torch.from_numpy(np.concatenate([self(images[i:i + batch_size])
                                                  for i in range(0, len(images), batch_size)]))
        probs = logits.float().softmax(1)
        predictions = probs.argmax(1)
        out = {"probabilities": probs, "predictions": predictions, "logits": logits}
        if labels is not None:
            out.update(labels=labels, accuracy=(predictions == labels).float().mean().item())
        return out

    def predict(self, data, *, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities (N, C) for uint8 images or a dataset, as ``cvlab.train.predict(model, data)``."""
        return self.evaluate(data, batch_size=batch_size)["probabilities"]


def _images_labels(data) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 images, labels or None) on the CPU, from a dataset, (images, labels) or images alone."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data.images.cpu(), data.labels.cpu()
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]).cpu(), torch.as_tensor(data[1]).cpu()
    if not isinstance(data, torch.Tensor):
        data = torch.as_tensor(np.asarray(data))
    return data.cpu(), None


def load(path: str | Path, **kwargs):
    """A checkpoint (``.pt``) as a PyTorch model (``cvlab.load``), or an ``.onnx`` file as an :class:`OnnxModel`."""
    if Path(path).suffix.lower() == ".onnx":
        return OnnxModel(path, **kwargs)
    from .checkpoint import load as load_checkpoint
    return load_checkpoint(path, **kwargs)


def quantize(source: str | Path, target: str | Path, *, mode: str = "static", calibration=None,
             per_channel: bool = True) -> Path:
    """Post-training int8 quantization of an ONNX file with ONNX Runtime's quantizer; returns ``target``.

    ``mode="static"`` (the usual choice for CNNs) stores weights as int8 and fixes each activation's int8
    scale from ``calibration``: uint8 training images (a few hundred; a tensor, array or dataset), run once
    through the float model to record each tensor's range (min/max). ``mode="dynamic"`` needs no data: the
    weights are int8 and activations are quantized on the fly per batch; it suits matrix-multiply models
    (transformers, linear layers); for convolutions ONNX Runtime's CPU kernels are slow (measure it).
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    source, target = Path(source), Path(target)
    if mode not in ("static", "dynamic"):
        raise ValueError(f"mode must be 'static' or 'dynamic'; got {mode!r}")
    if mode == "static" and calibration is None:
        raise ValueError("static quantization needs calibration images: calibration=train.images[:300] (uint8)")
    meta = _metadata(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            _quiet_logging():
        warnings.simplefilter("ignore")
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))  # shape inference and graph clean-up, as the quantizer wants
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)
        else:
            model = OnnxModel(source)
            images, _ = _images_labels(calibration)
            if len(images) == 0:
                raise ValueError("calibration holds no images")

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.batches = iter(range(0, len(images), 32))

                def get_next(self):
                    i = next(self.batches, None)
                    return None if i is None else {model.input_name: model.prepare(images[i:i + 32])}

            quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    _write_metadata(target, {**meta, "cvlab.precision": f"int8 ({mode})"})
    return target


@contextlib.contextmanager
def _quiet_logging():
    """The quantizer logs a warning per normalization layer it leaves in float; keep errors only."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def file_size(path: str | Path) -> int:
    """Bytes on disk of an ONNX file and its external weights (``path.data``), if it has some."""
    path = Path(path)
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


@dataclasses.dataclass
class Latency:
    """Wall-clock times of repeated calls, in milliseconds: the first (cold) call apart, then median and p95."""
    first_ms: float
    median_ms: float
    p95_ms: float
    runs: int
    times_ms: np.ndarray = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return f"median {self.median_ms:.2f} ms, p95 {self.p95_ms:.2f} ms over {self.runs} runs (first call {self.first_ms:.1f} ms)"


def measure(fn, *, warmup: int = 5, min_runs: int = 20, max_runs: int = 1000, min_time: float = 1.0,
            sync=None) -> Latency:
    """Call ``fn()`` until ``min_time`` seconds and ``min_runs`` calls have passed (after ``warmup`` calls whose
    times are dropped, the first of them reported apart); ``sync`` (e.g. ``torch.cuda.synchronize``) runs
    after each call so that a GPU's queued work is counted."""
    def once() -> float:
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        return 1000 * (time.perf_counter() - start)

    first = once()
    for _ in range(max(warmup - 1, 0)):
        once()
    times, start = [], time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time):
        times.append(once())
    t = np.array(times)
    return Latency(first, float(np.median(t)), float(np.percentile(t, 95)), len(t), t)


def compare(model: nn.Module, images: torch.Tensor, onnx_files: dict[str, str | Path] | None = None, *,
            batch_sizes=(1, 32), threads=(1, None), compile: bool = True, min_time: float = 1.0,
            min_runs: int | None = None) -> list[dict]:
    """Latency of one model in several runtimes, side by side: PyTorch eager, ``torch.compile`` and each ONNX file
    (``{"onnx float32": path, "onnx int8": path}``), at each batch size and thread count (None: all cores).

    Every runtime takes the same uint8 ``images`` (the first ``batch`` of them) and includes the preprocessing,
    as the exported graph does. Returns one row per measurement: runtime, batch, threads, first_ms (the cold
    call; for torch.compile it includes compiling), median_ms, p95_ms, images_per_s. Each figure takes at least
    ``min_time`` seconds and ``min_runs`` calls (default: 20, or 10 for batches over 8).
    """
    import os
    images = images.cpu()  # everything here runs on the CPU
    pre = dataclasses.replace(getattr(model, "preprocess", None) or Preprocess(), channels_last=False)
    net = _Deployable(copy.deepcopy(model).cpu().eval(), pre).eval()
    runners = {"pytorch eager": net}
    if compile:
        runners["torch.compile"] = torch.compile(net)
    all_threads = os.cpu_count() or torch.get_num_threads()
    rows, torch_threads = [], torch.get_num_threads()
    try:
        for n in threads:
            n = n or all_threads
            torch.set_num_threads(n)
            sessions = {name: OnnxModel(path, threads=n) for name, path in (onnx_files or {}).items()}
            for name, run in {**runners, **sessions}.items():
                for b in batch_sizes:
                    x = images[:b]
                    if len(x) < b:
                        raise ValueError(f"compare needs at least {b} images for batch size {b}; got {len(images)}")
                    if isinstance(run, OnnxModel):
                        feed = {run.input_name: x.contiguous().numpy()}
                        fn = lambda run=run, feed=feed: run.session.run(None, feed)  # noqa: E731
                    else:
                        fn = lambda run=run, x=x: run(x)  # noqa: E731
                    with torch.inference_mode():
                        lat = measure(fn, min_time=min_time, min_runs=min_runs or (10 if b > 8 else 20))
                    rows.append({"runtime": name, "batch": b, "threads": n, "first_ms": lat.first_ms,
                                 "median_ms": lat.median_ms, "p95_ms": lat.p95_ms,
                                 "images_per_s": 1000 * b / lat.median_ms})
    finally:
        torch.set_num_threads(torch_threads)
    return rows


def model_card(checkpoint: str | Path, data, *, path: str | Path | None = None, failures: int = 8,
               batch_size: int = 512) -> str:
    """A model card in Markdown, written from a checkpoint and a labelled test set (a dataset).

    What the model is and was trained on (the checkpoint's record), how it was tested, per-class
    precision/recall/F1, calibration (expected calibration error, and the temperature that would fix it),
    the most confused pairs of classes and its most confident mistakes. With ``path`` the card is also
    written there, with the mistakes drawn beside it (``<path>.failures.png``).
    """
    from . import metrics
    from .checkpoint import load as load_model, read_checkpoint
    from .train import evaluate

    ckpt = read_checkpoint(checkpoint)
    meta, history = ckpt.get("meta", {}), ckpt.get("history", {})
    model = load_model(checkpoint)
    classes = model.classes or [str(i) for i in range(meta.get("num_classes") or 0)]
    result = evaluate(model, data, batch_size=batch_size)
    labels, preds, probs = result["labels"], result["predictions"], result["probabilities"]
    logits = probs.clamp_min(1e-12).log()  # softmax's log: logits up to a per-image constant, enough for temperature
    report = metrics.classification_report(labels, preds, classes)
    fit_half, held_half = slice(0, None, 2), slice(1, None, 2)  # fit the temperature on one half, judge on the other
    ece = metrics.expected_calibration_error(probs[held_half], labels[held_half])
    temperature = metrics.fit_temperature(logits[fit_half], labels[fit_half])
    ece_t = metrics.expected_calibration_error((logits[held_half] / temperature).softmax(1), labels[held_half])
    cm = metrics.confusion_matrix(labels, preds, len(classes))
    np.fill_diagonal(cm, 0)
    pairs = sorted(((int(cm[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes)) if cm[i, j]),
                   reverse=True)[:5]
    wrong = (preds != labels).nonzero().flatten()
    confidence = probs.max(1).values
    worst = wrong[confidence[wrong].argsort(descending=True)][:failures].tolist()
    spec, pre = meta.get("model") or {}, meta.get("preprocess") or {}
    params = sum(p.numel() for p in model.parameters())
    val = history.get("val_acc") or []
    lines = [
        f"# Model card: {spec.get('name', type(model).__name__)} ({Path(checkpoint).name})", "",
        "## Model",
        f"- Architecture: `{spec.get('name', type(model).__name__)}` ({params:,} parameters), "
        f"built with `cvlab.models.create({spec.get('name')!r}, num_classes={spec.get('num_classes')}, "
        f"in_chans={spec.get('in_chans')})`.",
        f"- Input: {pre.get('channels')}-channel images of {pre.get('size')} pixels, uint8, scaled to [0, 1] and "
        f"normalized with mean {pre.get('mean')} and std {pre.get('std')}.",
        f"- Output: probabilities over {len(classes)} classes: {', '.join(classes)}.", "",
        "## Training",
        f"- Trained for {ckpt['epoch']} of {ckpt['epochs']} epochs on {meta.get('dataset_size') or '?'} images "
        f"(batch size {meta.get('batch_size')}), {ckpt.get('elapsed', 0):.0f} s of training.",
        (f"- Validation accuracy: {max(val):.4f} at its best epoch, {val[-1]:.4f} at the last." if val
         else "- No validation split was recorded."), "",
        "## Evaluation",
        f"- Test data: {data!r}.",
        f"- Accuracy: **{result['accuracy']:.4f}** on {len(labels):,} images.", "",
        "| class | precision | recall | F1 | images |", "|---|---|---|---|---|",
        *[f"| {c} | {report.precision[i]:.3f} | {report.recall[i]:.3f} | {report.f1[i]:.3f} | {report.support[i]} |"
          for i, c in enumerate(classes)], "",
        "## Calibration",
        f"- Expected calibration error (15 bins, on the odd-numbered test images): {ece:.4f}. Dividing the logits "
        f"by a temperature of {temperature:.2f} (fitted on the even-numbered ones) gives {ece_t:.4f}"
        f"{' (the model is over-confident)' if temperature > 1 else ' (the model is under-confident)'}.", "",
        "## Known failure cases",
        "- Most confused pairs (true -> predicted: images): "
        + ", ".join(f"{classes[i]} -> {classes[j]}: {n}" for n, i, j in pairs) + ".",
        "- Most confident mistakes (test index: true -> predicted, confidence): "
        + ", ".join(f"{i}: {classes[labels[i]]} -> {classes[preds[i]]} ({confidence[i]:.2f})" for i in worst) + ".",
        "",
        "## Intended use and limits",
        f"- Images like the training data: {pre.get('channels')}-channel, {pre.get('size')} px, one object per image, "
        f"from the {len(classes)} classes above. Any other input still gets one of these classes, with no warning.",
        "- Not tested on other cameras, lighting, backgrounds or image sizes; measure before relying on it there.",
    ]
    card = "\n".join(lines) + "\n"
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if worst:
            from .plot import show_images
            fig = show_images([data.images[i] for i in worst],
                              [f"{classes[labels[i]]}\n-> {classes[preds[i]]} {confidence[i]:.2f}" for i in worst],
                              ncols=min(8, len(worst)))
            png = path.with_name(path.stem + ".failures.png")
            fig.savefig(png, dpi=100, bbox_inches="tight")
            import matplotlib.pyplot as plt
            plt.close(fig)
            card += f"\n![the most confident mistakes]({png.name})\n"
        path.write_text(card)
    return card
