"""Tracker logic and One Euro numbers."""

import math

import numpy as np
import pytest

from shfan import geometry
from shfan.runtime.smoothing import OneEuroFilter, smoothing_factor
from shfan.runtime.tracker import Track, Tracker, crop_matrix, roll_deg, upright_box


def face_points(centre=(100.0, 100.0), size=60.0, angle_deg=0.0):
    """68 points shaped like a face (eye corners 36/45 level when upright), rotated by angle."""
    rng = np.random.default_rng(0)
    p = rng.uniform(-0.5, 0.5, (68, 2)) * size
    p[36], p[45] = (-0.35 * size, -0.15 * size), (0.35 * size, -0.15 * size)
    a = math.radians(angle_deg)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return p @ r.T + centre


def acquire(tr, score, **points):
    """A detection at (70, 70, 130, 130), then face_points(**points) at `score`: (track, whether
    update() kept it)."""
    (track,) = tr.add_detections([[70, 70, 130, 130]])
    return track, tr.update(track, face_points(**points), np.full(68, score))


@pytest.mark.parametrize("angle", [-30.0, -5.0, 0.0, 12.0, 40.0])
def test_crop_undoes_roll(angle):
    pts = face_points(angle_deg=angle)
    assert roll_deg(pts) == pytest.approx(angle, abs=1e-6)
    t = Track(0, upright_box(pts, angle), angle_deg=angle)
    crop = geometry.transform_points(pts, crop_matrix(t, 128))
    assert crop[36, 1] == pytest.approx(crop[45, 1], abs=1e-3)  # eyes level in the crop
    assert crop[36, 0] < crop[45, 0]
    # the face sits centred and fills 1/CROP_EXPAND of the crop, as the training crops do
    lo, hi = crop.min(0), crop.max(0)
    assert np.allclose((lo + hi) / 2, 64, atol=1e-3)
    assert max(hi - lo) == pytest.approx(128 / geometry.CROP_EXPAND, rel=1e-3)


def test_upright_box_equals_tight_box_without_roll():
    pts = face_points()
    assert np.allclose(upright_box(pts, 0.0), geometry.box_from_points(pts))


def test_detect_only_to_acquire_or_when_lost():
    tr = Tracker(max_faces=1, min_score=0.3, redetect_every=0)
    assert tr.needs_detection()
    track, kept = acquire(tr, 0.8)
    assert kept
    for _ in range(100):  # with redetect_every=0 the tracker never re-detects while it tracks
        tr.end_frame()
        assert not tr.needs_detection()
    assert not tr.update(track, face_points(), np.full(68, 0.1))  # confidence dropped
    assert tr.tracks == [] and tr.needs_detection()


def test_periodic_detection_while_room_and_no_duplicates():
    tr = Tracker(max_faces=3, redetect_every=5)
    a, _ = acquire(tr, 0.8)
    for i in range(5):
        assert not tr.needs_detection()
        tr.end_frame()
    assert tr.needs_detection()
    new = tr.add_detections([[72, 71, 131, 128], [300, 300, 360, 360]])  # same face + a new one
    assert len(new) == 1 and len(tr.tracks) == 2


def test_converged_tracks_are_merged():
    tr = Tracker(max_faces=2)
    a, b = tr.add_detections([[70, 70, 130, 130], [0, 0, 40, 40]])
    tr.update(a, face_points(), np.full(68, 0.9))
    tr.update(b, face_points((101, 99)), np.full(68, 0.5))  # drifted onto face a
    tr.end_frame()
    assert tr.tracks == [a]


# ---- One Euro


def test_smoothing_factor():
    # alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi fc)
    assert smoothing_factor(1 / 30, 1.0) == pytest.approx(1 / (1 + 30 / (2 * math.pi)))
    assert smoothing_factor(1 / 30, 1.0) == pytest.approx(0.173171, abs=1e-6)


def test_one_euro_step_numbers():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=1.0)
    assert f(0.0, 0.0) == 0.0  # first sample passes through
    a = 0.173171
    y1 = f(1.0, 1 / 30)
    assert y1 == pytest.approx(a, abs=1e-6)
    y2 = f(1.0, 2 / 30)
    assert y2 == pytest.approx(a + (1 - a) * a, abs=1e-6)  # plain exponential smoothing when beta = 0


def test_one_euro_speed_raises_cutoff():
    # beta > 0: the derivative (smoothed with d_cutoff) raises the cutoff -> less lag
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    f(0.0, 0.0)
    y = f(1.0, 1 / 30)
    a_d = smoothing_factor(1 / 30, 1.0)
    dx = a_d * 30.0  # (1 - 0) / dt, smoothed from 0
    fc = 1.0 + 0.5 * dx
    assert y == pytest.approx(smoothing_factor(1 / 30, fc), abs=1e-9)
    slow = OneEuroFilter(1.0, 0.0)
    slow(0.0, 0.0)
    assert y > slow(1.0, 1 / 30)


def test_one_euro_arrays_and_repeated_timestamps():
    f = OneEuroFilter()
    x = np.arange(136, dtype=float).reshape(68, 2)
    assert np.array_equal(f(x, 1.0), x)
    assert np.allclose(f(x + 1, 1.0), x)  # same timestamp: nothing new
    assert np.allclose(f(x, 2.0), x)  # a constant signal stays put
    jitter = x + np.random.default_rng(0).normal(0, 1, x.shape)
    assert np.abs(f(jitter, 2.0 + 1 / 30) - x).mean() < np.abs(jitter - x).mean() / 2


def test_implausible_jumps_drop_the_track():
    from shfan.runtime.tracker import plausible_step

    assert plausible_step([0, 0, 100, 100], [5, 5, 110, 108])
    assert not plausible_step([0, 0, 100, 100], [0, 0, 200, 200])  # doubled in one frame
    assert not plausible_step([0, 0, 100, 100], [0, 0, 50, 50])
    assert not plausible_step([0, 0, 100, 100], [150, 0, 250, 100])  # jumped by more than its size
    tr = Tracker(max_faces=1)
    t, kept = acquire(tr, 0.9, size=60)
    assert kept  # detector box -> landmark box: no check
    assert not tr.update(t, face_points(size=200), np.full(68, 0.9))
    assert tr.tracks == []


def test_periodic_detection_reseeds_drifted_tracks():
    tr = Tracker(max_faces=2, redetect_every=3)
    (t,) = tr.add_detections([([70, 70, 130, 130], 5.0)])
    assert t.angle_deg == 5.0
    tr.update(t, face_points(size=60), np.full(68, 0.9))
    for _ in range(3):
        tr.end_frame()
    assert tr.needs_detection()
    good = geometry.box_from_points(face_points(size=60))
    assert tr.add_detections([good + 1.0]) == [] and tr.reseeds == 0  # agrees: left alone
    tr.update(t, face_points(size=45), np.full(68, 0.9))  # the crop shrank
    assert tr.add_detections([(good, 3.0)]) == [] and tr.reseeds == 1
    assert np.allclose(t.box, good) and t.angle_deg == 3.0 and t.from_detector


def test_unconfirmed_tracks_are_dropped_after_max_misses():
    """A track that detector checks no longer confirm (it slid off the face) dies; one that a
    check confirms again resets its count."""
    tr = Tracker(max_faces=2, redetect_every=1, max_misses=2)
    a, b = tr.add_detections([[70, 70, 130, 130], [300, 300, 360, 360]])
    tr.update(a, face_points(), np.full(68, 0.9))
    tr.update(b, face_points((330, 330)), np.full(68, 0.9))
    tr.add_detections([[72, 71, 131, 128]])  # b unmatched: 1 miss
    assert b.misses == 1 and a.misses == 0 and tr.tracks == [a, b]
    tr.add_detections([[72, 71, 131, 128], [301, 301, 359, 359]])  # b seen again
    assert b.misses == 0
    tr.add_detections([])
    assert tr.tracks == [a, b] and a.misses == b.misses == 1
    tr.add_detections([[72, 71, 131, 128]])
    assert tr.tracks == [a] and tr.unconfirmed_drops == 1
    tr.add_detections([], check=False)  # a detection that is not a check leaves counts alone
    assert a.misses == 0 and tr.tracks == [a]


def test_doubtful_track_requests_a_detection():
    tr = Tracker(max_faces=1, redetect_every=0)
    t, _ = acquire(tr, 0.9)
    tr.end_frame()
    assert not tr.needs_detection()
    tr.request_detection()
    assert tr.needs_detection()
    tr.add_detections([[70, 70, 130, 130]])
    assert not tr.needs_detection()
