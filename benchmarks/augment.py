"""Images per second: the same standard augmentation pipeline in albumentations and in
torchvision.transforms.v2, at 32 px and at 224 px, side by side.

The pipeline is ``cvlab.augment.pipeline("standard", backend=...)``: random resized crop (8-100% of
the area, aspect 3/4-4/3, bilinear), horizontal flip, colour jitter 0.4/0.4/0.4/0.1, then scaling
to [0, 1] and ImageNet normalization (done in torch by cvlab's adapter, the same for both). Each
library gets its own input type: albumentations (H, W, 3) NumPy arrays, torchvision (3, H, W)
uint8 tensors. Sources are real photos: squashed to 32 x 32 (CIFAR-like) for 32 px, and resized
to a short side of 256 (ImageNet-like) for 224 px. One thread each (``--threads``), as in one
DataLoader worker; the figure is the best of ``--rounds`` rounds of about ``--seconds`` each.

    python benchmarks/augment.py [--seconds 2] [--rounds 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np
import torch

from cvlab import augment, data
from cvlab.image import IMAGENET_MEAN, IMAGENET_STD, resize

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")
BACKENDS = ("albumentations", "torchvision")


def sources(size: int) -> list[np.ndarray]:
    """The photos as the pipeline's input for output ``size``: (H, W, 3) uint8."""
    photos = [data.sample_image(name) for name in PHOTOS]
    if size <= 32:
        return [resize(p, 32, "area") for p in photos]
    short = 256
    return [resize(p, (round(p.shape[0] * short / min(p.shape[:2])), round(p.shape[1] * short / min(p.shape[:2]))),
                   "area") for p in photos]


def images_per_second(transform, inputs: list, seconds: float, rounds: int) -> float:
    """Best round's throughput; each round transforms the inputs in turn for about ``seconds``."""
    for img in inputs:  # warm up: builds the per-size transform, first-call costs
        transform(img)
    best = 0.0
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for img in inputs:
                out = transform(img)
            n += len(inputs)
        assert out.dtype == torch.float32
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed round (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case; the best counts (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    import albumentations
    import torchvision
    print(f"albumentations {albumentations.__version__}, torchvision {torchvision.__version__}, "
          f"OpenCV {cv2.__version__}, torch {torch.__version__}; {args.threads} thread(s)")

    results = {}
    for size in (32, 224):
        arrays = sources(size)
        native = {"albumentations": arrays, "torchvision": [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays]}
        print(f"\n{size} px output, from {len(arrays)} photos {'squashed to 32x32' if size <= 32 else 'with a short side of 256'}:")
        for backend in BACKENDS:
            transform = augment.pipeline("standard", size=size, backend=backend, mean=IMAGENET_MEAN, std=IMAGENET_STD)
            results[backend, size] = images_per_second(transform, native[backend], args.seconds, args.rounds)
            print(f"  {backend:15s} {results[backend, size]:9,.0f} images/s")

    print(f"\nreproduce: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    for size in (32, 224):
        for backend in BACKENDS:
            print(f"RESULT augment_{backend}_{size}px {results[backend, size]:.0f} images/s (reference)")
    ratio32 = results["albumentations", 32] / results["torchvision", 32]
    ratio224 = results["albumentations", 224] / results["torchvision", 224]
    print(f"RESULT augment_albumentations_over_torchvision_32px {ratio32:.2f} x (reference)")
    print(f"RESULT augment_albumentations_over_torchvision_224px {ratio224:.2f} x (reference)")


if __name__ == "__main__":
    main()
