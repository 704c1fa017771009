"""The default recipe on one CUDA GPU: training steps that never wait on the GPU, images/s, time to 93%.

Trains the default Fashion-MNIST recipe as benchmarks/time_to_accuracy.py does (all 60,000 training
images, the test set evaluated after every epoch, the clock started before the data is loaded), and:

- runs every training step under ``torch.cuda.set_sync_debug_mode("error")``, so a call that makes
  the host wait for the GPU raises. Left out, by design: the first step (fit checks the first batch
  once), the optimizer step of every 25th (fit reads the losses then) and each epoch's evaluation.
  The first synchronising call stops the check: its traceback is printed, and training runs again
  without the check for the timings;
- times the training part of every epoch after the first (the warm-up) between
  ``torch.cuda.synchronize()`` calls, for the steady-state images/s.

Needs the full Fashion-MNIST in datasets/FashionMNIST/raw (git-ignored: copy it along). Without
CUDA it says so and exits 0, so ``make bench`` runs everywhere.

    .venv/bin/python benchmarks/gpu_check.py [--target 0.93] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback

import torch

from cvlab import data, recipes
from time_to_accuracy import TimeToAccuracy  # this folder is on sys.path when the script runs


class GuardedSteps:
    """A fit callback: sync debug mode "error" during training steps (with ``check``), and a clock on them."""

    def __init__(self, check: bool):
        self.check = check
        self.seconds, self.images, self.started = 0.0, 0, None

    def _mode(self, mode: str) -> None:
        if self.check:
            torch.cuda.set_sync_debug_mode(mode)

    def on_epoch_start(self, state) -> None:
        if state.epoch >= 1:  # the first epoch warms up: cuDNN picks its kernels, the allocator fills its cache
            torch.cuda.synchronize()
            self.started = time.perf_counter()
        if state.step > 0:  # the first step checks the first batch, reading the device
            self._mode("error")

    def on_before_step(self, state) -> None:
        if (state.step + 1) % 25 == 0:  # fit reads the losses at the end of this step, by design
            self._mode("default")

    def on_step_end(self, state) -> None:
        if state.batch < state.batches_per_epoch:
            self._mode("error")
            return
        self._mode("default")  # the epoch's last step: evaluation follows, and it reads the device
        if self.started is not None:
            torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self.started
            self.images += sum(state.sizes)
            self.started = None


def train(target: float, seed: int, check: bool) -> tuple[TimeToAccuracy, GuardedSteps]:
    start = time.perf_counter()
    test = data.load("fashion_mnist", "test")
    timer, steps = TimeToAccuracy(target, start, test, None), GuardedSteps(check)  # amp None: fit's bf16 on GPUs
    try:
        recipes.run(data="fashion_mnist", quick=False, seed=seed, val_fraction=0, progress=False,
                    callbacks=[steps, timer])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    if len(test) < 10_000:
        print(f"warning: the test set has {len(test)} images, not 10,000: the full Fashion-MNIST is missing "
              "from datasets/FashionMNIST/raw, so these figures are not comparable", flush=True)
    return timer, steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", type=float, default=0.93)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: needs a CUDA GPU and torch.cuda.is_available() is False here; nothing measured.")
        return 0
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"recipe: {recipes.FASHION_MNIST}", flush=True)
    sync_errors = 0
    try:
        timer, steps = train(args.target, args.seed, check=True)
    except RuntimeError as e:
        if "synchronizing CUDA operation" not in str(e):
            raise
        traceback.print_exc()
        print("a training step made the host wait for the GPU (traceback above); training again without "
              "the check, for the timings", flush=True)
        sync_errors = 1
        timer, steps = train(args.target, args.seed, check=False)
    print(f"reproduce: .venv/bin/python benchmarks/gpu_check.py --target {args.target} --seed {args.seed}")
    print(f"RESULT images_per_s {steps.images / max(steps.seconds, 1e-9):.0f} img/s (target >= 20000)")
    print(f"RESULT sync_errors {sync_errors} count (target == 0)")
    print(timer.result(60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
