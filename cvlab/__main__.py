"""The command line: ``python -m cvlab <command>`` (also installed as ``cvlab``).

    python -m cvlab train --data fashion_mnist --model small_resnet --epochs 10 --out runs/small_resnet
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
                         lr=args.lr, amp=_amp(args.amp), resume=args.resume, quick=args.quick or None,
                         progress=True, seed=args.seed)
    if int(os.environ.get("RANK", "0")) == 0:
        h = result["history"]
        print(f"test accuracy {100 * result['test']['accuracy']:.2f}% after {h['epoch'][-1] if h['epoch'] else 0} "
              f"epochs ({h['time'][-1] if h['time'] else 0:.0f} s of training)")
        print(f"wrote {out}/last.pt, best.pt, history.json, history.png and confusion_matrix.png")


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
    train(args)
    print(f"wrote {out / 'samples.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvlab", description="cvlab: the course package's command line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset with the default recipe",
                       description="Train with the default recipe (see cvlab.recipes.FASHION_MNIST); the options override it.")
    p.add_argument("--data", default="fashion_mnist", help="dataset name: fashion_mnist (default), mnist or cifar10")
    p.add_argument("--model", default=None, help="a cvlab model (cvlab.models.list_models()) or any timm model name")
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

    p = sub.add_parser("demo", help="train the default recipe on Fashion-MNIST and write its plots")
    p.add_argument("--out", default="runs/demo", help="folder for the outputs (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a small subset and 2 epochs (also CVLAB_QUICK=1)")
    p.set_defaults(func=demo)

    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
