"""Training recipes: one run's hyperparameters in one dict, and the function that runs one end to end.

    python -m cvlab train --data fashion_mnist --model small_resnet --epochs 10 --out runs/small_resnet
    python -m cvlab train --data photos/ --model efficientnet_lite0 --pretrained --size 224 --out runs/photos

are ``cvlab.recipes.run(data="fashion_mnist", model="small_resnet", epochs=10, out="runs/small_resnet")`` and
``run(data="photos/", model="efficientnet_lite0", pretrained=True, size=224, out="runs/photos")``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import config, data as cvdata, models, train

__all__ = ["FASHION_MNIST", "QUICK_SIZES", "run", "cpu_amp"]

# The default recipe: a small residual CNN tuned to be fast on CPU; benchmarks/time_to_accuracy.py times it to 93%.
# small_resnet_narrow has no stem and few channels at 28x28, where float32 convolutions spend most of their time;
# batches of 128 give more steps per epoch at about the same cost per image; the test-time views (the image,
# its mirror, four one-pixel shifts) cost only evaluation time.
FASHION_MNIST = dict(
    model="small_resnet_narrow",
    epochs=11,
    batch_size=128,
    optimizer="nesterov", lr=0.1, momentum=0.9, weight_decay=5e-4,
    schedule="onecycle", warmup=0.2,     # warmup: the fraction of steps spent rising to lr
    label_smoothing=0.1,
    flip=True, pad_crop=2,               # augmentation, drawn per image by the TensorLoader
    tta="shift",                         # evaluate on six views of each image (see train.evaluate), average the logits
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


def run(*, data: str | Path = "fashion_mnist", model: str | None = None, epochs: int | None = None,
        out: str | Path | None = None, batch_size: int | None = None, lr: float | None = None, amp=None,
        pretrained: bool = False, size: int | None = None, val_fraction: float = 0.1, resume: bool = False,
        quick: bool | None = None, progress: bool = True, callbacks=(), seed: int = 0,
        recipe: dict = FASHION_MNIST) -> dict:
    """Train ``recipe`` (with any arguments given here overriding it) on ``data`` and report on its test set.

    ``data`` is a dataset name (fashion_mnist, mnist, cifar10) or a folder of your own images, one
    sub-folder per class (read at ``size`` px, default 64; a pretrained model gets its weights' own
    size, mean and std). A stratified ``val_fraction`` of the training images is held out as the
    validation set that picks ``best.pt``; the test set (a named dataset's test split; none for a folder)
    is used once, at the end. ``val_fraction=0`` trains on every training image and writes no best.pt.

    Writes ``out/last.pt`` and ``out/best.pt`` (checkpoints that ``cvlab.load`` rebuilds), ``history.json``,
    ``history.png`` and ``confusion_matrix.png`` (test set, else validation). ``amp=None`` means bf16 where
    the CPU computes it natively, fit's default on GPUs. Returns ``{"history", "test", "model", "out"}``
    (``test`` is None when there is no test set).
    """
    quick = config.QUICK if quick is None else quick
    hp = dict(recipe, **{k: v for k, v in dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr).items()
                         if v is not None})
    config.seed_everything(seed)
    config.fast_kernels()
    _, _, dev = train.setup_distributed()
    if amp is None:
        amp = cpu_amp() if dev.type == "cpu" else None
    # pretrained weights expect their own input size, mean and std
    cfg = models.data_config(models.create(hp["model"], num_classes=2)) if pretrained else {}
    if Path(data).is_dir() or any(sep in str(data) for sep in "/\\"):  # a folder of your own images
        px = size or (cfg["input_size"][-1] if cfg else 64)
        train_set, test_set = cvdata.image_folder(data, size=px, channels=3 if pretrained else None), None
    else:
        train_set, test_set = cvdata.load(str(data), "train"), cvdata.load(str(data), "test")
    if quick:
        train_set = cvdata.subset(train_set, n=min(QUICK_SIZES["n_train"], len(train_set)), seed=seed)
        if test_set is not None:
            test_set = cvdata.subset(test_set, n=min(QUICK_SIZES["n_test"], len(test_set)), seed=seed)
        hp["epochs"] = epochs or QUICK_SIZES["epochs"]
        hp["batch_size"] = batch_size or QUICK_SIZES["batch_size"]  # enough steps to learn something
    train_set, val_set = cvdata.split(train_set, val_fraction, seed=seed) if val_fraction else (train_set, None)
    c, h = train_set.images.shape[1], train_set.images.shape[2]
    net = models.create(hp["model"], num_classes=train_set.num_classes, in_chans=c, pretrained=pretrained)
    norm = {"mean": list(cfg["mean"]), "std": list(cfg["std"])} if cfg else {}
    if norm and len(norm["mean"]) != c:  # gray images into RGB weights: the stem was folded to one channel
        norm = {k: [sum(v) / len(v)] * c for k, v in norm.items()}
    loader = cvdata.TensorLoader(train_set, batch_size=hp["batch_size"], shuffle=True, device=dev, flip=hp["flip"],
                                 pad_crop=max(1, round(hp["pad_crop"] * h / 28)) if hp["pad_crop"] else 0, seed=seed,
                                 channels_last=hp["channels_last"], **norm)
    callbacks = list(callbacks)
    out = Path(out) if out is not None else None
    if out is not None:
        callbacks.append(train.Checkpoint(out, monitor="val_acc" if val_set is not None else None))
    history = train.fit(net, loader, val_set, epochs=hp["epochs"], optimizer=hp["optimizer"], lr=hp["lr"],
                        momentum=hp["momentum"], weight_decay=hp["weight_decay"], schedule=hp["schedule"],
                        warmup=hp["warmup"], label_smoothing=hp["label_smoothing"], amp=amp,
                        channels_last=hp["channels_last"], tta=hp["tta"], callbacks=callbacks, progress=progress,
                        resume=resume and out is not None)  # the loader above carries the seed
    test = train.evaluate(net, test_set, amp=amp, tta=hp["tta"]) if test_set is not None else None
    if out is not None and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0):
        shown = test or (train.evaluate(net, val_set, amp=amp, tta=hp["tta"]) if val_set is not None else None)
        _write_outputs(out, history, test, shown, train_set.classes, hp)
    return {"history": history, "test": test, "model": net, "out": out}


def _write_outputs(out: Path, history: dict, test: dict | None, shown: dict | None, classes, hp: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only: no window, works without a display
    import matplotlib.pyplot as plt
    from . import plot
    out.mkdir(parents=True, exist_ok=True)
    scores = {"test_accuracy": test["accuracy"], "test_loss": test["loss"]} if test is not None else {}
    (out / "history.json").write_text(json.dumps({"recipe": hp, **scores, **history}, indent=1) + "\n")
    figures = [("history.png", plot.history(history))]
    if shown is not None:
        figures.append(("confusion_matrix.png", plot.confusion_matrix(shown["labels"], shown["predictions"], classes)))
    for name, fig in figures:
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
