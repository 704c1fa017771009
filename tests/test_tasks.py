"""Tasks: fit trains classification, multi-label, reconstruction, contrastive and distillation through one
loop; each task's loss equals a reference, and fit refuses arguments it would otherwise ignore."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cvlab
from cvlab import data as cvdata
from cvlab.callbacks import Checkpoint
from cvlab.tasks import Classification, Contrastive, Distillation, MultiLabel, Reconstruction, nt_xent, random_views
from cvlab.train import evaluate, fit


@pytest.fixture(scope="module")
def fmnist():
    return cvdata.load("fashion_mnist", "test").take(range(2048))


def quiet(**kw):
    return dict(progress=False, device="cpu", **kw)


def tiny_cnn(out: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(16 * 7 * 7, out))


# ---------------------------------------------------------------------------------------------
# Losses against references
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_equals_pytorch_metric_learning(temperature):
    from pytorch_metric_learning.losses import NTXentLoss
    torch.manual_seed(0)
    z = torch.randn(2 * 16, 8)
    labels = torch.arange(16).repeat(2)  # z[i] and z[i + 16] are two views of image i
    ours = nt_xent(z, temperature)
    theirs = NTXentLoss(temperature=temperature)(z, labels)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


def test_nt_xent_is_low_for_matching_views_and_refuses_odd_batches():
    torch.manual_seed(0)
    z = torch.randn(32, 64)
    assert nt_xent(torch.cat([z, z + 0.01 * torch.randn_like(z)]), 0.1) < 0.05 < nt_xent(torch.randn(64, 64), 0.1)
    with pytest.raises(ValueError, match=r"\(2B, D\).*\(7, 4\)"):
        nt_xent(torch.randn(7, 4))


def test_multilabel_loss_and_metrics_equal_the_references():
    from sklearn.metrics import average_precision_score, f1_score
    torch.manual_seed(0)
    logits, targets = torch.randn(40, 5), (torch.rand(40, 5) < 0.3).float()
    task = MultiLabel()
    assert torch.allclose(task.loss(logits, targets), F.binary_cross_entropy(logits.sigmoid(), targets), atol=1e-6)
    result = task.evaluate([logits[:25], logits[25:]], [targets[:25], targets[25:]])
    p = logits.sigmoid().numpy()
    assert result["map"] == pytest.approx(average_precision_score(targets.numpy(), p, average="macro"))
    assert result["f1"] == pytest.approx(f1_score(targets.numpy(), p >= 0.5, average="micro"))
    with pytest.raises(ValueError, match=r"multi-label targets must be \(batch, classes\)"):
        task.loss(logits, targets[:, 0])


# ---------------------------------------------------------------------------------------------
# fit with each task
# ---------------------------------------------------------------------------------------------

def test_classification_is_the_default_task(fmnist):
    data = fmnist.take(range(512))
    torch.manual_seed(0)
    a = fit(tiny_cnn(), data, data, epochs=2, **quiet())
    torch.manual_seed(0)
    b = fit(tiny_cnn(), data, data, epochs=2, task=Classification(), **quiet())
    assert {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in b.items() if k != "time"}
    assert list(a) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"]


def attributes(labels: torch.Tensor) -> torch.Tensor:
    """Four attributes of a Fashion-MNIST class, several per image: footwear, upper body, has sleeves, worn below."""
    groups = [{5, 7, 9}, {0, 2, 3, 4, 6}, {2, 4, 6}, {1}]
    return torch.stack([torch.tensor([int(c) in g for c in labels.tolist()]) for g in groups], 1).float()


def test_multilabel_training_learns_attributes(fmnist):
    train, test = fmnist.take(range(1536)), fmnist.take(range(1536, 2048))
    torch.manual_seed(0)
    model = tiny_cnn(out=4)
    history = fit(model, (train.images, attributes(train.labels)), (test.images, attributes(test.labels)), epochs=3,
                  task=MultiLabel(), batch_size=64, lr=0.05, **quiet())
    assert list(history) == ["epoch", "train_loss", "val_loss", "val_map", "val_f1", "lr", "time"]
    assert history["val_map"][-1] > 0.9 and history["val_f1"][-1] > 0.85, history
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_reconstruction_trains_an_autoencoder_through_fit(fmnist, tmp_path):
    images = fmnist.images[:1024]
    torch.manual_seed(0)
    ae = cvlab.models.autoencoder.ConvAutoencoder()
    history = fit(ae, (images, torch.zeros(1024, dtype=torch.long)), (fmnist.images[1024:1536],
                  torch.zeros(512, dtype=torch.long)), epochs=3, task=Reconstruction(), optimizer="adam", lr=2e-3,
                  weight_decay=0.0, schedule=None, batch_size=64, callbacks=[Checkpoint(tmp_path)], **quiet())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_psnr"][-1] == pytest.approx(-10 * math.log10(history["val_loss"][-1]), rel=1e-6)
    assert (tmp_path / "best.pt").is_file()  # chosen on val_loss: a reconstruction has no accuracy
    import matplotlib
    matplotlib.use("Agg")
    assert cvlab.plot.history(history).axes[1].get_title() == "psnr"  # the task's metric, not an empty accuracy plot
    errors = cvlab.models.autoencoder.reconstruction_error(ae, fmnist.images[1024:1536])
    x = fmnist.images[1024:1536].float() / 255
    with torch.no_grad():
        ae.eval()
        expected = ((ae(x) - x) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(errors, expected, atol=1e-6)
    assert errors.mean().item() == pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_contrastive_learning_pulls_the_views_of_an_image_together(fmnist):
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))  # encoder + projection head
    history = fit(encoder, fmnist.take(range(1024)), fmnist.take(range(1024, 1536)), epochs=4,
                  task=Contrastive(temperature=0.2), optimizer="adam", lr=2e-3, weight_decay=0.0, batch_size=128,
                  **quiet())
    assert list(history) == ["epoch", "train_loss", "train_pair_acc", "val_loss", "val_pair_acc", "lr", "time"]
    # chance: one partner among the 2B - 1 other embeddings: 1/255 in training batches of 128, 1/1023 in
    # validation batches of 512 (evaluation's batch size)
    assert history["train_pair_acc"][-1] > 25 / 255 and history["val_pair_acc"][-1] > 20 / 1023, history
    assert history["train_loss"][-1] < history["train_loss"][0] and history["val_loss"][-1] < history["val_loss"][0]


def test_random_views_are_different_draws_of_the_same_image():
    x = torch.rand(64, 1, 28, 28)
    a, b = random_views(x), random_views(x)
    assert a.shape == x.shape and not torch.equal(a, b)
    assert torch.allclose(random_views(x, padding=0, jitter=0.0).flip(3).sort(3).values, x.sort(3).values)


def test_distillation_task_equals_teacher_transform_and_loss(fmnist):
    from cvlab.distill import DistillationLoss, Teacher
    data = fmnist.take(range(512))
    torch.manual_seed(1)
    teacher = tiny_cnn()
    fit(teacher, data, epochs=1, **quiet())
    runs = []
    for kw in (dict(task=Distillation(teacher, "soft", tau=2.0, lam=0.7)),
               dict(batch_transform=Teacher(teacher), loss_fn=DistillationLoss("soft", tau=2.0, lam=0.7))):
        torch.manual_seed(0)
        student = tiny_cnn()
        runs.append((fit(student, data, data, epochs=2, **kw, **quiet()), student))
    (h1, s1), (h2, s2) = runs
    assert h1["train_loss"] == h2["train_loss"] and h1["val_acc"] == h2["val_acc"]
    assert all(torch.equal(a, b) for a, b in zip(s1.state_dict().values(), s2.state_dict().values()))


def test_evaluate_returns_the_tasks_metrics(fmnist):
    model = tiny_cnn(out=4)
    data = fmnist.take(range(256))
    result = evaluate(model, (data.images, attributes(data.labels)), task=MultiLabel())
    assert set(result) >= {"loss", "map", "f1"} and result["probabilities"].shape == (256, 4)


# ---------------------------------------------------------------------------------------------
# Arguments fit would have ignored
# ---------------------------------------------------------------------------------------------

def test_fit_refuses_arguments_it_would_ignore(fmnist):
    data = fmnist.take(range(64))
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"lr, weight_decay would be ignored: the SGD you passed has its own"):
        fit(model, data, epochs=1, optimizer=opt, lr=0.01, weight_decay=0.0, **quiet())
    loader = cvdata.TensorLoader(data, batch_size=16, device="cpu")
    with pytest.raises(ValueError, match=r"batch_size, seed would be ignored: the TensorLoader you passed"):
        fit(model, loader, epochs=1, batch_size=32, seed=1, **quiet())
    with pytest.raises(ValueError, match=r"label_smoothing applies to the default cross-entropy"):
        fit(model, data, epochs=1, loss_fn=nn.CrossEntropyLoss(), label_smoothing=0.1, **quiet())
    with pytest.raises(ValueError, match=r"with task=Reconstruction\(...\) give them to the task"):
        fit(model, data, epochs=1, task=Reconstruction(), loss_fn=nn.MSELoss(), **quiet())
    # what is honoured: the optimizer object's own settings, the loader's own batch size
    history = fit(model, loader, epochs=1, optimizer=opt, schedule=None, **quiet())
    assert history["lr"] == [0.1] and len(loader) == 4
