"""Build datasets/fashion_mnist_sample.npz: a class-balanced Fashion-MNIST subset committed to the repo.

200 training and 100 test images per class (2,000 + 1,000), drawn with a fixed seed from the full
dataset, so the project runs anywhere without a download. Run: python datasets/make_fashion_mnist_sample.py
"""
from pathlib import Path

import numpy as np

from cvlab import data

OUT = Path(__file__).resolve().parent / data.FASHION_MNIST_SAMPLE
PER_CLASS = {"train": 200, "test": 100}


def main() -> None:
    arrays = {}
    for split, n in PER_CLASS.items():
        full = data.load("fashion_mnist", split)
        if "sample" in full.source:
            raise SystemExit("the full Fashion-MNIST is needed to make the sample; install dataset-fashion-mnist or go online")
        part = data.subset(full, n_per_class=n, seed=0)
        arrays[f"{split}_images"] = part.images[:, 0].numpy()  # (N, 28, 28) uint8
        arrays[f"{split}_labels"] = part.labels.numpy().astype(np.uint8)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
