"""The command line: ``python -m cvlab <command>`` (also installed as ``cvlab``).

    python -m cvlab train --data fashion_mnist --model small_resnet --epochs 10 --out runs/small_resnet
    python -m cvlab train --data photos/ --model efficientnet_lite0 --pretrained --size 224 --out runs/photos
    python -m cvlab evaluate runs/photos/best.pt --data photos_test/   # report + confusion matrix PNG
    python -m cvlab predict runs/photos/best.pt cat.jpg more_photos/ --top-k 3 --csv predictions.csv
    python -m cvlab export runs/photos/best.pt --onnx model.onnx --int8   # ONNX (int8: calibrated on training images)
    python -m cvlab serve runs/photos/best.pt        # a Gradio app on http://127.0.0.1:7860 (also model.onnx)
    python -m cvlab demo --out runs/demo            # the default recipe, end to end
    torchrun --nproc_per_node=2 -m cvlab train ...  # one process per GPU (or CPU, with gloo)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _amp(value: str):
    return {"auto": None, "on": True, "off": False}.get(value, value)


def train(args: argparse.Namespace) -> None:
    """Train a model with the default recipe; print progress and the test accuracy; write checkpoints and plots."""
    from . import recipes
    out = Path(args.out or f"runs/{args.model or recipes.FASHION_MNIST['model']}")
    result = recipes.run(data=args.data, model=args.model, epochs=args.epochs, out=out, batch_size=args.batch_size,
                         lr=args.lr, amp=_amp(args.amp), pretrained=args.pretrained, size=args.size,
                         val_fraction=args.val_fraction, resume=args.resume, quick=args.quick or None,
                         progress=True, seed=args.seed)
    if int(os.environ.get("RANK", "0")) == 0:
        h = result["history"]
        epochs = f"after {h['epoch'][-1] if h['epoch'] else 0} epochs ({h['time'][-1] if h['time'] else 0:.0f} s of training)"
        if h["val_acc"]:
            print(f"validation accuracy {100 * h['val_acc'][-1]:.2f}% (best {100 * max(h['val_acc']):.2f}%, "
                  f"kept in best.pt) {epochs}")
        if result["test"] is not None:
            print(f"test accuracy {100 * result['test']['accuracy']:.2f}% {epochs}")
        files = ["last.pt"] + (["best.pt"] if h["val_acc"] else []) + ["history.json", "history.png"]
        print(f"wrote {out}/{{{','.join(files)}}}" + (" and confusion_matrix.png" if (out / "confusion_matrix.png").exists() else ""))


def evaluate(args: argparse.Namespace) -> None:
    """A checkpoint on a dataset: the per-class report, accuracy, and a confusion-matrix PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from . import data, load, metrics, plot, train as tr
    model = load(args.checkpoint)
    pre = model.preprocess
    if Path(args.data).is_dir():
        ds = data.image_folder(args.data, size=tuple(pre.size) if pre and pre.size else 64,
                               channels=pre.channels if pre else None)
    else:
        ds = data.load(args.data, args.split)
    if model.classes and list(ds.classes) != list(model.classes):
        raise SystemExit(f"error: {args.data} has classes {ds.classes}, but {args.checkpoint} was trained on "
                         f"{model.classes}; evaluate on data with the same class folders.")
    result = tr.evaluate(model, ds, amp=_amp(args.amp))
    print(metrics.classification_report(result["labels"], result["predictions"], ds.classes))
    print(f"accuracy {100 * result['accuracy']:.2f}% on {len(ds)} images of {ds}")
    png = Path(args.out) if args.out else Path(args.checkpoint).with_name("confusion_matrix_eval.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot.confusion_matrix(result["labels"], result["predictions"], ds.classes).savefig(png, dpi=100)
    print(f"wrote {png}")


def predict(args: argparse.Namespace) -> None:
    """Top-k classes for each image file (folders are searched for images); optionally a CSV."""
    import csv
    from . import data, deploy, train as tr
    model = deploy.load(args.checkpoint)
    files = data.image_files(*args.paths)
    if isinstance(model, deploy.OnnxModel):  # an exported model: its input size and channels are in the file
        probs = model.predict(data.load_images(files, size=model.size, channels=model.channels))
    else:
        pre = model.preprocess
        images = data.load_images(files, size=tuple(pre.size) if pre and pre.size else 64,
                                  channels=pre.channels if pre and pre.channels else 3)
        probs = tr.predict(model, images, amp=_amp(args.amp))
    k = min(args.top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    classes = model.classes or [str(i) for i in range(probs.shape[1])]
    rows = []
    for f, p, i in zip(files, top_p.tolist(), top_i.tolist()):
        rows.append([str(f)] + [x for c, q in zip(i, p) for x in (classes[c], f"{q:.4f}")])
        print(f"{f}: " + ", ".join(f"{classes[c]} {q:.1%}" for c, q in zip(i, p)))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file"] + [x for j in range(1, k + 1) for x in (f"class_{j}", f"prob_{j}")])
            writer.writerows(rows)
        print(f"wrote {args.csv} ({len(rows)} images)")


def export(args: argparse.Namespace) -> None:
    """A checkpoint as an ONNX file (uint8 images in, logits out), checked against PyTorch; optionally int8."""
    import shutil
    import tempfile
    from . import data, deploy, load, train as tr
    if not args.int8 and (args.keep_float or args.calibration_data or args.calibration != 300):
        raise ValueError("--keep-float, --calibration and --calibration-data only apply with --int8")
    model = load(args.checkpoint)
    out = Path(args.onnx)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float32.onnx" if args.int8 else out
        exported = deploy.export_onnx(model, float_path, input_size=(args.input_size,) * 2 if args.input_size else None)
        print(f"exported {args.checkpoint} ({type(model).__name__}): max |onnx - torch| {exported.max_abs_diff:.1e} "
              f"over the logits of a random batch, {exported.bytes / 1e6:.2f} MB float32")
        if not args.int8:
            print(f"wrote {out}")
            return
        calibration, check = _calibration_data(args, model)
        deploy.quantize(float_path, out, mode=args.int8, calibration=calibration.images)
        fp = tr.evaluate(model, check)
        q = deploy.OnnxModel(out).evaluate(check)
        agree = (q["predictions"] == fp["predictions"]).float().mean().item()
        print(f"int8 ({args.int8}, calibrated on {len(calibration)} training images): {deploy.file_size(out) / 1e6:.2f} MB; "
              f"on {len(check)} held-out images accuracy {100 * q['accuracy']:.2f}% (float32 PyTorch "
              f"{100 * fp['accuracy']:.2f}%), the same prediction for {100 * agree:.1f}%")
        print(f"wrote {out}")
        if args.keep_float:
            shutil.copy(float_path, out.with_name(out.stem + ".float32.onnx"))


def _calibration_data(args, model):
    """(calibration images, labelled held-out images): to calibrate int8 and to check its accuracy."""
    import torch
    from . import data
    pre = model.preprocess
    source = args.calibration_data
    if source is None:
        from .app import trained_on_fashion_mnist
        if trained_on_fashion_mnist(model):
            source = "fashion_mnist"
        else:
            raise ValueError("--int8 needs images like the training ones to calibrate: add --calibration-data with "
                             "the training folder (one sub-folder per class) or a dataset name")
    if Path(source).is_dir():  # half to calibrate on, the other half to check
        size = tuple(pre.size) if pre and pre.size else (args.input_size or 64,) * 2
        train, check = data.split(data.image_folder(source, size=size, channels=pre.channels if pre else None), 0.5)
    else:
        train, check = data.load(source, "train"), data.load(source, "test")
    generator = torch.Generator().manual_seed(0)
    calibration = train.take(torch.randperm(len(train), generator=generator)[:args.calibration])
    return calibration, check.take(torch.randperm(len(check), generator=generator)[:1000])


def serve(args: argparse.Namespace) -> None:
    """A Gradio app for a checkpoint or an ONNX file on localhost."""
    from . import app, data
    examples = [str(f) for f in data.image_files(args.examples)] if args.examples else None
    print(f"serving {args.model} on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    app.serve(args.model, host=args.host, port=args.port, examples=examples)


def demo(args: argparse.Namespace) -> None:
    """The default recipe on Fashion-MNIST, end to end: a sample grid, training, test accuracy and plots in ``--out``."""
    import matplotlib
    matplotlib.use("Agg")
    from . import config, data, plot
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = data.load("fashion_mnist", "test")
    print(f"data: {ds}")
    plot.class_grid(ds, per_class=10).savefig(out / "samples.png", dpi=100)
    quick = args.quick or config.QUICK
    print(f"training the default recipe{' (quick mode: a small subset, 2 epochs)' if quick else ''}; "
          f"outputs go to {out}/")
    args.data, args.model, args.epochs, args.batch_size, args.lr, args.amp = "fashion_mnist", None, None, None, None, "auto"
    args.resume, args.seed, args.quick = False, 0, quick
    args.pretrained, args.size, args.val_fraction = False, None, 0.1
    train(args)
    print(f"wrote {out / 'samples.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvlab", description="cvlab: the course package's command line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset with the default recipe",
                       description="Train with the default recipe (see cvlab.recipes.FASHION_MNIST); the options override it.")
    p.add_argument("--data", default="fashion_mnist",
                   help="dataset name: fashion_mnist (default), mnist or cifar10; or a folder with one sub-folder of "
                        "images per class (a stratified validation split is made from it)")
    p.add_argument("--model", default=None, help="a cvlab model (cvlab.models.list_models()) or any timm model name")
    p.add_argument("--pretrained", action="store_true",
                   help="start from ImageNet weights (offline: efficientnet_lite0), with their own preprocessing")
    p.add_argument("--size", type=int, default=None,
                   help="image side in pixels for a folder (default: 64, or the pretrained weights' size)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training images held out to choose best.pt (default 0.1; 0: none)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (default: the recipe's)")
    p.add_argument("--out", default=None, help="folder for checkpoints, history and plots (default: runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if it exists")
    p.add_argument("--amp", nargs="?", const="on", default="auto", choices=["auto", "on", "off", "bf16", "fp16"],
                   help="mixed precision: auto (default: bf16 on CPUs that have it natively, GPUs' best), "
                        "on (--amp alone), off, bf16 or fp16")
    p.add_argument("--batch-size", type=int, default=None, help="batch size per process (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--quick", action="store_true", help="a small subset and 2 epochs (also CVLAB_QUICK=1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=train)

    p = sub.add_parser("evaluate", help="report a checkpoint's accuracy per class on a dataset or image folder")
    p.add_argument("checkpoint", help="a checkpoint written by train (e.g. runs/x/best.pt)")
    p.add_argument("--data", required=True, help="a dataset name (its --split) or a folder with one sub-folder per class")
    p.add_argument("--split", default="test", choices=["train", "test"], help="split of a named dataset (default test)")
    p.add_argument("--out", default=None, help="confusion-matrix PNG (default: confusion_matrix_eval.png beside the checkpoint)")
    p.add_argument("--amp", default="off", choices=["auto", "on", "off", "bf16", "fp16"], help="mixed precision (default off)")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("predict", help="top-k classes for image files and folders")
    p.add_argument("checkpoint", help="a checkpoint written by train (e.g. runs/x/best.pt), or an exported .onnx")
    p.add_argument("paths", nargs="+", help="image files and folders (searched recursively)")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default 3)")
    p.add_argument("--csv", default=None, help="also write file, class_1, prob_1, ... to this CSV")
    p.add_argument("--amp", default="off", choices=["auto", "on", "off", "bf16", "fp16"], help="mixed precision (default off)")
    p.set_defaults(func=predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (optionally int8) and check it against PyTorch")
    p.add_argument("checkpoint", help="a checkpoint written by train (e.g. runs/x/best.pt)")
    p.add_argument("--onnx", required=True, help="the ONNX file to write (uint8 images in, logits out)")
    p.add_argument("--int8", nargs="?", const="static", default=None, choices=["static", "dynamic"],
                   help="quantize to int8: static (--int8 alone; calibrated on training images) or dynamic")
    p.add_argument("--calibration-data", default=None,
                   help="images to calibrate int8 on and check it with: a class-folder or a dataset name "
                        "(default: fashion_mnist for a model trained on its classes)")
    p.add_argument("--calibration", type=int, default=300, help="how many calibration images (default 300)")
    p.add_argument("--keep-float", action="store_true", help="with --int8, also keep <name>.float32.onnx")
    p.add_argument("--input-size", type=int, default=None,
                   help="image side in pixels, for a checkpoint that does not record its input size (trained from "
                        "a DataLoader); default: the recorded size")
    p.set_defaults(func=export)

    p = sub.add_parser("serve", help="a web app (Gradio) for a checkpoint or ONNX file, on localhost")
    p.add_argument("model", help="a checkpoint (.pt) or an exported model (.onnx)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--examples", default=None, help="a folder of example images (default: a few test images)")
    p.set_defaults(func=serve)

    p = sub.add_parser("demo", help="train the default recipe on Fashion-MNIST and write its plots")
    p.add_argument("--out", default="runs/demo", help="folder for the outputs (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a small subset and 2 epochs (also CVLAB_QUICK=1)")
    p.set_defaults(func=demo)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
