"""Training recipes: one run's hyperparameters in one dict, and the function that runs one end to end.

    python -m cvlab train --data fashion_mnist --model small_resnet --epochs 10 --out runs/small_resnet

is ``cvlab.recipes.run(data="fashion_mnist", model="small_resnet", epochs=10, out="runs/small_resnet")``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import config, data as cvdata, models, train

__all__ = ["FASHION_MNIST", "QUICK_SIZES", "run", "cpu_amp"]

# The default recipe: a small residual CNN tuned to be fast on CPU; benchmarks/time_to_accuracy.py times it to 93%.
FASHION_MNIST = dict(
    model="small_resnet",
    epochs=10,
    batch_size=512,
    optimizer="nesterov", lr=0.2, momentum=0.9, weight_decay=5e-4,
    schedule="onecycle", warmup=0.2,     # warmup: the fraction of steps spent rising to lr
    label_smoothing=0.1,
    flip=True, pad_crop=2,               # augmentation, drawn per image by the TensorLoader
    tta=True,                            # evaluate on each image and its mirror image, average the logits
    channels_last=True,
)
# Quick mode (CVLAB_QUICK=1 or --quick): the same recipe on a small subset, for CI and smoke tests.
QUICK_SIZES = dict(n_train=2_000, n_test=1_000, epochs=2, batch_size=64)


def cpu_amp() -> str | bool:
    """bf16 on CPUs that compute it natively (AVX512-BF16 or AMX), where convolutions are faster with it; else off.

    A rule of thumb for the course's CNNs, not for every network: on the same CPU a small ViT can train
    slower in bf16 (lesson 06 measures it). ``cvlab.models.train_step_time(model, x, y, amp=...)`` tells.
    """
    native = [getattr(torch.cpu, f, lambda: False) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return "bf16" if any(f() for f in native) else False


def run(*, data: str = "fashion_mnist", model: str | None = None, epochs: int | None = None,
        out: str | Path | None = None, batch_size: int | None = None, lr: float | None = None, amp=None,
        resume: bool = False, quick: bool | None = None, progress: bool = True, callbacks=(), seed: int = 0,
        recipe: dict = FASHION_MNIST) -> dict:
    """Train ``recipe`` (with any arguments given here overriding it) and evaluate on the test set.

    Writes ``out/last.pt`` and ``out/best.pt`` (checkpoints), ``history.json``, ``history.png`` and
    ``confusion_matrix.png``. ``amp=None`` means bf16 where the CPU computes it natively, fit's
    default on GPUs. Returns ``{"history", "test", "model", "out"}``.
    """
    quick = config.QUICK if quick is None else quick
    hp = dict(recipe, **{k: v for k, v in dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr).items()
                         if v is not None})
    config.seed_everything(seed)
    train_set, test_set = cvdata.load(data, "train"), cvdata.load(data, "test")
    if quick:
        train_set = cvdata.subset(train_set, n=min(QUICK_SIZES["n_train"], len(train_set)), seed=seed)
        test_set = cvdata.subset(test_set, n=min(QUICK_SIZES["n_test"], len(test_set)), seed=seed)
        hp["epochs"] = epochs or QUICK_SIZES["epochs"]
        hp["batch_size"] = batch_size or QUICK_SIZES["batch_size"]  # enough steps to learn something
    _, _, dev = train.setup_distributed()
    if amp is None:
        amp = cpu_amp() if dev.type == "cpu" else None
    net = models.create(hp["model"], num_classes=train_set.num_classes, in_chans=train_set.images.shape[1])
    loader = cvdata.TensorLoader(train_set, batch_size=hp["batch_size"], shuffle=True, device=dev, flip=hp["flip"],
                                 pad_crop=hp["pad_crop"], seed=seed, channels_last=hp["channels_last"])
    callbacks = list(callbacks)
    out = Path(out) if out is not None else None
    if out is not None:
        callbacks.append(train.Checkpoint(out))
    history = train.fit(net, loader, test_set, epochs=hp["epochs"], optimizer=hp["optimizer"], lr=hp["lr"],
                        momentum=hp["momentum"], weight_decay=hp["weight_decay"], schedule=hp["schedule"],
                        warmup=hp["warmup"], label_smoothing=hp["label_smoothing"], amp=amp,
                        channels_last=hp["channels_last"], tta=hp["tta"], callbacks=callbacks, progress=progress,
                        resume=resume and out is not None, seed=seed)
    test = train.evaluate(net, test_set, amp=amp, tta=hp["tta"])
    if out is not None and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0):
        _write_outputs(out, history, test, test_set.classes, hp)
    return {"history": history, "test": test, "model": net, "out": out}


def _write_outputs(out: Path, history: dict, test: dict, classes, hp: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only: no window, works without a display
    import matplotlib.pyplot as plt
    from . import plot
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.json").write_text(json.dumps({"recipe": hp, "test_accuracy": test["accuracy"],
                                                  "test_loss": test["loss"], **history}, indent=1) + "\n")
    for name, fig in (("history.png", plot.history(history)),
                      ("confusion_matrix.png", plot.confusion_matrix(test["labels"], test["predictions"], classes))):
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
