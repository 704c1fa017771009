"""Time to 93% test accuracy: the default recipe on full Fashion-MNIST (60,000 images) on this CPU.

The clock starts before the data is loaded and includes every per-epoch evaluation on the
10,000 test images. Also prints the peak resident memory (RSS) of the whole process.

    .venv/bin/python benchmarks/time_to_accuracy.py [--target 0.93]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

from cvlab import recipes


class TimeToAccuracy:
    """Remembers the wall time at which val accuracy first reached ``target``."""

    def __init__(self, target: float, start: float):
        self.target, self.start, self.reached = target, start, None

    def on_epoch_end(self, state) -> None:
        if self.reached is None and state.history["val_acc"][-1] >= self.target:
            self.reached = (time.perf_counter() - self.start, state.epoch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", type=float, default=0.93)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; recipe: {recipes.FASHION_MNIST}", flush=True)
    start = time.perf_counter()
    timer = TimeToAccuracy(args.target, start)
    result = recipes.run(data="fashion_mnist", quick=False, seed=args.seed, callbacks=[timer])
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    h = result["history"]
    print(f"final test accuracy {100 * result['test']['accuracy']:.2f}% after {h['epoch'][-1]} epochs, "
          f"{total:.1f} s in all; load average now {os.getloadavg()[0]:.2f}")
    print(f"reproduce: .venv/bin/python benchmarks/time_to_accuracy.py --seed {args.seed}")
    print(f"RESULT peak_rss {peak_mb / 1024:.2f} GB (target <= 2)")
    if timer.reached is None:
        print(f"RESULT time_to_{100 * args.target:.1f}pct never s (target <= 240): best test accuracy "
              f"{100 * max(h['val_acc']):.2f}%")
    else:
        seconds, epoch = timer.reached
        print(f"RESULT time_to_{100 * args.target:.1f}pct {seconds:.1f} s (target <= 240) at epoch {epoch}")


if __name__ == "__main__":
    sys.exit(main())
