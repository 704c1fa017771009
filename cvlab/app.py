"""A small web app for a trained model (Gradio): upload or pick an image, see the top-5 classes and,
for a PyTorch model, a Grad-CAM overlay of where it looked.

    python -m cvlab serve runs/demo/best.pt            # or model.onnx; opens on http://127.0.0.1:7860
    demo = cvlab.app.build("runs/demo/best.pt"); demo.launch(inline=True)   # in a notebook

The uploaded file is decoded and resized by the same code as ``python -m cvlab predict``
(:func:`cvlab.data.load_images`), so the page shows what the command line prints.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

__all__ = ["build", "serve", "classify", "example_images", "last_conv"]

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline, and no telemetry from a course app


def _load(model):
    from . import deploy
    return deploy.load(model) if isinstance(model, (str, Path)) else model


def _input_of(model) -> tuple[tuple[int, int], int]:
    """(H, W) and channels the model takes."""
    from .deploy import OnnxModel
    if isinstance(model, OnnxModel):
        return model.size, model.channels
    pre = getattr(model, "preprocess", None)
    if pre is None or pre.size is None:
        raise ValueError("the model does not record its input size (no model.preprocess); load it with cvlab.load "
                         "from a checkpoint written by fit")
    return tuple(pre.size), pre.channels or 3


def last_conv(model: nn.Module) -> nn.Module | None:
    """The last convolution the forward pass runs (the usual Grad-CAM layer), or None if it has none."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in convs]
    try:
        size, channels = _input_of(model)
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, *size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return order[-1] if order else None


def classify(model, path: str | Path, *, top_k: int = 5) -> tuple[dict[str, float], np.ndarray | None]:
    """One image file -> ({class: probability} for the top ``top_k``, Grad-CAM overlay (H, W, 3) or None)."""
    from . import data
    from .deploy import OnnxModel
    from .train import predict
    size, channels = _input_of(model)
    images = data.load_images([path], size=size, channels=channels)
    probs = model.predict(images) if isinstance(model, OnnxModel) else predict(model, images)
    classes = model.classes or [str(i) for i in range(probs.shape[1])]
    p, i = probs[0].topk(min(top_k, probs.shape[1]))
    top = {classes[c]: float(q) for c, q in zip(i.tolist(), p.tolist())}
    cam = None
    layer = None if isinstance(model, OnnxModel) else last_conv(model)
    if layer is not None:
        from .explain import gradcam, overlay
        heat = gradcam(model, layer, images)[0].cpu()
        cam = (overlay(images[0], heat) * 255).astype(np.uint8)
        scale = max(1, 224 // max(cam.shape[:2]))  # a 28 px map is too small to see on a page
        cam = cam.repeat(scale, 0).repeat(scale, 1)
    return top, cam


def trained_on_fashion_mnist(model) -> bool:
    """Whether ``model.classes`` are Fashion-MNIST's ten, in order (then its images make examples and calibration)."""
    from torchvision.datasets import FashionMNIST
    return list(model.classes or []) == list(FashionMNIST.classes)


def example_images(model, folder: str | Path | None = None, n: int = 6) -> list[str]:
    """Image files to offer as examples: test images of Fashion-MNIST for a model trained on its classes
    (one per class, written as PNG into ``folder``), otherwise photos that ship with scikit-image."""
    from PIL import Image

    from . import data
    folder = Path(folder or tempfile.mkdtemp(prefix="cvlab-examples-"))
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    if trained_on_fashion_mnist(model):
        test = data.load("fashion_mnist", "test")
        for c in range(min(n, 10)):
            i = int((test.labels == c).nonzero()[0])
            f = folder / f"{c}_{test.classes[c].replace('/', '-')}_{i}.png"
            Image.fromarray(test.images[i, 0].numpy()).save(f)
            files.append(str(f))
    else:
        for name in ("chelsea", "coffee", "astronaut", "rocket")[:n]:
            f = folder / f"{name}.png"
            Image.fromarray(data.sample_image(name)).save(f)
            files.append(str(f))
    return files


def build(model, *, examples: list[str] | None = None, title: str | None = None):
    """The Gradio app (a ``gr.Blocks``) for a model: a PyTorch model, an :class:`~cvlab.deploy.OnnxModel`, or a path
    to a checkpoint or ``.onnx`` file. Launch it with ``.launch()``."""
    import gradio as gr

    from .deploy import OnnxModel
    model = _load(model)
    size, channels = _input_of(model)
    onnx = isinstance(model, OnnxModel)
    examples = example_images(model) if examples is None else examples
    name = getattr(model, "path", None) or type(model).__name__

    def run(path):
        if path is None:
            return None, None
        return classify(model, path)

    with gr.Blocks(title=title or "cvlab classifier") as demo:
        gr.Markdown(f"## {title or 'cvlab classifier'}\n{'ONNX Runtime' if onnx else 'PyTorch'} model `{name}`: "
                    f"images are resized to {size[0]}x{size[1]} and read as {channels}-channel.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="image", elem_id="image", sources=["upload", "clipboard"],
                                 height=300)
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                label = gr.Label(num_top_classes=5, label="top-5", elem_id="prediction")
                cam = gr.Image(label="Grad-CAM" if not onnx else "Grad-CAM (PyTorch models only)", elem_id="gradcam",
                               interactive=False, visible=not onnx, height=300)
        if examples:
            gr.Examples(examples=[[f] for f in examples], inputs=image)
        button.click(run, inputs=image, outputs=[label, cam])
        image.upload(run, inputs=image, outputs=[label, cam])
    return demo


def serve(model, *, host: str = "127.0.0.1", port: int = 7860, examples: list[str] | None = None,
          block: bool = True):
    """Build the app and serve it on ``host:port`` (localhost only by default; no public share link)."""
    demo = build(model, examples=examples)
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                ssr_mode=False, quiet=False)
    return demo
