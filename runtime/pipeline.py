"""The embeddable API: frames in, faces with 68 landmarks in image pixels out.

    from shfan import Pipeline
    with Pipeline() as p:                       # shipped default model, best backend here
        for result in p.stream("csi://0"):      # or "demo", 0, "video.mp4", "faces/"
            print(result.index, [f.points.shape for f in result.faces])
        faces = p.process(image_rgb).faces      # one still image

Per frame: crops come from the tracker (previous landmarks) or the detector, all faces go
through the backend in one batch, and points are mapped back with the exact inverse of each
crop's similarity transform (DESIGN.md §2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from shfan import geometry
from shfan.runtime.backend import BackendError, open_backend
from shfan.runtime.stats import RunStats, Stopwatch
from shfan.runtime.tracker import Tracker, crop_matrix


@dataclass
class Face:
    box: np.ndarray  # tight box (x0, y0, x1, y1) around the landmarks, image px
    points: np.ndarray  # [K, 2] float32, continuous image px (smoothed when smoothing is on)
    scores: np.ndarray  # [K] float32 heatmap peaks
    score: float  # mean of scores: the tracker's confidence
    track_id: int = -1
    detected: bool = False  # first frame of this track: its crop came from a detection


@dataclass
class Result:
    index: int
    timestamp: float
    faces: list[Face]
    timings: dict[str, float]  # ms per stage: capture, detect, preprocess, infer, postprocess, total
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB frame
    motion: np.ndarray | None = field(default=None, repr=False)  # demo source: known 2x3 motion
    detector_ran: bool = False  # the face detector ran on this frame


def default_model() -> Path:
    from shfan.weights import DEFAULT_ONNX

    if not Path(DEFAULT_ONNX).is_file():
        raise BackendError(f"the default model {DEFAULT_ONNX} is missing from this install; "
                           "reinstall shfan or pass --model PATH (.onnx, .engine or shfan-build folder)")
    return Path(DEFAULT_ONNX)


class Pipeline:
    """Detector + tracker + landmark backend (+ optional One Euro smoothing).

    model: None (shipped default), a shfan-build folder, .onnx or .engine/.plan.
    backend: auto | tensorrt | onnxruntime. min_score: mean heatmap score below which a track
    is dropped and the detector re-acquires the face; max_step: largest size change (x) of a
    tracked face between frames before it counts as lost. check_side: frame size (longest
    side) for the detector's periodic checks of tracked faces (acquisition uses the detector's
    own, larger size).
    """

    def __init__(self, model=None, backend: str = "auto", precision: str | None = None, *,
                 detector_model=None, detector=None, detector_threshold: float = 0.6,
                 max_faces: int = 4, min_score: float = 0.25, redetect_every: int = 5, max_step: float = 1.6,
                 check_side: int = 320, smooth: bool = False, smooth_min_cutoff: float = 1.0, smooth_beta: float = 0.05,
                 threads: int | None = None):
        self.backend = open_backend(model if model is not None else default_model(), backend,
                                    precision=precision, threads=threads)
        self.info = self.backend.info
        self.backend_name = self.backend.name
        if detector is None:
            from shfan.runtime.detector import YuNetDetector

            try:
                detector = YuNetDetector(detector_model, score_threshold=detector_threshold)
            except BaseException:
                self.close()
                raise
        self.detector = detector
        self.tracker = Tracker(max_faces=max_faces, min_score=min_score, redetect_every=redetect_every,
                               max_step=max_step)
        self.smooth = smooth
        self.check_side = check_side
        self.smooth_args = (smooth_min_cutoff, smooth_beta)
        self.stats = RunStats()

    # -- lifecycle
    def close(self):
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one frame
    def _detect(self, image, sw, check: bool = False) -> list[tuple[np.ndarray, float]]:
        """[(landmark box, roll_deg)] from the detector (roll 0 for detectors without eyes).
        Periodic checks of tracked faces run on a smaller copy of the frame (check_side)."""
        from shfan.runtime.detector import landmark_box_from_detection

        with sw("detect"):
            if hasattr(self.detector, "detect_faces"):
                dets = self.detector.detect_faces(image, max_side=self.check_side if check else None)
                return [(landmark_box_from_detection(d.box), d.roll_deg) for d in dets]
            return [(landmark_box_from_detection(box), 0.0) for box, _ in self.detector.detect(image)]

    def _landmarks(self, image, tracks, sw) -> list[tuple]:
        """Run the model on every track's crop in one batch -> [(track, points, scores)]."""
        if not tracks:
            return []
        s = self.info.input_size
        with sw("preprocess"):
            mats = [crop_matrix(t, s) for t in tracks]
            crops = np.stack([geometry.warp(image, m, s) for m in mats])
            batch = crops.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1.0 / 255.0)
        with sw("infer"):
            pts, scores = self.backend.infer(np.ascontiguousarray(batch))
        with sw("postprocess"):
            return [(t, geometry.transform_points(pts[i].astype(np.float64), geometry.invert(m)).astype(np.float32),
                     np.asarray(scores[i], np.float32)) for i, (t, m) in enumerate(zip(tracks, mats))]

    def _step(self, image: np.ndarray, timestamp: float, sw: Stopwatch) -> tuple[list[Face], bool]:
        tracker = self.tracker
        detected = False
        if tracker.needs_detection():
            tracker.add_detections(self._detect(image, sw, check=bool(tracker.tracks)))
            detected = True
        results = self._landmarks(image, list(tracker.tracks), sw)
        with sw("postprocess"):
            lost = [t for t, p, sc in results if not tracker.update(t, p, sc) and not t.from_detector]
            kept = [(t, p, sc) for t, p, sc in results if t in tracker.tracks]
        if lost and not detected:  # a tracked face slipped out of its crop: re-acquire now
            new = tracker.add_detections(self._detect(image, sw))
            detected = True
            for t, p, sc in self._landmarks(image, new, sw):
                if tracker.update(t, p, sc):
                    kept.append((t, p, sc))
        with sw("postprocess"):
            faces = [self._face(t, p, sc, timestamp) for t, p, sc in kept]
            tracker.end_frame()
            alive = {t.id for t in tracker.tracks}
            faces = [f for f in faces if f.track_id in alive]
        return faces, detected

    def _face(self, track, points, scores, timestamp) -> Face:
        shown = points
        if self.smooth:
            if track.filter is None:
                from shfan.runtime.smoothing import OneEuroFilter

                track.filter = OneEuroFilter(*self.smooth_args)
            shown = track.filter(points, timestamp).astype(np.float32)
        return Face(geometry.box_from_points(shown), shown, scores, float(scores.mean()), track.id,
                    detected=track.age <= 1)

    def process(self, image_rgb: np.ndarray, track: bool = False, timestamp: float | None = None,
                index: int = 0) -> Result:
        """Landmarks of every face in one RGB uint8 image. track=False detects afresh (stills);
        track=True continues the tracks of the previous call (video frames)."""
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
        if not track:
            self.tracker.reset()
        sw = Stopwatch()
        t0 = time.perf_counter()
        ts = time.monotonic() if timestamp is None else timestamp
        faces, detected = self._step(image, ts, sw)
        sw.ms["total"] = (time.perf_counter() - t0) * 1000.0
        for stage in ("capture", "detect", "preprocess", "infer", "postprocess"):
            sw.ms.setdefault(stage, 0.0)
        return Result(index, ts, faces, sw.ms, image, detector_ran=detected)

    # -- streams
    def stream(self, source="demo", max_frames: int | None = None,
               callback: Callable[[Result], None] | None = None, **source_options) -> Iterator[Result]:
        """Results for each frame of a source (URI, camera number, path, or FrameSource).
        Source errors raise shfan.runtime.sources.SourceError after the frames already read."""
        from shfan.runtime.sources import FrameSource

        src = source if isinstance(source, FrameSource) else FrameSource(source, **source_options)
        self.tracker.reset()
        self.stats = RunStats()
        with src:
            n = 0
            while max_frames is None or n < max_frames:
                t0 = time.perf_counter()
                frame = src.read()
                wait_ms = (time.perf_counter() - t0) * 1000.0
                if frame is None:
                    return
                result = self.process(frame.image, track=True, timestamp=frame.timestamp,
                                                index=frame.index)
                result.timings["capture"] = wait_ms
                result.motion = frame.motion
                self.stats.add(result.timings, len(result.faces), result.detector_ran)
                n += 1
                if callback is not None:
                    callback(result)
                yield result
