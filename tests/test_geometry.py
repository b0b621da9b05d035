import numpy as np
import pytest

from shfan import geometry


@pytest.mark.parametrize("angle", [0.0, 17.0, -40.0])
def test_points_roundtrip(angle):
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 300, (68, 2))
    m = geometry.similarity((151.3, 97.8), 143.7, 128, angle)
    back = geometry.transform_points(geometry.transform_points(pts, m), geometry.invert(m))
    assert np.abs(back - pts).max() < 1e-4


def test_crop_maps_box_centre_to_crop_centre_and_scales():
    m = geometry.crop_for_box((10, 20, 110, 80), 128, expand=1.0)
    np.testing.assert_allclose(geometry.transform_points(np.array([[60.0, 50.0]]), m), [[64, 64]], atol=1e-9)
    # side 100 px -> 128 px
    np.testing.assert_allclose(geometry.transform_points(np.array([[110.0, 50.0]]), m), [[128, 64]], atol=1e-9)


def test_rotation_is_counter_clockwise_in_the_image():
    m = geometry.similarity((0, 0), 2, 2, 90)
    # a point to the right of the centre moves up in the crop (y decreases)
    p = geometry.transform_points(np.array([[1.0, 0.0]]), m)
    np.testing.assert_allclose(p, [[1.0, 0.0]], atol=1e-9)  # (half + 0, half - 1) with half = 1


def test_warp_follows_the_continuous_convention():
    """A bright pixel at (row 40, col 30) has its centre at (30.5, 40.5); the warped crop must
    put its peak exactly where transform_points sends that centre."""
    img = np.zeros((100, 100), np.float32)
    img[40, 30] = 1.0
    m = geometry.similarity((50, 50), 100, 200)  # 2x upscale, no rotation
    out = geometry.warp(img, m, 200)
    target = geometry.transform_points(np.array([[30.5, 40.5]]), m)[0]
    ys, xs = np.nonzero(out > 0)
    w = out[ys, xs]
    centroid = np.array([(w * (xs + 0.5)).sum() / w.sum(), (w * (ys + 0.5)).sum() / w.sum()])
    np.testing.assert_allclose(centroid, target, atol=1e-3)


def test_compose_and_box():
    a = geometry.similarity((10, 10), 20, 64, 10)
    b = geometry.similarity((5, 7), 50, 32, -3)
    p = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(geometry.transform_points(p, geometry.compose(a, b)),
                               geometry.transform_points(geometry.transform_points(p, b), a), atol=1e-9)
    np.testing.assert_allclose(geometry.box_from_points([[1, 5], [3, 2]]), [1, 2, 3, 5])


def test_iou_of_boxes():
    assert geometry.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert geometry.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert geometry.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert geometry.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty boxes: no overlap, no division by zero
