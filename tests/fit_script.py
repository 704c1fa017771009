"""A small seeded training run for tests/test_train.py, in its own process: to be killed and resumed, or run under torchrun.

    python tests/fit_script.py OUT [--epochs 3] [--sleep 0.02]
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/fit_script.py OUT

Prints "start step N" and "step N" lines, and writes OUT/final_rank<R>.pt (weights) and, on rank 0,
OUT/history.json; checkpoints go to OUT/last.pt every 5 steps.
"""
import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn as nn

import cvlab
from cvlab.train import Checkpoint, fit


class Report:
    """Prints every step (so a test knows when to kill this process), then slows down a little."""

    def __init__(self, sleep: float):
        self.sleep = sleep

    def on_fit_start(self, state):
        print(f"start step {state.step} epoch {state.epoch} batch {state.batch}", flush=True)

    def on_step_end(self, state):
        print(f"step {state.step}", flush=True)
        time.sleep(self.sleep)


def tiny_model() -> nn.Module:
    # Batch norm and dropout: both carry state (running statistics, RNG draws) that resume must restore.
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 7 * 7, 10))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sleep", type=float, default=0.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    cvlab.seed_everything(0, deterministic=True)
    data = cvlab.data.load("fashion_mnist", "test").take(range(1024))
    loader = cvlab.data.TensorLoader(data, batch_size=32, shuffle=True, flip=True, pad_crop=2, device="cpu", seed=0)
    model = tiny_model()
    history = fit(model, loader, data.take(range(256)), epochs=args.epochs, lr=0.05, schedule="onecycle",
                  device="cpu", callbacks=[Checkpoint(args.out, every=5), Report(args.sleep)], resume=True,
                  progress=False)
    rank = int(os.environ.get("RANK", "0"))
    torch.save(model.state_dict(), Path(args.out) / f"final_rank{rank}.pt")
    if rank == 0:
        (Path(args.out) / "history.json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
