"""Interactive images for the lessons: sliders that redraw where a person can drag them, a static figure elsewhere.

    panel = slider_panel(render, {"k": (1, 15, 2)}, {"k": 3})  # render(**values) -> list of images
"""
from __future__ import annotations

import html
import io
import os
from collections.abc import Callable, Sequence

import numpy as np

from .image import as_hwc

__all__ = ["is_live", "displayable", "to_png", "slider_panel", "static_figure"]


def is_live(live: bool | None = None) -> bool:
    """Whether to draw widgets: in an IPython kernel that a person is looking at, not under nbval or in a script.

    nbval runs a kernel with no frontend to draw widgets; it is recognised by the PYTEST_CURRENT_TEST
    variable its kernel inherits from pytest. ``live`` or ``CVLAB_WIDGETS=0``/``1`` override the guess.
    """
    if live is not None:
        return bool(live)
    forced = os.environ.get("CVLAB_WIDGETS", "").strip().lower()
    if forced in ("0", "1", "false", "true", "no", "yes", "off", "on"):
        return forced in ("1", "true", "yes", "on")
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None and "PYTEST_CURRENT_TEST" not in os.environ


def displayable(img) -> np.ndarray:
    """A uint8 image as (H, W) or (H, W, 3|4) for drawing: of 2 channels the first, of 5 or more the first three."""
    hwc = as_hwc(img, "display")[0]
    c = hwc.shape[2]
    return hwc[..., 0] if c in (1, 2) else hwc[..., :3] if c > 4 else hwc


def to_png(images: Sequence, height: int = 224) -> bytes:
    """The images side by side as one PNG, each scaled to ``height`` (nearest when enlarging: pixels stay visible)."""
    from PIL import Image
    panels = []
    for img in images:
        im = Image.fromarray(displayable(img)).convert("RGB")
        k = height / im.height
        panels.append(im.resize((max(1, round(im.width * k)), height), Image.NEAREST if k >= 1 else Image.BILINEAR))
    gap = 8
    canvas = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), height), "white")
    left = 0
    for p in panels:
        canvas.paste(p, (left, 0))
        left += p.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="png")
    return buffer.getvalue()


def slider_panel(render: Callable, sliders: dict, values: dict, *, height: int = 224):
    """Controls for ``sliders`` (name -> (min, max, step), or a list of choices) beside the images ``render(**values)`` returns.

    Moving a control calls ``render`` again and redraws; an exception shows as a line under the controls.
    Integer ranges get an IntSlider, others a FloatSlider, lists a Dropdown.
    """
    import ipywidgets as W
    style, controls = {"description_width": "90px"}, {}
    for name, spec in sliders.items():
        if isinstance(spec, list):
            controls[name] = W.Dropdown(options=spec, value=values[name], description=name, style=style)
        else:
            lo, hi, step = spec[:3]
            slider = W.IntSlider if all(isinstance(v, int) for v in (lo, hi, step)) else W.FloatSlider
            controls[name] = slider(value=values[name], min=lo, max=hi, step=step, description=name, style=style)
    picture, message = W.Image(format="png"), W.HTML()

    def redraw(_=None):
        try:
            picture.value = to_png(render(**{name: c.value for name, c in controls.items()}), height)
            message.value = ""
        except Exception as e:  # keep the panel alive: say what went wrong under the controls
            message.value = f"<span style='color:#b00020'>{html.escape(f'{type(e).__name__}: {e}')}</span>"

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return W.VBox([W.HBox([W.VBox(list(controls.values())), picture]), message])


def static_figure(images: Sequence, titles: Sequence[str], suptitle: str = "", *, size: float = 3.0):
    """The images in one row, gray ones on the fixed 0..255 scale; a Figure outside pyplot, so a notebook shows it once."""
    import matplotlib.pyplot  # noqa: F401  in a notebook, importing it turns on inline PNG display of figures
    from matplotlib.figure import Figure
    fig = Figure(figsize=(size * len(images), size + 0.3))
    for ax, img, title in zip(np.atleast_1d(fig.subplots(1, len(images))), images, titles):
        ax.imshow(displayable(img), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=8, wrap=True)
    fig.tight_layout()
    return fig
