import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from PIL import Image

from cvlab import data
from cvlab.image import (IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, as_hwc, center_crop, denormalize, letterbox,
                         normalize, resize)


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    return data.sample_image("china").copy()  # (427, 640, 3) uint8; scikit-learn hands out a read-only array


def test_layouts_round_trip_and_refuse_what_they_cannot_hold(china):
    tensor = torch.from_numpy(china).permute(2, 0, 1)
    for img, layout in ((tensor, "chw"), (china, "hwc"), (china[..., 0], "hw"), (Image.fromarray(china), "hwc")):
        hwc, got = as_hwc(img)
        assert got == layout and hwc.shape[:2] == (427, 640) and hwc.dtype == np.uint8
    with pytest.raises(ValueError, match="uint8"):
        as_hwc(tensor.float())
    with pytest.raises(ValueError, match="one image"):
        as_hwc(tensor[None])


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_resize_is_opencv_and_keeps_the_layout(china, interpolation):
    flag = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
            "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}[interpolation]
    expected = cv2.resize(china, (64, 48), interpolation=flag)
    assert np.array_equal(resize(china, (48, 64), interpolation), expected)
    tensor = resize(torch.from_numpy(china).permute(2, 0, 1), (48, 64), interpolation)
    assert tensor.shape == (3, 48, 64) and np.array_equal(tensor.permute(1, 2, 0).numpy(), expected)
    gray = resize(china[..., 0], 32, interpolation)  # (H, W) stays (H, W)
    assert gray.shape == (32, 32)
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        resize(china, 32, "cubic")


def test_letterbox_keeps_aspect_and_maps_back(china):
    boxed, scale, (top, left) = letterbox(china, 224, fill=114)
    assert boxed.shape == (224, 224, 3) and scale == pytest.approx(224 / 640)
    content_h = round(427 * scale)
    assert (top, left) == ((224 - content_h) // 2, 0)
    assert (boxed[:top] == 114).all() and (boxed[top + content_h:] == 114).all()
    inside = boxed[top:top + content_h]
    assert np.array_equal(inside, cv2.resize(china, (224, content_h), interpolation=cv2.INTER_AREA))  # shrinking: area
    # a point of the photo maps to (y * scale + top, x * scale + left)
    y, x = 300, 500
    assert abs(int(inside[round(y * scale), round(x * scale)].astype(int).mean())
               - int(china[y, x].astype(int).mean())) < 40
    tensor, _, _ = letterbox(torch.from_numpy(china[:50, :20]).permute(2, 0, 1), 100)  # enlarging: bicubic
    assert tensor.shape == (3, 100, 100) and (tensor[:, :, :30] == 114).all()


def test_center_crop_cuts_the_middle_of_the_short_side_resize(china):
    crop = center_crop(china, 200)
    big = cv2.resize(china, (round(640 * 200 / 427), 200), interpolation=cv2.INTER_AREA)
    left = (big.shape[1] - 200) // 2
    assert crop.shape == (200, 200, 3) and np.array_equal(crop, big[:, left:left + 200])


def test_normalize_equals_torchvision_and_denormalize_inverts(china):
    tensor = torch.from_numpy(china).permute(2, 0, 1)
    expected = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToDtype(torch.float32, scale=True)(tensor))
    torch.testing.assert_close(normalize(tensor), expected)
    torch.testing.assert_close(normalize(tensor[None].expand(2, -1, -1, -1)), expected[None].expand(2, -1, -1, -1))
    as_array = normalize(china)  # (H, W, C) arrays broadcast over the last axis
    assert as_array.dtype == np.float32
    np.testing.assert_allclose(as_array, expected.permute(1, 2, 0).numpy(), atol=1e-6)
    torch.testing.assert_close(denormalize(expected), tensor.float() / 255, atol=1e-6, rtol=0)
    gray = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(normalize(gray, [0.5], [0.25]), (gray / 255 - 0.5) / 0.25)
    with pytest.raises(ValueError, match="mean needs 1 or 3 values"):
        normalize(tensor, (0.5, 0.5), (0.1, 0.1))
