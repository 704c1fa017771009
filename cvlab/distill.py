"""Knowledge distillation (지식 증류): a frozen teacher's predictions as extra training targets.

    teacher = Teacher(trained_cnn)                     # frozen: eval mode, no gradients
    student = cvlab.models.create("deit_tiny_28", num_classes=10, in_chans=1, distilled_training=True)
    fit(student, train, epochs=10, batch_transform=teacher, loss_fn=DistillationLoss("hard"))

:class:`Teacher` is a ``batch_transform`` for :func:`cvlab.train.fit`: it runs the teacher on each
training batch (the same augmented images the student sees) and hands the loss ``(labels,
teacher_logits)`` as targets; fit reads the labels from the pair for its training accuracy.
:class:`DistillationLoss` is the matching ``loss_fn``. With a DeiT student (two heads, in distilled
training) the class head learns from the labels and the distillation head from the teacher; with a
one-head student (a CNN) both terms apply to its one output, which for ``"soft"`` is Hinton's
knowledge distillation.

The losses, for class-head logits z_c, distillation-head logits z_d, labels y and teacher logits t:

- hard (DeiT):  ½ CE(z_c, y) + ½ CE(z_d, argmax t)
- soft (DeiT):  (1 − λ) CE(z_c, y) + λ τ² KL(softmax(t/τ) ‖ softmax(z_d/τ))
- Hinton KD:    (1 − λ) CE(z, y)   + λ τ² KL(softmax(t/τ) ‖ softmax(z/τ))

The τ² keeps the soft term's gradients at the same scale whatever the temperature (they shrink
as 1/τ²). The KL divergence is averaged over the batch (PyTorch's ``batchmean``, the true KL per
image); DeiT's reference code divides the summed KL by batch × classes instead, a constant factor
that only rescales λ.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["freeze", "Teacher", "soft_kl", "DistillationLoss", "KINDS"]

KINDS = ("none", "hard", "soft")


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode with no parameter requiring a gradient; returns it."""
    model.eval()
    model.requires_grad_(False)
    return model


class Teacher:
    """A frozen model as fit's ``batch_transform``: ``(x, y) -> (x, (y, teacher_logits))``.

    The teacher stays in eval mode (batch norm uses its running statistics and never updates them)
    and runs without building a graph; it follows the batches to their device.
    """

    def __init__(self, model: nn.Module):
        self.model = freeze(model)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        self.model.eval()  # even if someone switched it back to training mode
        self.model.to(x.device)
        return x, (y, self.model(x).float())


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """τ² · KL(softmax(teacher/τ) ‖ softmax(student/τ)), averaged over the batch."""
    if tau <= 0:
        raise ValueError(f"the temperature tau must be positive; got {tau}. Distillation uses 1 to 10 (DeiT: 3).")
    student = F.log_softmax(student_logits / tau, dim=1)
    teacher = F.log_softmax(teacher_logits / tau, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * tau ** 2


class DistillationLoss:
    """fit's ``loss_fn`` for ``kind`` "none", "hard" or "soft": ``loss(outputs, targets)``.

    ``DistillationLoss("hard")`` and ``DistillationLoss("soft", tau=3, lam=0.1)`` are DeiT's losses for a
    two-head student; ``DistillationLoss("soft", tau=4, lam=0.9)`` on a one-head CNN is Hinton's KD.

    ``outputs``: a DeiT's ``(class_logits, distillation_logits)`` or a one-head student's logits.
    ``targets``: ``(labels, teacher_logits)`` from :class:`Teacher`; for "none", plain labels will do.
    "none" trains every head on the labels alone: the baseline without a teacher.
    Weights: ½ and ½ for "none" and "hard"; 1 − λ and λ for "soft" (``lam``, at temperature ``tau``).
    """

    def __init__(self, kind: str = "hard", *, tau: float = 3.0, lam: float = 0.1):
        if kind not in KINDS:
            raise ValueError(f"unknown distillation kind {kind!r}; use one of {', '.join(KINDS)}.")
        if not 0 <= lam <= 1:
            raise ValueError(f"lam weighs the teacher's term against the labels' and must be in [0, 1]; got {lam}.")
        self.kind, self.tau, self.lam = kind, tau, lam
        self.weights = (1 - lam, lam) if kind == "soft" else (0.5, 0.5)

    def parts(self, outputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """The two unweighted terms: (class head vs labels, distillation head vs teacher or labels)."""
        logits, logits_dist = outputs if isinstance(outputs, (tuple, list)) else (outputs, outputs)
        labels, teacher_logits = targets if isinstance(targets, (tuple, list)) else (targets, None)
        if self.kind == "none":
            return F.cross_entropy(logits, labels), F.cross_entropy(logits_dist, labels)
        if teacher_logits is None:
            raise ValueError(f"{self.kind} distillation needs the teacher's logits: pass "
                             "batch_transform=Teacher(model) to fit, so that the targets are (labels, teacher_logits).")
        if self.kind == "hard":
            return F.cross_entropy(logits, labels), F.cross_entropy(logits_dist, teacher_logits.argmax(1))
        return F.cross_entropy(logits, labels), soft_kl(logits_dist, teacher_logits, self.tau)

    def __call__(self, outputs, targets) -> torch.Tensor:
        label_term, teacher_term = self.parts(outputs, targets)
        return self.weights[0] * label_term + self.weights[1] * teacher_term

    def __repr__(self) -> str:
        return f"DistillationLoss({self.kind!r}, tau={self.tau}, lam={self.lam})"
