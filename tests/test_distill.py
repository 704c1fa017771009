"""cvlab.distill: the losses against hand computation, which head each term trains, a frozen teacher inside fit."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cvlab import models
from cvlab.distill import DistillationLoss, Teacher, freeze, soft_kl
from cvlab.train import fit

# A batch of two images, three classes.
Z_CLS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]    # class-head logits
Z_DIST = [[0.0, 1.0, 0.0], [1.0, 0.0, 2.0]]    # distillation-head logits
LABELS = [0, 2]
TEACHER = [[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]]   # the teacher's argmax: [1, 0]


def ce(row, k):
    """Cross-entropy of one row of logits with class k: log(sum exp) - z_k."""
    return math.log(sum(math.exp(z) for z in row)) - row[k]


def softmax(row, tau=1.0):
    e = [math.exp(z / tau) for z in row]
    return [v / sum(e) for v in e]


def kl(teacher_row, student_row, tau):
    """KL(p_teacher || p_student) at temperature tau."""
    p, q = softmax(teacher_row, tau), softmax(student_row, tau)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def mean(values):
    return sum(values) / len(values)


def tensors():
    return torch.tensor(Z_CLS), torch.tensor(Z_DIST), torch.tensor(LABELS), torch.tensor(TEACHER)


# --- values by hand --------------------------------------------------------------------------------

def test_hard_distillation_by_hand():
    zc, zd, y, t = tensors()
    expected = 0.5 * mean([ce(Z_CLS[0], 0), ce(Z_CLS[1], 2)]) + 0.5 * mean([ce(Z_DIST[0], 1), ce(Z_DIST[1], 0)])
    assert DistillationLoss("hard")((zc, zd), (y, t)).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("tau, lam", [(1.0, 0.5), (3.0, 0.1)])
def test_soft_distillation_by_hand(tau, lam):
    zc, zd, y, t = tensors()
    label_term = mean([ce(Z_CLS[0], 0), ce(Z_CLS[1], 2)])
    teacher_term = tau ** 2 * mean([kl(TEACHER[i], Z_DIST[i], tau) for i in range(2)])
    expected = (1 - lam) * label_term + lam * teacher_term
    assert DistillationLoss("soft", tau=tau, lam=lam)((zc, zd), (y, t)).item() == pytest.approx(expected, abs=1e-6)
    assert soft_kl(zd, t, tau).item() == pytest.approx(teacher_term, abs=1e-6)


def test_hinton_kd_for_a_one_head_student_by_hand():
    zc, _, y, t = tensors()
    tau, lam = 4.0, 0.9
    expected = (1 - lam) * mean([ce(Z_CLS[0], 0), ce(Z_CLS[1], 2)]) \
        + lam * tau ** 2 * mean([kl(TEACHER[i], Z_CLS[i], tau) for i in range(2)])
    assert DistillationLoss("soft", tau=tau, lam=lam)(zc, (y, t)).item() == pytest.approx(expected, abs=1e-6)


def test_no_distillation_trains_both_heads_on_the_labels():
    zc, zd, y, _ = tensors()
    expected = 0.5 * mean([ce(Z_CLS[0], 0), ce(Z_CLS[1], 2)]) + 0.5 * mean([ce(Z_DIST[0], 0), ce(Z_DIST[1], 2)])
    assert DistillationLoss("none")((zc, zd), y).item() == pytest.approx(expected, abs=1e-6)


def test_the_teacher_term_vanishes_when_the_student_matches_the_teacher():
    _, _, _, t = tensors()
    assert soft_kl(t.clone(), t, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    assert soft_kl(t + 5.0, t, 3.0).item() == pytest.approx(0.0, abs=1e-6)  # softmax ignores a shift


# --- which head each term trains ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_each_term_reaches_only_its_own_head(kind):
    torch.manual_seed(0)
    student = models.create("deit_tiny_28", num_classes=10, in_chans=1, depth=2, distilled_training=True).train()
    x, y, t = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 5, 9]), torch.randn(4, 10)
    label_term, teacher_term = DistillationLoss(kind, lam=0.5).parts(student(x), (y, t))
    heads = [student.head.weight, student.head_dist.weight]
    # materialize_grads: a head the term never reaches gets an all-zero gradient rather than None.
    g_label = torch.autograd.grad(label_term, heads, retain_graph=True, materialize_grads=True)
    g_teacher = torch.autograd.grad(teacher_term, heads, materialize_grads=True)
    assert g_label[0].abs().sum() > 0 and torch.equal(g_label[1], torch.zeros_like(g_label[1]))
    assert g_teacher[1].abs().sum() > 0 and torch.equal(g_teacher[0], torch.zeros_like(g_teacher[0]))


# --- through fit, with a frozen teacher ---------------------------------------------------------

def toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g)


def test_a_frozen_teacher_stays_unchanged_and_the_student_learns():
    torch.manual_seed(0)
    teacher = models.create("small_resnet", num_classes=10, in_chans=1, widths=(8, 16, 16, 32)).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # weights and batch-norm statistics
    student = models.create("deit_tiny_28", num_classes=10, in_chans=1, depth=1, distilled_training=True)
    student_before = student.head_dist.weight.clone()
    history = fit(student, toy_data(), epochs=1, batch_size=64, optimizer="adamw", lr=1e-3, progress=False,
                  batch_transform=Teacher(teacher), loss_fn=DistillationLoss("hard"), device="cpu")
    assert len(history["train_loss"]) == 1 and math.isfinite(history["train_loss"][0])
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"the teacher's {k} changed"
    assert not torch.equal(student.head_dist.weight, student_before)


def test_a_student_trained_on_the_teacher_alone_learns_to_agree_with_it():
    """Labels are noise here; with lam=1 the only signal is the teacher, a fixed linear map."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():  # confident, and centred on the mean image so that every class gets predicted
        teacher[1].weight.mul_(20)
        teacher[1].bias.copy_(-0.5 * teacher[1].weight.sum(1))
    images, noise = toy_data()
    x = images.float() / 255
    agreement = {}
    for kind in ("none", "soft"):
        torch.manual_seed(0)
        student = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        fit(student, (images, noise), epochs=20, batch_size=64, optimizer="adam", lr=1e-2, weight_decay=0,
            progress=False, batch_transform=Teacher(teacher), loss_fn=DistillationLoss(kind, tau=1.0, lam=1.0),
            device="cpu")
        with torch.no_grad():
            agreement[kind] = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean().item()
    assert agreement["soft"] > 0.8 and agreement["none"] < 0.3, agreement


# --- bad input -------------------------------------------------------------------------------------

def test_bad_arguments_get_a_clear_error():
    zc, zd, y, t = tensors()
    with pytest.raises(ValueError, match="unknown distillation kind 'medium'"):
        DistillationLoss("medium")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]; got 1.5"):
        DistillationLoss("soft", lam=1.5)
    with pytest.raises(ValueError, match=r"needs the teacher's logits: pass batch_transform=Teacher"):
        DistillationLoss("hard")((zc, zd), y)
    with pytest.raises(ValueError, match="tau must be positive; got 0"):
        soft_kl(zd, t, 0)


def test_freeze_returns_the_model_frozen():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).train()
    assert freeze(model) is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())
