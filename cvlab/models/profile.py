"""What a network costs: per-layer output shapes, parameters, FLOPs and activation memory, and its latency.

    s = cvlab.models.summary(model, (1, 3, 224, 224))
    print(s)                                 # a table, then the totals
    s.total_params, s.total_flops            # numbers to compare models by
    plt.bar([r.name for r in s.layers], [r.flops for r in s.layers])  # or s.records() for pandas
    cvlab.models.latency(model, (1, 3, 224, 224), "cpu").median       # seconds per forward pass
    cvlab.models.train_step_time(model, x, y, amp="bf16")              # seconds per training step

FLOPs are PyTorch's own count (``torch.utils.flop_counter``): convs and matrix products only, one
multiply-add = 2 FLOPs; batch norm, activations and pooling count 0. Activation memory is the size
of each layer's output tensor, which is what a forward pass writes (an in-place ReLU's output is its
input, so it is counted again: read the total as an upper bound on what training keeps for backward).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["LayerStats", "Summary", "summary", "latency", "train_step_time"]


@dataclass
class LayerStats:
    """One layer's call: its name in the model, type, output shape, own parameters, FLOPs, output bytes."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    activation_bytes: int


@dataclass
class Summary:
    """A model's per-layer rows (in call order) and totals, from one forward pass of ``input_size``."""

    layers: list[LayerStats]
    input_size: tuple[int, ...]
    total_params: int
    trainable_params: int
    param_bytes: int
    total_flops: int  # the whole forward, including ops outside the listed layers

    @property
    def activation_bytes(self) -> int:
        """The bytes of every listed layer's output, summed."""
        return sum(r.activation_bytes for r in self.layers)

    def records(self) -> list[dict]:
        """The rows as dicts, e.g. for ``pandas.DataFrame(summary.records())``."""
        return [dataclasses.asdict(r) for r in self.layers]

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'Layer':<{width}}  {'Type':<18} {'Output shape':<20} {'Params':>11} {'FLOPs':>9} {'Memory':>9}"]
        for r in self.layers:
            lines.append(f"{r.name:<{width}}  {r.kind:<18} {str(r.output_shape):<20} {r.params:>11,} "
                         f"{_si(r.flops):>9} {_bytes(r.activation_bytes):>9}")
        lines += [
            "-" * len(lines[0]),
            f"Input {self.input_size}",
            f"Params: {self.total_params:,} ({self.trainable_params:,} trainable), {_bytes(self.param_bytes)}",
            f"FLOPs: {_si(self.total_flops)} per forward pass (1 multiply-add = 2 FLOPs)",
            f"Activation memory: {_bytes(self.activation_bytes)} (sum of layer outputs)",
        ]
        return "\n".join(lines)


def _si(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}P"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.4g} TB"


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules a row is written for: leaves, and modules holding parameters of their own (not their insides)."""
    if not list(model.children()):
        return [("", model)]
    chosen: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if name == "" or any(name.startswith(f"{c}.") for c, _ in chosen):
            continue  # the model itself, or inside a module that already has a row
        if not list(m.children()) or list(m.parameters(recurse=False)):
            chosen.append((name, m))
    return chosen


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def summary(model: nn.Module, input_size: tuple[int, ...], *, device: str | torch.device | None = None,
            dtype: torch.dtype = torch.float32) -> Summary:
    """Run one forward pass of zeros shaped ``input_size`` ((B, C, H, W), or (C, H, W) for B = 1) and tabulate it.

    The model runs in eval mode under ``no_grad`` on ``device`` (default: where its parameters are) and is
    left in the mode it was in. A module called twice gets two rows; its parameters count once.
    """
    input_size = tuple(input_size) if len(input_size) != 3 else (1, *input_size)
    first = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (first.device if first is not None else "cpu")
    x = torch.zeros(input_size, device=device, dtype=dtype)

    rows: list[LayerStats] = []
    counted: set[int] = set()
    flops_before: dict[int, int] = {}
    with FlopCounterMode(display=False) as counter:
        def before(module, args):
            flops_before[id(module)] = counter.get_total_flops()

        def after_hook(name: str):
            def after(module, args, out):
                params = 0 if id(module) in counted else sum(p.numel() for p in module.parameters())
                counted.add(id(module))
                outs = _tensors(out)
                shape = tuple(outs[0].shape) if len(outs) == 1 else tuple(tuple(t.shape) for t in outs)
                rows.append(LayerStats(name or type(module).__name__, type(module).__name__, shape, params,
                                       counter.get_total_flops() - flops_before[id(module)],
                                       sum(t.numel() * t.element_size() for t in outs)))
            return after

        handles = []
        for name, m in _layers(model):
            handles += [m.register_forward_pre_hook(before), m.register_forward_hook(after_hook(name))]
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
    return Summary(
        layers=rows,
        input_size=input_size,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        total_flops=counter.get_total_flops(),
    )


def latency(model: nn.Module, input_size: tuple[int, ...], device: str | torch.device | None = None, *,
            min_run_time: float = 1.0, num_threads: int | None = None) -> torch.utils.benchmark.Measurement:
    """Time ``model``'s forward pass on a ``input_size`` batch with ``torch.utils.benchmark``.

    Returns the ``Measurement`` (``.median`` and ``.mean`` in seconds; it prints nicely). The model runs in
    eval mode without autograd on ``device`` (default ``cvlab.config.device()``), after one warm-up call;
    ``torch.utils.benchmark`` synchronises CUDA for us. Afterwards the model is back on its own device and
    mode. CPU timing uses all of torch's threads unless ``num_threads`` says otherwise.
    """
    from torch.utils import benchmark  # imported here: it pulls in the C++ extension toolchain, slow and noisy at import

    from .. import config

    device = torch.device(device) if device is not None else config.device()
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    x = torch.randn(input_size, device=device)
    try:
        model.to(device).eval()
        with torch.no_grad():
            model(x)  # warm-up: lazy init, cuDNN's algorithm search
            timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                                    num_threads=num_threads or torch.get_num_threads(),
                                    label=type(model).__name__, sub_label=str(tuple(input_size)),
                                    description=str(device))
            return timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        model.to(home).train(was_training)


def train_step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp=False, steps: int = 5,
                    device: str | torch.device | None = None) -> float:
    """Median seconds of one training step on the batch ``(x, y)``: forward, cross-entropy, backward, SGD update.

    Runs :func:`cvlab.train.fit` on a copy of ``model`` (the model itself is not touched) on ``device``
    (default: the model's own), timing the steps after two warm-up steps; ``amp`` is understood as by
    fit, and a model that returns several outputs (DeiT while distilling) is scored on the first. Use it
    to decide things a rule of thumb gets wrong, e.g. whether bf16 autocast speeds up *this* network on
    *this* CPU: a CPU with native bf16 trains a small CNN faster with it, and can train a small ViT slower.
    """
    from ..train import _model_device, fit

    if steps < 1:
        raise ValueError(f"steps={steps}: time at least one step")
    device = torch.device(device) if device is not None else _model_device(model)
    timer = _StepTimer(device)
    batch = (x.to(device), y.to(device))  # the same batch every step, already on the device
    fit(copy.deepcopy(model), [batch] * (steps + 2), epochs=1, optimizer="sgd", lr=1e-3, momentum=0.0,
        weight_decay=0.0, schedule=None, amp=amp, device=device, progress=False, callbacks=[timer])
    times = [b - a for a, b in zip(timer.ends[1:], timer.ends[2:])]  # after two warm-up steps
    return sorted(times)[len(times) // 2]


class _StepTimer:
    """Records the wall time at the end of each step, after waiting for the device to finish it."""

    def __init__(self, device: torch.device):
        self.device, self.ends = device, []

    def on_step_end(self, state) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
        self.ends.append(time.perf_counter())
