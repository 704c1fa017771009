import math
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from PIL import Image

from cvlab import augment, data, widgets
from cvlab.image import IMAGENET_MEAN, IMAGENET_STD, resize

CHANNEL_FREE = ["none", "eval", "basic", "geometric", "occlusion"]  # work on any channel count
ONE_OR_THREE = ["photometric", "strong", "standard", "autoaugment", "randaugment", "trivialaugment"]


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo as a cvlab image: uint8 (3, 75, 113)."""
    return torch.from_numpy(data.sample_image("chelsea")[::4, ::4].copy()).permute(2, 0, 1).contiguous()


def test_registry_lists_every_issue_pipeline():
    assert set(CHANNEL_FREE + ONE_OR_THREE) == set(augment.PIPELINES)
    for name, recipe in augment.PIPELINES.items():
        assert recipe.build.__doc__, f"pipeline {name!r} needs a docstring"
        assert set(recipe.sliders) <= set(augment._defaults(recipe.build)), name
    with pytest.raises(ValueError, match="already registered"):
        augment.register("basic")(lambda h, w, c: [])


# --- every pipeline: shapes, dtypes, layouts ----------------------------------------------------

@pytest.mark.parametrize("name", sorted(augment.PIPELINES))
def test_pipeline_output_shape_and_dtype(name, photo):
    tf = augment.pipeline(name, size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=0)
    for img in (photo, photo.permute(1, 2, 0).numpy(), Image.fromarray(photo.permute(1, 2, 0).numpy())):
        out = tf(img)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert out.isfinite().all()
    # without size every image keeps its own; augment() gives uint8 back in the input's layout
    gray = photo[:1, :28, :30].contiguous()
    assert augment.pipeline(name)(gray).shape == (1, 28, 30)
    seen = augment.pipeline(name).augment(photo, seed=1)
    assert seen.shape == photo.shape and seen.dtype == torch.uint8
    seen = augment.pipeline(name, size=(24, 40)).augment(photo.permute(1, 2, 0).numpy(), seed=1)
    assert isinstance(seen, np.ndarray) and seen.shape == (24, 40, 3) and seen.dtype == np.uint8
    assert augment.pipeline(name).augment(gray[0].numpy(), seed=1).shape == (28, 30)  # (H, W) stays (H, W)


@pytest.mark.parametrize("name", CHANNEL_FREE)
@pytest.mark.parametrize("channels", [2, 4, 5])
def test_channel_free_pipelines_take_any_channel_count(name, channels):
    x = torch.randint(0, 256, (channels, 20, 24), dtype=torch.uint8)
    out = augment.pipeline(name, size=16)(x)
    assert out.shape == (channels, 16, 16) and out.dtype == torch.float32


@pytest.mark.parametrize("name", ONE_OR_THREE)
def test_rgb_only_pipelines_refuse_other_channel_counts_with_a_fix(name):
    rgba = torch.randint(0, 256, (4, 20, 24), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"1 or 3-channel images; this image has 4 channels.*image\[:3\]"):
        augment.pipeline(name)(rgba)


def test_photometric_on_gray_and_without_hue():
    gray = torch.randint(0, 256, (1, 20, 24), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gray has no hue: the pipeline leaves hue/saturation out, no warning
        augment.pipeline("photometric", p=1.0)(gray)
    two = torch.randint(0, 256, (2, 20, 24), dtype=torch.uint8)
    with pytest.raises(ValueError, match="hue=0, saturation=0"):
        augment.pipeline("photometric")(two)
    assert augment.pipeline("photometric", hue=0, saturation=0)(two).shape == (2, 20, 24)


def test_unsupported_inputs_raise_clear_errors(photo):
    tf = augment.pipeline("basic")
    with pytest.raises(ValueError, match="uint8"):
        tf(photo.float() / 255)
    with pytest.raises(ValueError, match="one image"):
        tf(photo[None])
    with pytest.raises(ValueError, match="unknown pipeline 'fancy'; choose one of"):
        augment.pipeline("fancy")
    with pytest.raises(TypeError, match="has no parameter angle; its parameters: rotate"):
        augment.pipeline("geometric", angle=10)
    with pytest.raises(ValueError, match="needs 1 or 3 values"):
        augment.pipeline("none", mean=(0.5, 0.5), std=(0.2, 0.2))(photo)
    with pytest.raises(ValueError, match="both mean and std"):
        augment.pipeline("none", mean=IMAGENET_MEAN)


def test_unknown_channel_limits_are_reported_too(photo):
    # torchvision's ColorJitter via a plain Augment: found in the table before it runs
    with pytest.raises(ValueError, match="ColorJitter in pipeline 'custom'"):
        augment.Augment(T.ColorJitter(0.4, 0.4, 0.4, 0.1))(torch.zeros(4, 8, 8, dtype=torch.uint8))


# --- determinism and seeds -----------------------------------------------------------------------

def test_eval_is_deterministic_and_equals_resize_then_normalize(photo):
    tf = augment.pipeline("eval", size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    first, second = tf(photo), tf(photo)
    assert torch.equal(first, second)
    expected = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToDtype(torch.float32, scale=True)(
        resize(photo, 32, "bilinear")))
    torch.testing.assert_close(first, expected, atol=1e-6, rtol=0)
    # crop < 1: resize to size / crop, then the central size x size
    cropped = augment.pipeline("eval", size=32, crop=0.8).augment(photo)
    torch.testing.assert_close(cropped, T.CenterCrop(32)(resize(photo, 40, "bilinear")), atol=0, rtol=0)


def test_none_pipeline_scales_and_normalizes_like_torchvision(photo):
    expected = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToDtype(torch.float32, scale=True)(photo))
    torch.testing.assert_close(augment.pipeline("none", mean=IMAGENET_MEAN, std=IMAGENET_STD)(photo), expected)
    torch.testing.assert_close(augment.pipeline("none")(photo), photo.float() / 255)


@pytest.mark.parametrize("name", ["geometric", "randaugment", "strong"])
def test_seeded_draws_repeat_and_differ(name, photo):
    tf = augment.pipeline(name)
    draws = [tf.augment(photo, seed=s) for s in (3, 3, 4)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])
    # the pipeline-level seed makes a training run's albumentations draws repeat
    if name != "randaugment":
        a, b = augment.pipeline(name, seed=7), augment.pipeline(name, seed=7)
        assert all(torch.equal(a(photo), b(photo)) for _ in range(3))


def test_standard_pipeline_in_both_libraries(photo):
    for backend in ("albumentations", "torchvision"):
        out = augment.pipeline("standard", size=24, backend=backend)(photo)
        assert out.shape == (3, 24, 24) and 0 <= out.min() and out.max() <= 1
    assert isinstance(augment.pipeline("standard", backend="torchvision").transform_for(75, 113, 3), T.Compose)


# --- plugging into cvlab.data --------------------------------------------------------------------

def test_plugs_into_dataloader_for_tensors_and_image_folders(tmp_path):
    rng = np.random.default_rng(0)
    ds = data.ImageDataset(torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8), torch.arange(10) % 2, ["a", "b"])
    x, y = next(iter(data.dataloader(ds, batch_size=4, transform=augment.pipeline("basic", mean=[0.5], std=[0.25]))))
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and y.tolist() == [0, 1, 0, 1]
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    loader = data.dataloader(tmp_path, batch_size=6, transform=augment.pipeline("strong", size=16))  # PIL images in
    x, y = next(iter(loader))
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32 and y.tolist() == [0, 0, 0, 1, 1, 1]


def test_dataloader_workers_draw_differently_and_repeat_under_a_torch_seed(photo):
    ds = data.ImageDataset(photo[None].repeat(8, 1, 1, 1), torch.zeros(8, dtype=torch.long), ["cat"])
    tf = augment.pipeline("geometric", seed=3)  # every worker gets a copy of the same albumentations RNG

    def epoch():
        torch.manual_seed(0)
        return torch.cat([x for x, _ in data.dataloader(ds, batch_size=2, num_workers=2, transform=tf)])

    first = epoch()
    assert all(not torch.equal(first[i], first[j]) for i in range(8) for j in range(i + 1, 8))
    assert torch.equal(first, epoch())


# --- Mixup and CutMix ----------------------------------------------------------------------------

@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.rand(8, 3, 20, 24), torch.randint(0, 5, (8,))


@pytest.mark.parametrize("seed", range(6))
def test_mixup_and_cutmix_equal_torchvision_for_the_same_seed(seed, batch):
    x, y = batch
    for ours, theirs, alpha in ((augment.mixup, T.MixUp, 0.4), (augment.cutmix, T.CutMix, 1.0)):
        torch.manual_seed(seed)
        expected = theirs(alpha=alpha, num_classes=5)(x, y)
        torch.manual_seed(seed)
        got = ours(x, y, num_classes=5, alpha=alpha)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]), ours.__name__


def test_mixup_targets_sum_to_one_and_follow_lambda(batch):
    x, y = batch
    mixed, targets = augment.mixup(x, y, num_classes=5, lam=0.7)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    torch.testing.assert_close(mixed, 0.7 * x + 0.3 * x.roll(1, 0))
    expected = 0.7 * torch.nn.functional.one_hot(y, 5) + 0.3 * torch.nn.functional.one_hot(y.roll(1), 5)
    torch.testing.assert_close(targets, expected.float())
    with pytest.raises(ValueError, match="float batch"):
        augment.mixup((x * 255).byte(), y, num_classes=5)


def test_cutmix_target_weight_is_the_pasted_area_after_clipping():
    b, h, w = 6, 20, 24
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, h, w).contiguous()  # image i is all i
    y = torch.arange(b)
    clipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out, targets = augment.cutmix(x, y, num_classes=b, alpha=1.0)
        torch.testing.assert_close(targets.sum(1), torch.ones(b))
        for i in range(b):
            pasted = (out[i, 0] == (i - 1) % b).float().mean().item()  # pixels from the previous image
            assert targets[i, (i - 1) % b].item() == pytest.approx(pasted, abs=1e-6)
            assert targets[i, i].item() == pytest.approx(1 - pasted, abs=1e-6)
        box_w, box_h = (out[0, 0] == b - 1).any(0).sum().item(), (out[0, 0] == b - 1).any(1).sum().item()
        clipped += (box_w, box_h) != (2 * int(0.5 * math.sqrt(1 - _lam(seed)) * w), 2 * int(0.5 * math.sqrt(1 - _lam(seed)) * h))
    assert clipped > 0, "some boxes should cross the border, so the clipping is tested"
    out, targets = augment.cutmix(x, y, num_classes=b, box=(20, 15, 30, 25))  # x1, y1, x2, y2; clipped to 4 x 5
    assert targets[0, b - 1].item() == pytest.approx(4 * 5 / (h * w))


def _lam(seed: int) -> float:
    torch.manual_seed(seed)
    return float(torch.distributions.Beta(torch.tensor([1.0]), torch.tensor([1.0])).sample(()))


def test_mixupcutmix_gives_soft_targets_a_model_can_train_on(batch):
    x, y = batch
    mix = augment.MixUpCutMix(num_classes=5, mixup_alpha=0.2, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 20 * 24, 5))
    kinds = set()
    for seed in range(8):
        torch.manual_seed(seed)
        mixed, targets = mix(x, y)
        assert mixed.shape == x.shape and targets.shape == (8, 5) and targets.dtype == torch.float32
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        kinds.add("cutmix" if (mixed == x.roll(1, 0)).any() else "mixup")
        # the loss fit uses accepts probabilities: soft cross-entropy, with gradients
        logits = model(mixed)
        loss = torch.nn.CrossEntropyLoss()(logits, targets)
        torch.testing.assert_close(loss, -(targets * logits.log_softmax(1)).sum(1).mean())
        loss.backward()
        assert model[1].weight.grad.abs().sum() > 0
    assert kinds == {"cutmix", "mixup"}
    off = augment.MixUpCutMix(num_classes=5, prob=0.0)
    same, one_hot = off(x, y)
    assert same is x and torch.equal(one_hot, torch.nn.functional.one_hot(y, 5).float())
    with pytest.raises(ValueError, match="at least one"):
        augment.MixUpCutMix(num_classes=5, mixup_alpha=0, cutmix_alpha=0)


# --- preview and grid ----------------------------------------------------------------------------

def test_preview_live_widget_redraws_when_a_slider_moves(photo):
    box = augment.preview(photo, "geometric", live=True, rotate=(0, 180, 5, 30), scale=0.0, perspective=0.0)
    controls, picture = box.children[0].children
    sliders = {c.description: c for c in controls.children}
    assert set(sliders) == {"rotate", "translate", "shear", "crop", "flip", "seed"}  # fixed values get no slider
    assert sliders["rotate"].value == 30 and picture.value[:4] == b"\x89PNG"
    before = picture.value
    sliders["rotate"].value = 45
    assert picture.value != before
    before = picture.value
    sliders["seed"].value = 5
    assert picture.value != before


def test_preview_with_a_transform_factory_and_static_fallback(photo):
    def brighten(amount=40):
        if amount > 90:
            raise ValueError("too bright")
        return lambda x: (x.int() + amount).clamp(0, 255).to(torch.uint8)
    box = augment.preview(photo, brighten, live=True, amount=(0, 100, 10))
    amount, seed = box.children[0].children[0].children
    assert (amount.description, amount.value, seed.description) == ("amount", 40, "seed")
    amount.value = 100  # an error shows under the sliders, the widget keeps working
    assert "ValueError: too bright" in box.children[1].value
    amount.value = 50
    assert box.children[1].value == ""
    fig = augment.preview(photo, "photometric", live=False)
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 2
    assert not widgets.is_live(None)  # a plain script: no kernel, a static figure


def test_live_rule_can_be_forced(monkeypatch):
    monkeypatch.setenv("CVLAB_WIDGETS", "1")
    assert widgets.is_live(None) and not widgets.is_live(False)
    monkeypatch.setenv("CVLAB_WIDGETS", "0")
    assert not widgets.is_live(None) and widgets.is_live(True)


def test_grid_draws_the_original_and_n_draws(photo):
    import matplotlib.pyplot as plt
    fig = augment.grid(photo, "trivialaugment", n=5, seed=0)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 6 and drawn[0].get_title() == "original"
    plt.close(fig)
