"""Face tracks: the next frame's crop comes from this frame's landmarks, so the detector runs
only to acquire faces, when a track's confidence (mean heatmap peak) drops, and every few frames
to check the tracks and pick up new faces.

A track lives only while the detector confirms it: a landmark model finds peaks anywhere (on
real footage a track that slid off a face onto a desk kept a mean heatmap score of 0.70, far
above any usable min_score), so confidence alone cannot drop a ghost. Every detector run is a
check; a track that no detection overlaps at `max_misses` checks in a row is dropped."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from shfan import geometry
from shfan.metrics import OUTER_EYE_CORNERS


@dataclass
class Track:
    id: int
    box: np.ndarray  # tight landmark box (x0, y0, x1, y1) in the face's upright frame
    angle_deg: float = 0.0  # in-plane roll used for the crop
    points: np.ndarray | None = None  # last landmarks [K, 2] (image px), None until first inference
    score: float = 0.0  # last mean heatmap score
    age: int = 0  # frames since acquisition
    from_detector: bool = True  # this frame's crop came from a detection
    misses: int = 0  # detector checks in a row that found no face under this track
    filter: object = field(default=None, repr=False)  # One Euro state when smoothing


def roll_deg(points: np.ndarray) -> float:
    """In-plane roll (degrees) of a 68-point face: angle of the outer-eye-corner line."""
    if len(points) != 68:
        return 0.0
    left, right = OUTER_EYE_CORNERS[68]
    (x0, y0), (x1, y1) = points[left], points[right]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def upright_box(points: np.ndarray, angle_deg: float) -> np.ndarray:
    """Tight box of the points in the face's upright frame, returned centred where the rotated
    box is centred in the image (so crop_for_box(box, ..., angle_deg) frames the face)."""
    p = np.asarray(points, np.float64)
    c = p.mean(axis=0)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # image -> upright
    q = (p - c) @ rot.T
    lo, hi = q.min(axis=0), q.max(axis=0)
    centre = c + ((lo + hi) / 2) @ rot  # back to the image
    half = (hi - lo) / 2
    return np.concatenate([centre - half, centre + half])


def crop_matrix(track: Track, input_size: int) -> np.ndarray:
    """image -> network-input matrix for a track (geometry.crop_for_box convention)."""
    # geometry.similarity rotates counter-clockwise by angle_deg; the roll measured in image
    # coordinates (y down) is clockwise-positive, so the crop undoes it with the same sign.
    return geometry.crop_for_box(track.box, input_size, angle_deg=track.angle_deg)


def plausible_step(old_box, new_box, max_step: float = 1.6, max_shift: float = 1.0) -> bool:
    """Whether two boxes can be the same face: size within max_step x, centres within
    max_shift x the old size. Between frames (1.6, 1.0) a face cannot do more; landmarks that
    say so have lost it (guards against a crop that grows or shrinks without bound)."""
    old_size = max(old_box[2] - old_box[0], old_box[3] - old_box[1], 1e-6)
    new_size = max(new_box[2] - new_box[0], new_box[3] - new_box[1], 1e-6)
    ratio = new_size / old_size
    jump = np.hypot((new_box[0] + new_box[2] - old_box[0] - old_box[2]) / 2,
                    (new_box[1] + new_box[3] - old_box[1] - old_box[3]) / 2)
    return 1 / max_step <= ratio <= max_step and jump <= max_shift * old_size


def overlap(a, b) -> float:
    """Intersection over the smaller box: 1 when one box lies inside the other (a track whose
    crop shrank inside its face still matches the face's detection)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


class Tracker:
    """Keeps up to max_faces tracks. The pipeline asks `needs_detection()`, feeds detections to
    `add_detections()`, runs the landmark model on every track's crop and reports back with
    `update()`, which drops tracks whose confidence fell below min_score or whose box jumped.

    Every `redetect_every` frames the detector also checks the tracks: a track that no
    detection overlaps is dropped after `max_misses` such checks in a row; a track whose box
    disagrees with its detection by more than `reseed_size` x in size or `reseed_shift` of its
    size in position is re-seeded from the detection. This bounds the slow drift (e.g. a crop
    that shrinks a little every frame) that a model with a bias toward its mean shape feeds back
    through the crops.
    """

    def __init__(self, max_faces: int = 4, min_score: float = 0.25, redetect_every: int = 5,
                 rotate: bool = True, max_step: float = 1.6, reseed_size: float = 1.15, reseed_shift: float = 0.15,
                 max_misses: int = 1):
        self.max_faces, self.min_score, self.max_step = max_faces, min_score, max_step
        self.redetect_every, self.rotate = redetect_every, rotate
        self.reseed_size, self.reseed_shift = reseed_size, reseed_shift
        self.max_misses = max_misses
        self.tracks: list[Track] = []
        self.reseeds = 0
        self.unconfirmed_drops = 0  # tracks dropped because the detector no longer saw a face there
        self._force = False
        self._ids = itertools.count()
        self._since_detect = 0

    def needs_detection(self) -> bool:
        """Detect when nothing is tracked, and every redetect_every frames (0: never) to check
        the tracks and pick up new faces."""
        if not self.tracks or self._force:
            return True
        return self.redetect_every > 0 and self._since_detect >= self.redetect_every

    def request_detection(self):
        """Run the detector on the next frame (a track looks doubtful)."""
        self._force = True

    def add_detections(self, detections, min_overlap: float = 0.5, check: bool = True) -> list[Track]:
        """detections: landmark boxes, or (landmark box, roll_deg) pairs, best first, from a
        detector run on the whole frame. A detection overlapping a track confirms it (re-seeding
        it when they disagree); the others start new tracks while there is room. With check, a
        track that no detection overlaps counts a miss and is dropped at max_misses in a row.
        Returns the new tracks."""
        self._since_detect = 0
        self._force = False
        new, confirmed = [], set()
        for det in detections:
            box, angle = (det, 0.0) if np.ndim(det[0]) == 0 else det
            box = np.asarray(box, np.float64)
            angle = float(angle) if self.rotate else 0.0
            match = max(self.tracks, key=lambda t: overlap(box, self._image_box(t)), default=None)
            if match is not None and overlap(box, self._image_box(match)) > min_overlap:
                confirmed.add(match.id)
                if match not in new and not plausible_step(match.box, box, self.reseed_size, self.reseed_shift):
                    match.box, match.angle_deg, match.from_detector = box, angle, True
                    self.reseeds += 1
                continue
            if len(self.tracks) >= self.max_faces:
                continue
            track = Track(next(self._ids), box, angle_deg=angle)
            self.tracks.append(track)
            new.append(track)
            confirmed.add(track.id)
        for t in list(self.tracks):
            if t.id in confirmed:
                t.misses = 0
            elif check and self.max_misses > 0:
                t.misses += 1
                if t.misses >= self.max_misses:
                    self.tracks.remove(t)
                    self.unconfirmed_drops += 1
        return new

    @staticmethod
    def _image_box(track: Track) -> np.ndarray:
        return geometry.box_from_points(track.points) if track.points is not None else track.box

    def update(self, track: Track, points: np.ndarray, scores: np.ndarray) -> bool:
        """Record a track's landmarks; set up next frame's crop. False (track dropped) when the
        mean score is below min_score."""
        track.points, track.score = points, float(np.mean(scores))
        track.age += 1
        angle = roll_deg(points) if self.rotate else 0.0
        box = upright_box(points, angle)
        # A detector box is only roughly a landmark box: the step check starts from the first
        # landmark box of a track.
        jumped = not track.from_detector and not plausible_step(track.box, box, self.max_step)
        if track.score < self.min_score or jumped:
            self.tracks.remove(track)
            return False
        track.angle_deg, track.box = angle, box
        track.from_detector = False
        return True

    def end_frame(self):
        self._since_detect += 1
        self._dedupe()

    def _dedupe(self, max_overlap: float = 0.5):
        """Two tracks that converged on one face: keep the more confident."""
        keep: list[Track] = []
        for t in sorted(self.tracks, key=lambda t: -t.score):
            if all(overlap(self._image_box(t), self._image_box(k)) <= max_overlap for k in keep):
                keep.append(t)
        self.tracks = [t for t in self.tracks if t in keep]

    def reset(self):
        self.tracks.clear()
        self._since_detect = 0
        self._force = False
