"""Images per second: cvlab's tensor-resident loader against a torch DataLoader, side by side.

Both deliver shuffled Fashion-MNIST training batches of 256 with a random horizontal flip, a random
crop after 2-pixel zero padding, and normalization. The DataLoader uses the usual torchvision
transforms per image with 2 worker processes; the TensorLoader augments whole batches on the device.

    python benchmarks/loader.py [--epochs 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torchvision.transforms as T
from torchvision.datasets import FashionMNIST

from cvlab import config, data

MEAN, STD, BATCH = (0.2860,), (0.3530,), 256


def images_per_second(loader, epochs: int) -> float:
    """Best epoch's throughput, consuming every batch (a sum keeps lazy work honest)."""
    best = 0.0
    for _ in range(epochs):
        n, start = 0, time.perf_counter()
        for x, y in loader:
            x.sum().item()
            n += len(y)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="device of the tensor-resident loader (default cpu)")
    args = parser.parse_args()

    train = data.load("fashion_mnist", "train")  # also fills the torchvision-layout cache read below
    print(f"data: {train}; {torch.get_num_threads()} torch threads")

    transform = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(28, padding=2), T.ToTensor(), T.Normalize(MEAN, STD)])
    tv = FashionMNIST(str(config.data_root()), train=True, transform=transform)
    torch_loader = torch.utils.data.DataLoader(tv, batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=True)
    tensor_loader = data.TensorLoader(train, batch_size=BATCH, shuffle=True, device=args.device,
                                      flip=True, pad_crop=2, mean=MEAN, std=STD)

    dataloader_ips = images_per_second(torch_loader, args.epochs)
    print(f"torch DataLoader (num_workers=2): {dataloader_ips:,.0f} images/s")
    tensor_ips = images_per_second(tensor_loader, args.epochs)
    print(f"cvlab TensorLoader ({args.device}):      {tensor_ips:,.0f} images/s")
    print(f"reproduce: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"RESULT dataloader_images_per_s {dataloader_ips:.0f} images/s (reference)")
    print(f"RESULT tensor_loader_images_per_s {tensor_ips:.0f} images/s (reference)")
    print(f"RESULT loader_speedup {tensor_ips / dataloader_ips:.1f} x (target >= 10)")


if __name__ == "__main__":
    main()
