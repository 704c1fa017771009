"""What fit's conveniences cost: cvlab.train.fit against a minimal hand-written loop, side by side.

Both train the default recipe's model (small_resnet) on the same 8,192 Fashion-MNIST images with
the same TensorLoader, optimizer (SGD + Nesterov), one-cycle schedule, label smoothing and bf16
autocast, for the same number of steps, on the CPU. Runs alternate (hand, fit, hand, fit, ...) so
that a burst of load from other processes hits both; the figure is the median over rounds of
fit's time divided by the hand-written loop's time in the same round.

    .venv/bin/python benchmarks/loop_overhead.py [--rounds 5] [--epochs 2]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import cvlab
from cvlab import data, models, recipes
from cvlab.train import fit

HP = recipes.FASHION_MNIST


def hand_written(model, loader, epochs: int, amp_dtype) -> None:
    """The loop every tutorial writes: nothing but zero_grad, forward, backward, step."""
    opt = torch.optim.SGD(model.parameters(), lr=HP["lr"], momentum=HP["momentum"], nesterov=True,
                          weight_decay=HP["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=HP["lr"], total_steps=epochs * len(loader),
                                                pct_start=HP["warmup"])
    model.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            with torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(x), y, label_smoothing=HP["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def with_fit(model, loader, epochs: int, amp) -> None:
    fit(model, loader, epochs=epochs, optimizer=HP["optimizer"], lr=HP["lr"], momentum=HP["momentum"],
        weight_decay=HP["weight_decay"], schedule=HP["schedule"], warmup=HP["warmup"],
        label_smoothing=HP["label_smoothing"], amp=amp, channels_last=True, device="cpu", progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--images", type=int, default=8192)
    args = p.parse_args()
    cvlab.seed_everything(0)
    train = data.subset(data.load("fashion_mnist", "train"), n=args.images, seed=0)
    loader = data.TensorLoader(train, batch_size=HP["batch_size"], shuffle=True, flip=HP["flip"],
                               pad_crop=HP["pad_crop"], device="cpu", channels_last=True)
    amp = recipes.cpu_amp()
    amp_dtype = torch.bfloat16 if amp else None
    start = models.create(HP["model"], num_classes=10, in_chans=1).to(memory_format=torch.channels_last)
    steps = args.epochs * len(loader)
    print(f"{steps} steps of {HP['model']} (batch {HP['batch_size']}, amp {amp or 'off'}) per run, "
          f"{args.rounds} rounds; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with_fit(copy.deepcopy(start), loader, 1, amp)  # warm up: allocator, oneDNN kernels
    times = {"hand": [], "fit": []}
    for r in range(args.rounds):
        for name, run in (("hand", lambda m: hand_written(m, loader, args.epochs, amp_dtype)),
                          ("fit", lambda m: with_fit(m, loader, args.epochs, amp))):
            model = copy.deepcopy(start)
            t = time.perf_counter()
            run(model)
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}: hand-written {times['hand'][-1]:.3f} s, fit {times['fit'][-1]:.3f} s", flush=True)
    hand, fitted = statistics.median(times["hand"]), statistics.median(times["fit"])
    # Each round's two runs sit side by side in time, so their ratio cancels most of the machine's load.
    ratio = statistics.median(f / h for f, h in zip(times["fit"], times["hand"]))
    print(f"median: hand-written {hand:.3f} s ({1000 * hand / steps:.1f} ms/step), fit {fitted:.3f} s "
          f"({1000 * fitted / steps:.1f} ms/step); fastest runs' ratio {min(times['fit']) / min(times['hand']):.3f}; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(f"reproduce: .venv/bin/python benchmarks/loop_overhead.py --rounds {args.rounds} --epochs {args.epochs}")
    print(f"RESULT loop_overhead {ratio:.3f} x (target <= 1.05)")


if __name__ == "__main__":
    sys.exit(main())
