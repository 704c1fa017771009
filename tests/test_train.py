"""The training engine: the loop, schedules, checkpoints and resume, guards, DDP, the command line."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cvlab
from cvlab import data as cvdata
from cvlab.train import Checkpoint, EarlyStopping, NonFiniteLossError, StopTraining, evaluate, fit, \
    load_checkpoint, predict

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "fit_script.py"
# Subprocesses: one thread each, so two of them on two cores do not fight, and no quick-mode surprises.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CVLAB_QUICK": "0", "PYTHONPATH": str(HERE.parent)}


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(1024))


def tiny_cnn(*, bn: bool = True, dropout: float = 0.0, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8) if bn else nn.Identity(), nn.ReLU(),
                         nn.MaxPool2d(4), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * 7 * 7, num_classes))


def quiet(**kw):
    return dict(progress=False, device="cpu", **kw)


def without_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "time"}


class Recorder:
    """Records the learning rate and a copy of the gradients at every optimizer step."""

    def __init__(self):
        self.lrs, self.grads = [], []

    def on_before_step(self, state):
        self.lrs.append(state.optimizer.param_groups[0]["lr"])
        self.grads.append(torch.cat([p.grad.flatten() for p in state.model.parameters() if p.grad is not None]))


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def test_overfits_one_batch(fmnist):
    torch.manual_seed(0)
    batch = fmnist.take(range(32))
    model = tiny_cnn()
    history = fit(model, batch, epochs=60, batch_size=32, optimizer="adam", lr=1e-2, schedule=None,
                  weight_decay=0.0, **quiet())
    assert history["train_loss"][-1] < 0.05 * history["train_loss"][0]
    assert history["train_acc"][-1] == 1.0
    assert evaluate(model, batch)["accuracy"] == 1.0


@pytest.mark.parametrize("kind", ["tensor_loader", "dataloader"])
def test_accumulating_4x64_equals_one_batch_of_256(fmnist, kind):
    data = fmnist.take(range(256))
    grads = []
    for batch_size, accumulate in ((256, 1), (64, 4)):
        torch.manual_seed(0)
        model = tiny_cnn(bn=False)  # batch norm would see different batches; everything else must match
        if kind == "tensor_loader":
            loader = cvdata.TensorLoader(data, batch_size=batch_size, device="cpu")
        else:
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.images, data.labels),
                                                 batch_size=batch_size)
        rec = Recorder()
        fit(model, loader, epochs=1, accumulate=accumulate, optimizer="sgd", lr=0.1, schedule=None,
            callbacks=[rec], **quiet())
        assert len(rec.grads) == 1  # one optimizer step either way
        grads.append(rec.grads[0])
    big, accumulated = grads
    assert (accumulated - big).norm() / big.norm() < 1e-6


def test_soft_targets_plug_in(fmnist):
    """One-hot probabilities through batch_transform train exactly like the class indices they encode."""
    data = fmnist.take(range(128))
    results = []
    for transform in (None, lambda x, y: (x, F.one_hot(y, 10).float())):
        torch.manual_seed(0)
        model = tiny_cnn()
        h = fit(model, data, epochs=2, batch_size=32, batch_transform=transform, **quiet())
        results.append((h, model.state_dict()))
    (h1, w1), (h2, w2) = results
    assert h1["train_acc"] == h2["train_acc"]
    assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-6)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)


def test_mixed_targets_count_accuracy_by_their_argmax(fmnist):
    data = fmnist.take(range(64))

    def mix(x, y):  # Mixup-style: 70% of each image's label, 30% of its neighbour's
        t = F.one_hot(y, 10).float()
        return x, 0.7 * t + 0.3 * t.roll(1, 0)

    h = fit(tiny_cnn(), data, epochs=1, batch_size=64, batch_transform=mix, **quiet())
    assert math.isfinite(h["train_loss"][0]) and 0.0 <= h["train_acc"][0] <= 1.0


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(fmnist, amp):
    data = fmnist.take(range(128))
    torch.manual_seed(0)
    model = tiny_cnn()
    h = fit(model, data, data, epochs=3, batch_size=32, amp=amp, optimizer="adam", lr=3e-3, **quiet())
    assert all(math.isfinite(v) for v in h["train_loss"] + h["val_loss"])
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_evaluate_and_predict(fmnist):
    data = fmnist.take(range(100))
    torch.manual_seed(0)
    model = tiny_cnn(dropout=0.5).train()
    r = evaluate(model, data, batch_size=32)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        logits = model(data.images.float() / 255)
    assert r["loss"] == pytest.approx(F.cross_entropy(logits, data.labels).item(), rel=1e-5)
    assert r["accuracy"] == pytest.approx((logits.argmax(1) == data.labels).float().mean().item())
    torch.testing.assert_close(r["probabilities"], logits.softmax(1))
    assert torch.equal(r["predictions"], logits.argmax(1)) and torch.equal(r["labels"], data.labels)
    torch.testing.assert_close(predict(model, data.images), logits.softmax(1))
    with torch.no_grad():
        flipped = model(data.images.flip(3).float() / 255)
    torch.testing.assert_close(evaluate(model, data, tta=True)["probabilities"], ((logits + flipped) / 2).softmax(1))


def test_evaluate_with_shift_tta_averages_the_logits_of_six_views(fmnist):
    data = fmnist.take(range(50))
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    x = data.images.float() / 255
    padded = F.pad(x, (1, 1, 1, 1))  # a one-pixel shift fills the uncovered edge with zeros
    views = [x, x.flip(3), padded[..., :-2, 1:-1], padded[..., 2:, 1:-1], padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]
    with torch.no_grad():
        mean_logits = torch.stack([model(v) for v in views]).mean(0)
    torch.testing.assert_close(evaluate(model, data, tta="shift")["probabilities"], mean_logits.softmax(1))
    with pytest.raises(ValueError, match="tta must be False, True, 'flip' or 'shift'; got 'flips'"):
        evaluate(model, data, tta="flips")


def test_early_stopping_stops_after_patience(fmnist):
    data = fmnist.take(range(64))
    # lr=0 and no batch norm: the validation loss never changes, so only epoch 1 counts as an improvement.
    h = fit(tiny_cnn(bn=False), data, data, epochs=10, lr=0.0, callbacks=[EarlyStopping("val_loss", patience=2)],
            **quiet())
    assert h["epoch"] == [1, 2, 3]


def test_early_stopping_restores_the_best_weights(fmnist):
    train, val = fmnist.take(range(256)), fmnist.take(range(256, 512))

    class Snapshots:  # the weights after every epoch, to compare with what fit leaves behind
        def __init__(self):
            self.states = []

        def on_epoch_end(self, state):
            self.states.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})

    torch.manual_seed(0)
    model, snaps = tiny_cnn(), Snapshots()
    stop = EarlyStopping("val_acc", patience=2, restore_best=True)
    # a learning rate far too high: validation accuracy peaks early and then falls
    h = fit(model, train, val, epochs=8, lr=3.0, schedule=None, callbacks=[snaps, stop], **quiet())
    best = int(np.argmax(h["val_acc"]))
    assert stop.best_epoch == h["epoch"][best] and stop.best == h["val_acc"][best]
    assert best < len(h["epoch"]) - 1  # the last epoch is not the best: restoring changes something
    final = model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in snaps.states[best].items())
    assert evaluate(model, val)["accuracy"] == pytest.approx(h["val_acc"][best], abs=1e-6)


def test_early_stopping_warns_when_a_resumed_run_cannot_restore_the_best():
    stop = EarlyStopping("val_acc", patience=3, restore_best=True)
    stop.load_state_dict({"best": 0.9, "wait": 1, "best_epoch": 2})  # as a resumed run finds it: no weights in memory

    class State:
        history = {"epoch": [1, 2, 3, 4]}
        model = None

    with pytest.warns(UserWarning, match="best epoch \\(2\\) came before this run was resumed"):
        stop.on_fit_end(State())


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------

def onecycle(t, total, lr, pct):
    """torch's OneCycleLR (cosine annealing, div_factor 25, final_div_factor 1e4), written out."""
    start, low = lr / 25, lr / 25 / 1e4
    peak_step = pct * total - 1
    if t <= peak_step:
        return lr + (start - lr) / 2 * (1 + math.cos(math.pi * t / peak_step))
    return low + (lr - low) / 2 * (1 + math.cos(math.pi * (t - peak_step) / (total - 1 - peak_step)))


EPOCHS, BATCHES, LR, WARMUP = 6, 8, 0.4, 0.25  # 4 optimizer steps per epoch (accumulate=2): 24 in all
SPE = BATCHES // 2
T = EPOCHS * SPE
FORMULAS = {
    "constant": lambda t: LR,
    "step": lambda t: LR * 0.1 ** ((t // SPE) // 2),  # per epoch: step_size = epochs // 3 = 2
    "cosine": lambda t: LR * 0.5 * (1 + math.cos(math.pi * t / T)),
    "linear": lambda t: LR * (1 - t / T),
    "warmup_cosine": lambda t: LR * ((t + 1) / (WARMUP * T) if t < WARMUP * T
                                     else 0.5 * (1 + math.cos(math.pi * (t - WARMUP * T) / (T - WARMUP * T)))),
    "onecycle": lambda t: onecycle(t, T, LR, WARMUP),
    "exponential": lambda t: LR * 0.01 ** (t / T),
}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_schedule_follows_its_formula(fmnist, name):
    rec = Recorder()
    fit(tiny_cnn(), fmnist.take(range(BATCHES * 8)), epochs=EPOCHS, batch_size=8, accumulate=2, lr=LR,
        schedule=name, warmup=WARMUP, callbacks=[rec], **quiet())
    assert len(rec.lrs) == T
    assert rec.lrs == pytest.approx([FORMULAS[name](t) for t in range(T)], rel=1e-9, abs=1e-12)


def test_cosine_matches_torch_scheduler_stepped_per_step(fmnist):
    rec = Recorder()
    fit(tiny_cnn(), fmnist.take(range(64)), epochs=3, batch_size=8, lr=LR, schedule="cosine", callbacks=[rec], **quiet())
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=24)
    expected = []
    for _ in range(24):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert rec.lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_exponential_matches_torch_exponential_lr_stepped_per_step(fmnist):
    rec = Recorder()
    fit(tiny_cnn(), fmnist.take(range(64)), epochs=3, batch_size=8, lr=LR, schedule="exponential", callbacks=[rec],
        **quiet())
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    ref = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1 / 24))
    expected = []
    for _ in range(24):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert rec.lrs == pytest.approx(expected, rel=1e-9)
    assert expected[-1] == pytest.approx(LR * 0.01 ** (23 / 24))


def test_plateau_cuts_by_ten_after_two_epochs_without_a_better_validation_loss(fmnist):
    """With a learning rate too small to move the loss, no epoch improves on the first: cuts after epochs 3 and 5."""
    h = fit(tiny_cnn(), fmnist.take(range(64)), fmnist.take(range(64, 96)), epochs=6, batch_size=16, lr=1e-6,
            optimizer="sgd", momentum=0.0, schedule="plateau", **quiet())
    assert h["lr"] == pytest.approx([1e-6, 1e-6, 1e-6, 1e-7, 1e-7, 1e-8], rel=1e-6)


def test_scheduler_objects_step_per_epoch(fmnist):
    """A torch scheduler you pass (here ExponentialLR) changes the learning rate once per epoch."""
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rec = Recorder()
    fit(model, fmnist.take(range(32)), epochs=3, batch_size=8, optimizer=opt,
        schedule=torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5), callbacks=[rec], **quiet())
    assert rec.lrs == pytest.approx([LR * 0.5 ** (t // 4) for t in range(12)])


# ---------------------------------------------------------------------------------------------
# Determinism, checkpoints, resume
# ---------------------------------------------------------------------------------------------

def test_two_seeded_runs_give_identical_histories(fmnist):
    runs = []
    for _ in range(2):
        cvlab.seed_everything(0, deterministic=True)
        loader = cvdata.TensorLoader(fmnist.take(range(256)), batch_size=32, shuffle=True, flip=True, pad_crop=2,
                                     device="cpu", seed=0)
        model = tiny_cnn(dropout=0.3)
        h = fit(model, loader, fmnist.take(range(256, 384)), epochs=2, lr=0.05, **quiet())
        runs.append((without_time(h), model.state_dict()))
    (h1, w1), (h2, w2) = runs
    assert h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def read_until_prefix(proc: subprocess.Popen, prefix: str) -> list[str]:
    """The lines a process prints, up to and including the first that starts with ``prefix``."""
    seen = []
    for raw in proc.stdout:
        seen.append(raw.strip())
        if seen[-1].startswith(prefix):
            return seen
    raise AssertionError(f"the run ended before printing {prefix!r}; it printed: {seen[-5:]}; "
                         f"stderr: {proc.stderr.read()[-2000:]}")


def test_killed_mid_epoch_and_resumed_run_ends_bitwise_equal(tmp_path):
    """SIGKILL a real training process in its second epoch, resume it, and compare with a run never killed."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([sys.executable, str(SCRIPT), str(straight)], env=ENV, check=True, capture_output=True)

    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "--sleep", "0.05"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    read_until_prefix(proc, "step 42")  # 32 steps per epoch: batch 10 of epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final_rank0.pt").exists()

    resumed = subprocess.run([sys.executable, str(SCRIPT), str(killed)], env=ENV, check=True, capture_output=True,
                             text=True)
    start = resumed.stdout.splitlines()[0].split()  # "start step S epoch E batch B"
    step, epoch, batch = int(start[2]), int(start[4]), int(start[6])
    assert step >= 40 and step % 5 == 0 and epoch == 1 and batch > 0, resumed.stdout[:200]  # mid-epoch resume

    a = torch.load(straight / "final_rank0.pt")
    b = torch.load(killed / "final_rank0.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (straight, killed))
    assert without_time(ha) == without_time(hb)


def test_checkpoint_write_is_atomic(fmnist, tmp_path, monkeypatch):
    class StopAfterOneEpoch:
        def on_epoch_end(self, state):
            raise StopTraining

    model = tiny_cnn()
    ckpt = Checkpoint(tmp_path)
    fit(model, fmnist.take(range(64)), epochs=2, batch_size=32, callbacks=[ckpt, StopAfterOneEpoch()], **quiet())
    before = ckpt.last.read_bytes()

    def crash(obj, f, *a, **kw):  # half a file, then the process "dies"
        f.write(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cnn(), fmnist.take(range(64)), epochs=2, batch_size=32, callbacks=[ckpt], resume=True, **quiet())
    monkeypatch.undo()
    assert ckpt.last.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    restored = tiny_cnn()
    assert load_checkpoint(ckpt.last, restored)["epoch"] == 1
    assert all(torch.equal(restored.state_dict()[k], model.state_dict()[k]) for k in model.state_dict())


def test_resume_refuses_a_different_number_of_epochs(fmnist, tmp_path):
    ckpt = Checkpoint(tmp_path)
    fit(tiny_cnn(), fmnist.take(range(32)), epochs=1, callbacks=[ckpt], **quiet())
    with pytest.raises(ValueError, match="from a run of 1 epochs.*epochs=1"):
        fit(tiny_cnn(), fmnist.take(range(32)), epochs=3, callbacks=[ckpt], resume=True, **quiet())


def test_resume_needs_a_checkpoint_callback_or_path(fmnist):
    with pytest.raises(ValueError, match="Checkpoint"):
        fit(tiny_cnn(), fmnist.take(range(32)), epochs=1, resume=True, **quiet())
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        fit(tiny_cnn(), fmnist.take(range(32)), epochs=1, resume="nope.pt", **quiet())


# ---------------------------------------------------------------------------------------------
# Guards
# ---------------------------------------------------------------------------------------------

def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(fmnist, tmp_path):
    calls = {"n": 0}

    def poisoned(out, y):  # the loss of the 12th batch is NaN
        calls["n"] += 1
        loss = F.cross_entropy(out, y)
        return loss * float("nan") if calls["n"] == 12 else loss

    ckpt = Checkpoint(tmp_path, every=5)
    with pytest.raises(NonFiniteLossError, match=r"step 12 .*Lower the learning rate"):
        fit(tiny_cnn(), fmnist.take(range(640)), epochs=1, batch_size=32, loss_fn=poisoned, callbacks=[ckpt], **quiet())
    model = tiny_cnn()
    assert load_checkpoint(ckpt.last, model)["step"] == 10
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_labels_out_of_range_are_refused_before_training(fmnist):
    images, labels = fmnist.images[:64], fmnist.labels[:64].clone()
    labels[5] = 10
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\).*max 10"):
        fit(model, (images, labels), epochs=1, num_classes=10, **quiet())
    labels[5] = -1
    with pytest.raises(ValueError, match=r"min -1"):
        fit(model, (images, labels), epochs=1, num_classes=10, **quiet())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_labels_out_of_range_in_a_plain_dataloader(fmnist):
    """A DataLoader over a dataset that keeps no label list: the first batch is checked."""
    items = [(fmnist.images[i].float() / 255, 12 if i == 3 else int(fmnist.labels[i])) for i in range(32)]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        fit(tiny_cnn(), torch.utils.data.DataLoader(items, batch_size=16), epochs=1, **quiet())


def test_model_width_must_match_the_classes(fmnist):
    model = tiny_cnn(num_classes=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"outputs 7 values .* 10 classes.*num_classes=10"):
        fit(model, fmnist.take(range(64)), epochs=1, **quiet())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# Multi-process (DDP) and the loader's shards
# ---------------------------------------------------------------------------------------------

def test_tensor_loader_shards_are_disjoint_and_equal(fmnist):
    data = fmnist.take(range(101))
    whole = cvdata.TensorLoader(data, batch_size=8, shuffle=True, device="cpu", seed=3)
    shards = [whole.shard(r, 3) for r in range(3)]
    seen = [torch.cat([x for x, _ in s]) for s in shards]  # (33, 1, 28, 28) each
    assert [len(s) for s in seen] == [33, 33, 33] and len(shards[0]) == 5  # equal steps on every rank
    # Every rank draws the epoch's permutation (the one the whole loader uses) and takes every third
    # item of its first 99: the shards are disjoint and the 2 left over are skipped.
    order = torch.randperm(101, generator=torch.Generator().manual_seed(3 * 1_000_003 + 0))
    images = data.images.float() / 255
    assert torch.equal(torch.cat([x for x, _ in whole]), images[order])
    for r, s in enumerate(seen):
        assert torch.equal(s, images[order[:99][r::3]])


def test_two_process_gloo_run_ends_with_identical_weights(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
           str(tmp_path), "--epochs", "2"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    w0, w1 = (torch.load(tmp_path / f"final_rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # each rank took half the steps of a single process (1024 images, 32 per batch and rank)
    assert "step 32" in done.stdout and "step 33" not in done.stdout
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["epoch"] == [1, 2] and (tmp_path / "last.pt").exists()


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def test_command_line_trains_and_resumes_in_quick_mode(tmp_path):
    """Kill the command after its first epoch; --resume trains only the second."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cvlab", "train", "--data", "fashion_mnist", "--model", "small_resnet",
           "--epochs", "2", "--out", str(out), "--quick"]
    env = {**ENV, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = [line for line in read_until_prefix(proc, "epoch 1/2 ") if line.startswith("epoch")]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "last.pt").exists() and not (out / "history.json").exists()

    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 1 and lines[0].startswith("epoch 2/2"), done.stdout  # epoch 1 was not trained again
    assert "test accuracy" in done.stdout
    for name in ("last.pt", "best.pt", "history.json", "history.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
    h = json.loads((out / "history.json").read_text())
    assert h["epoch"] == [1, 2] and h["test_accuracy"] > 0.6
    assert f"{100 * h['val_acc'][0]:.2f}%" in first[0]  # epoch 1 as the killed run printed it
