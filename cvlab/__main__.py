"""The command line: ``python -m cvlab <command>`` (also installed as ``cvlab``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def demo(args: argparse.Namespace) -> None:
    """Load Fashion-MNIST, print its summary and write a per-class sample grid and mean images to ``--out``."""
    import matplotlib
    matplotlib.use("Agg")
    from . import data, eda, plot
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        ds = data.load("fashion_mnist", split)
        print(f"== {split}: {ds}\n{eda.summary(ds)}\n")
    plot.class_grid(ds, per_class=10).savefig(out / "samples.png", dpi=100)
    plot.class_means(ds).savefig(out / "class_means.png", dpi=100)
    (out / "summary.txt").write_text(str(eda.summary(ds)) + "\n")
    print(f"wrote {out / 'samples.png'}, {out / 'class_means.png'} and {out / 'summary.txt'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvlab", description="cvlab: the course package's command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="summarise the default data (Fashion-MNIST) and write plots")
    p.add_argument("--out", default="runs/demo", help="folder for the plots and summary (default: runs/demo)")
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
