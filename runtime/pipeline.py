"""The embeddable API: frames in, faces with 68 landmarks in image pixels out.

    from shfan import Pipeline, PipelineOptions
    with Pipeline() as p:                       # shipped default model, best backend here
        for result in p.stream("csi://0"):      # or "demo", 0, "video.mp4", "faces/"
            print(result.index, [f.points.shape for f in result.faces])
        faces = p.process(image_rgb).faces      # one still image
    opts = PipelineOptions(running_mode="video", color="bgr", max_faces=8)
    with Pipeline(options=opts) as p:           # ROS bgr8 / OpenCV frames, tracked between calls
        faces = p.process(frame_bgr).faces
        faces = p.process(frame_bgr, boxes=[[x0, y0, x1, y1]]).faces   # your own detector's boxes

Per frame: crops come from the tracker (previous landmarks) or the detector, all faces go
through the backend in one batch, and points are mapped back with the exact inverse of each
crop's similarity transform (DESIGN.md §2).

Thread safety: one lock per Pipeline serialises process()/stream() frames, so concurrent callers
get exactly the results they would get alone. The cost is that calls from several threads run one
after another; the backend already uses every core for one call (ONNX Runtime intra-op threads),
so throughput stays that of one caller. For parallel work open one Pipeline per thread (each has
its own backend session / TensorRT context).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from shfan import geometry
from shfan.errors import BackendError
from shfan.io import Closable
from shfan.options import option
from shfan.runtime.backends import open_backend
from shfan.runtime.stats import RunStats, Stopwatch
from shfan.runtime.tracker import Track, Tracker, crop_matrix

log = logging.getLogger("shfan.runtime")

SCHEMA_VERSION = 1  # of Result.to_dict() / the JSON Lines records

# YuNet finds faces whose landmark box is >= 24 px wide in its input (AFW faces pasted at each
# width: 10 px 14 %, 16 px 50 %, 20 px 88 %, 24 px 90 %, 32 px 98 %); the detector's input is
# scaled so that a face of `min_face` frame pixels has at least this size.
DETECTOR_MIN_FACE = 24
# While nothing is tracked, frames between full scans are searched at most this size (big faces
# are found on the next frame; small ones at the next full scan, <= redetect_every frames later).
# YuNet on a 16:9 frame, 2-core x86: 320 px 17 ms, 640 px 30 ms, 960 px 61 ms, 1920 px 294 ms.
QUICK_SCAN_SIDE = 640


def available_cores() -> int:
    """CPU cores this process may run on (affinity / container limits), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


# The detector never sees more than this many pixels on its longest side: YuNet's memory grows
# with its input (an 8000 x 8000 photo at full size took 5.7 GB and 21 s, and found a false face);
# in frames this large the smallest findable face grows accordingly (8000 px: 100 px faces).
MAX_DETECTOR_SIDE = 1920


def detector_side(frame_shape, min_face: float) -> int:
    """Longest side of the image the detector sees: the whole frame scaled so that a face
    min_face px wide is DETECTOR_MIN_FACE px there (never upscaled), at most MAX_DETECTOR_SIDE."""
    longest = max(frame_shape[0], frame_shape[1])
    scale = min(1.0, DETECTOR_MIN_FACE / max(float(min_face), 1e-6))
    return max(1, min(MAX_DETECTOR_SIDE, math.ceil(longest * scale)))


def thumbnail(image: np.ndarray) -> np.ndarray:
    """32x18 grey thumbnail for scene-cut detection."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)


def scene_change(a: np.ndarray | None, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, 0..1."""
    return 0.0 if a is None else float(np.abs(a - b).mean() / 255.0)


def checked_boxes(boxes) -> np.ndarray:
    """[N, 4] float64 (x0, y0, x1, y1) boxes; ValueError naming the first that is not finite, empty
    or inverted (a NaN or inf box would give a face of NaN points)."""
    try:
        arr = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"boxes must be numbers [[x0, y0, x1, y1], ...], got {boxes!r:.80}") from None
    if arr.size % 4 or (arr.ndim > 1 and arr.shape[-1] != 4):
        raise ValueError(f"boxes must be [[x0, y0, x1, y1], ...], got shape {arr.shape}")
    arr = arr.reshape(-1, 4)
    for i, b in enumerate(arr):
        if not np.isfinite(b).all():
            raise ValueError(f"box {i} {b.tolist()} is not finite")
        if not (b[2] > b[0] and b[3] > b[1]):
            raise ValueError(f"box {i} {b.tolist()} is empty or inverted: need (x0, y0, x1, y1) with x1 > x0, y1 > y0")
    return arr


@dataclass
class Face:
    box: np.ndarray  # tight box (x0, y0, x1, y1) around the landmarks, image px
    points: np.ndarray  # [K, 2] float32, continuous image px (smoothed when smoothing is on)
    scores: np.ndarray  # [K] float32 heatmap peak values (~1 sharp; not probabilities, may exceed 1)
    score: float  # mean of scores: the tracker's confidence
    track_id: int = -1
    detected: bool = False  # first frame of this track: its crop came from a detection (not: the detector ran)

    def to_dict(self) -> dict:
        return {"id": self.track_id,
                "box": [round(float(v), 3) for v in self.box],
                "score": round(float(self.score), 4),
                "points": [[round(float(x), 3), round(float(y), 3)] for x, y in self.points],
                "scores": [round(float(s), 4) for s in self.scores],
                "detected": bool(self.detected)}


@dataclass
class Result:
    index: int
    timestamp: float
    faces: list[Face]
    timings: dict[str, float]  # ms per stage: capture, detect, preprocess, infer, postprocess, total
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB frame
    motion: np.ndarray | None = field(default=None, repr=False)  # demo source: known 2x3 motion
    detector_ran: bool = False  # the face detector ran on this frame
    scene_cut: bool = False  # tracking was reset: the frame differs too much from the previous one
    image_name: str | None = None  # image-folder sources: the file this frame is

    def to_dict(self) -> dict:
        """A JSON-ready record (the --jsonl line), with the schema version; README "JSON Lines
        records" documents every field."""
        record = {"schema": SCHEMA_VERSION, "frame": self.index}
        if self.image_name is not None:
            record["image"] = self.image_name
        record.update({"timestamp": round(float(self.timestamp), 6), "faces": [f.to_dict() for f in self.faces],
                       "detector_ran": bool(self.detector_ran),
                       "latency_ms": round(float(self.timings.get("total", 0.0)), 3),
                       "timings_ms": {k: round(float(v), 3) for k, v in self.timings.items()}})
        return record


@dataclass
class PipelineOptions:
    """Everything a Pipeline can be tuned with (shfan-run flags map onto these).

    running_mode: "image" (every process() call detects afresh: stills, unrelated frames) or
        "video" (process() continues the tracks of the previous call). stream() always tracks,
        except on still-image sources (folders), where every image is detected afresh.
    color: channel order of the images given to process(): "rgb" or "bgr" (OpenCV, ROS bgr8).
    max_faces: faces tracked at once. min_face: smallest face (px, face width in the frame)
        the detector must find; it sets the detector's input size (see detector_side).
    redetect_every: the detector checks the tracks and looks for new faces every N frames
        (0: only when nothing is tracked or a track is lost). max_misses: checks in a row a
        track may go without a detection under it before it is dropped.
    min_score: mean heatmap score below which a track is dropped; max_step: largest size change
        (x) of a tracked face between frames before it counts as lost.
    scene_cut: thumbnail difference (0..1) above which tracking restarts from a detection
        (measured on the shared clips: cuts 0.29-0.57, every other frame <= 0.03).
    verify_below: a track whose mean heatmap score falls below this gets a detector check on the
        next frame (the detector decides; the score alone cannot: on the shared clips faces scored
        >= 0.86 (5th pct) and a ghost on a cartoon 0.61 median, 0.70 95th pct; a desk ghost in the
        field scored 0.70, so min_score stays a last resort).
    smooth*: One Euro smoothing of the points. threads: backend CPU threads (capped at the
    cores available).
    """

    running_mode: str = "image"
    color: str = "rgb"
    max_faces: int = option(4, "faces tracked at once (default 4)", "positive")
    min_face: float = option(24.0, "smallest face (width in frame pixels) to find; the detector sees the frame "
                                   "scaled so such a face is 24 px: full size at 24 (default), half size at 48 "
                                   "(~4x cheaper)", "positive", metavar="PX")
    detector_threshold: float = 0.6
    redetect_every: int = option(5, "run the face detector every N frames to check tracks and find new faces "
                                    "(0: only when a track is lost; default 5)", "nonneg", metavar="N")
    max_misses: int = option(1, "drop a track after N detector checks in a row found no face under it (default 1)",
                             "positive", metavar="N")
    min_score: float = option(0.25, "mean heatmap score below which a track is dropped and re-detected "
                                    "(default 0.25)", "probability")
    max_step: float = 1.6
    scene_cut: float = 0.15
    verify_below: float = 0.75
    smooth: bool = False
    smooth_min_cutoff: float = 1.0
    smooth_beta: float = 0.05
    threads: int | None = option(None, "ONNX Runtime CPU threads (default: one per physical core, at most 8; "
                                       "capped at the cores available)", "positive", metavar="N")

    def validate(self) -> "PipelineOptions":
        self._check_types()
        if self.running_mode not in ("image", "video"):
            raise ValueError(f"running_mode must be 'image' or 'video', got {self.running_mode!r}")
        if self.color not in ("rgb", "bgr"):
            raise ValueError(f"color must be 'rgb' or 'bgr', got {self.color!r}")
        for name in ("max_faces", "max_misses"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.redetect_every < 0:
            raise ValueError(f"redetect_every must be >= 0, got {self.redetect_every}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        for name in ("detector_threshold", "verify_below", "min_score"):  # min_score: a probability, as declared
            if not 0.0 <= float(getattr(self, name)) <= 1.0:  # NaN fails too
                raise ValueError(f"{name} must be from 0 to 1, got {getattr(self, name)}")
        for name in ("min_face", "smooth_min_cutoff"):
            if not 0.0 < float(getattr(self, name)) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("max_step", "scene_cut"):  # inf: never
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"{name} must be > 0 (inf: off), got {getattr(self, name)}")
        if not 0.0 <= float(self.smooth_beta) < math.inf:
            raise ValueError(f"smooth_beta must be a finite number >= 0, got {self.smooth_beta}")
        return self


    def _check_types(self) -> None:
        """Each field holds its declared type: whole numbers for int fields (not 2.7, "3" or
        True), real numbers for float ones, None only where the field allows it."""
        import typing

        for name, hint in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            kinds = typing.get_args(hint) or (hint,)
            if value is None and type(None) in kinds:
                continue
            if bool in kinds:
                ok, what = isinstance(value, (bool, np.bool_)), "True or False"
            elif int in kinds:
                ok, what = isinstance(value, (int, np.integer)) and not isinstance(value, bool), "a whole number"
            elif float in kinds:
                ok, what = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool), \
                    "a number"
            else:
                ok, what = isinstance(value, str), "text"
            if not ok:
                none = " or None" if type(None) in kinds else ""
                raise ValueError(f"{name} must be {what}{none}, got {value!r} ({type(value).__name__})")


OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PipelineOptions))
IGNORED_KWARGS = frozenset({"check_side"})  # replaced by min_face (checks and acquisition share one size)


class Pipeline(Closable):
    """Detector + tracker + landmark backend (+ optional One Euro smoothing).

    model: None (shipped default), a shfan-build folder, .onnx or .engine/.plan.
    backend: auto | tensorrt | onnxruntime. options: a PipelineOptions; its fields may also be
    given as keyword arguments (they override options), as in earlier versions.
    detector: any object with detect_faces(image, max_side) (YuNetDetector) or
    detect(image) -> [(box, score)]; detector_model: path to the YuNet .onnx.
    """

    def __init__(self, model=None, backend: str = "auto", precision: str | None = None, *,
                 options: PipelineOptions | None = None, detector_model=None, detector=None, **kwargs):
        unknown = set(kwargs) - OPTION_NAMES - IGNORED_KWARGS
        if unknown:
            raise TypeError(f"Pipeline() got unknown option(s) {', '.join(sorted(unknown))}; "
                            f"valid: {', '.join(sorted(OPTION_NAMES))}")
        if kwargs.keys() & IGNORED_KWARGS:
            log.warning("Pipeline(check_side=...) is ignored; the detector's input size comes from min_face")
        opts = dataclasses.replace(options or PipelineOptions(),
                                   **{k: v for k, v in kwargs.items() if k in OPTION_NAMES}).validate()
        cores = available_cores()
        if opts.threads is not None and opts.threads > cores:
            log.warning("threads=%d capped at the %d cores available", opts.threads, cores)
            opts = dataclasses.replace(opts, threads=cores)
        self.options = opts
        from shfan import weights  # no torch: names and paths

        model = weights.resolve("compact" if model is None else model, "onnx")  # a shipped model's name, or a path
        self.backend = open_backend(model, backend,
                                    precision=precision, threads=opts.threads)
        self.info = self.backend.info
        self.backend_name = self.backend.name
        if detector is None:
            from shfan.runtime.detector import YuNetDetector

            try:
                detector = YuNetDetector(detector_model, score_threshold=opts.detector_threshold)
            except BaseException:
                self.close()
                raise
        self.detector = detector
        self.tracker = Tracker(max_faces=opts.max_faces, min_score=opts.min_score, redetect_every=opts.redetect_every,
                               max_step=opts.max_step, max_misses=opts.max_misses)
        self.stats = RunStats()
        self.scene_cuts = 0
        self._thumb = None
        self._since_full = 0  # frames since the detector last scanned at full min_face resolution
        self._lock = threading.RLock()

    # backwards-compatible attribute names
    @property
    def smooth(self) -> bool:
        return self.options.smooth

    # -- lifecycle
    def _check_open(self):
        if self.backend is None:
            raise BackendError("this Pipeline is closed (close() or the end of its with-block); open a new one")

    def close(self):
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def reset(self):
        """Forget all tracks (the next frame is detected afresh)."""
        with self._lock:
            self.tracker.reset()
            self._thumb = None
            self._since_full = 0

    # -- one frame
    def _detect(self, image, sw, quick: bool = False) -> list[tuple[np.ndarray, float]]:
        """[(landmark box, roll_deg)] from the detector (roll 0 for detectors without eyes), on
        the whole frame at the size min_face needs (quick: at most QUICK_SCAN_SIDE)."""
        from shfan.runtime.detector import landmark_box_from_detection

        with sw("detect"):
            if hasattr(self.detector, "detect_faces"):
                side = detector_side(image.shape, self.options.min_face)
                if quick:
                    side = min(side, QUICK_SCAN_SIDE)
                else:
                    self._since_full = 0
                dets = self.detector.detect_faces(image, max_side=side)
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
            # Nothing tracked and no full scan due: a quick look for big faces only.
            quick = not tracker.tracks and 0 < self._since_full < max(1, self.options.redetect_every)
            tracker.add_detections(self._detect(image, sw, quick=quick))
            detected = True
        self._since_full += 1
        results = self._landmarks(image, list(tracker.tracks), sw)
        with sw("postprocess"):
            lost = [t for t, p, sc in results if not tracker.update(t, p, sc) and not t.from_detector]
            kept = [(t, p, sc) for t, p, sc in results if t in tracker.tracks]
        if lost and not detected:  # a tracked face slipped out of its crop: re-acquire now
            new = tracker.add_detections(self._detect(image, sw))
            detected = True
            kept = [(t, p, sc) for t, p, sc in kept if t in tracker.tracks]  # the check may drop some
            for t, p, sc in self._landmarks(image, new, sw):
                if tracker.update(t, p, sc):
                    kept.append((t, p, sc))
        with sw("postprocess"):
            if any(t.score < self.options.verify_below for t, _, _ in kept):
                tracker.request_detection()  # a doubtful track: let the detector look next frame
            faces = [self._face(t, p, sc, timestamp) for t, p, sc in kept]
            tracker.end_frame()
            alive = {t.id for t in tracker.tracks}
            faces = [f for f in faces if f.track_id in alive]
        return faces, detected

    def _face(self, track, points, scores, timestamp) -> Face:
        shown = points
        if self.options.smooth:
            if track.filter is None:
                from shfan.runtime.smoothing import OneEuroFilter

                track.filter = OneEuroFilter(self.options.smooth_min_cutoff, self.options.smooth_beta)
            shown = track.filter(points, timestamp).astype(np.float32)
        return Face(geometry.box_from_points(shown), shown, scores, float(scores.mean()), track.id,
                    detected=track.age <= 1)

    def _boxes_step(self, image, boxes, box_kind: str, sw) -> list[Face]:
        """Landmarks inside boxes from an upstream detector; the tracker is left alone."""
        from shfan.runtime.detector import landmark_box_from_detection

        tracks = []
        for i, b in enumerate(checked_boxes(boxes)):
            tracks.append(Track(i, landmark_box_from_detection(b) if box_kind == "detector" else b))
        results = self._landmarks(image, tracks, sw)
        with sw("postprocess"):
            return [Face(geometry.box_from_points(p), p, sc, float(sc.mean()), t.id, detected=True)
                    for t, p, sc in results]

    def _as_rgb(self, image) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            raise ValueError(f"expected an H x W x 3 uint8 {self.options.color.upper()} image (a NumPy array), "
                             f"got {type(image).__name__}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise ValueError(f"expected an H x W x 3 uint8 {self.options.color.upper()} image (H, W >= 1), "
                             f"got {image.dtype} {image.shape}")
        if self.options.color == "bgr":
            import cv2

            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image

    def process(self, image: np.ndarray, track: bool | None = None, timestamp: float | None = None,
                index: int = 0, *, boxes=None, box_kind: str = "detector") -> Result:
        """Landmarks of every face in one uint8 image (RGB, or BGR with options.color="bgr").

        track: None follows options.running_mode; False detects afresh (stills); True continues
        the tracks of the previous call (video frames). boxes: [[x0, y0, x1, y1], ...] faces
        found by your own detector (box_kind "detector": a face detector's box, forehead to
        chin, as YuNet's; "landmarks": the tight box of the 68 points); then no detection and
        no tracking happen, and face i belongs to box i (track_id i). Thread-safe.
        """
        self._check_open()
        rgb = self._as_rgb(image)
        if timestamp is not None:
            try:
                timestamp = float(timestamp)
            except (TypeError, ValueError):
                raise ValueError(f"timestamp must be a number of seconds, got {timestamp!r}") from None
            if not math.isfinite(timestamp):
                raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp}")
        if box_kind not in ("detector", "landmarks"):
            raise ValueError(f"box_kind must be 'detector' or 'landmarks', got {box_kind!r}")
        if track is None:
            track = self.options.running_mode == "video"
        with self._lock:
            return self._process(rgb, track, timestamp, index, boxes, box_kind)

    def _process(self, image, track: bool, timestamp, index, boxes=None, box_kind="detector",
                 capture_ms: float = 0.0, count: bool = True) -> Result:
        sw = Stopwatch()
        t0 = time.perf_counter()
        ts = time.monotonic() if timestamp is None else timestamp
        cut = False
        if boxes is not None:
            faces, detected = self._boxes_step(image, boxes, box_kind, sw), False
        else:
            if not track:
                self.tracker.reset()
                self._thumb = None
                self._since_full = 0
            else:
                thumb = thumbnail(image)
                if self.tracker.tracks and scene_change(self._thumb, thumb) > self.options.scene_cut:
                    self.tracker.reset()  # a cut: the old tracks would land on whatever is there now
                    self._since_full = 0
                    self.scene_cuts += 1
                    cut = True
                self._thumb = thumb
            faces, detected = self._step(image, ts, sw)
        sw.ms["total"] = (time.perf_counter() - t0) * 1000.0
        sw.ms["capture"] = capture_ms
        for stage in ("detect", "preprocess", "infer", "postprocess"):
            sw.ms.setdefault(stage, 0.0)
        if count:
            self.stats.add(sw.ms, len(faces), detected)
        return Result(index, ts, faces, sw.ms, image, detector_ran=detected, scene_cut=cut)

    # -- streams
    def stream(self, source="demo", max_frames: int | None = None,
               callback: Callable[[Result], None] | None = None, *, sinks=(), **source_options) -> Iterator[Result]:
        """Results for each frame of a source (URI, camera number, path, or FrameSource).
        Still-image sources (folders) are detected afresh on every image; videos are tracked.
        `source` may also be one image or an iterable of images (tracked as video frames, timestamps
        index / 30 s).
        sinks: output sinks (shfan.runtime.sinks: McapSink, Ros2BagSink, FoxgloveLiveSink,
        JsonlFileSink, VideoFileSink, WindowSink) written with each frame before it is yielded and
        closed, finished whole, when the stream ends (exhausted, broken out of, or on an error);
        an output error is raised then, after every sink was closed.
        Source errors raise shfan.runtime.sources.SourceError after the frames already read.
        self.stats restarts with each stream and keeps bounded running summaries."""
        from shfan.runtime.sinks import SinkSet

        self._check_open()
        outs = SinkSet(sinks)  # checked before the first frame
        if not outs:
            yield from self._stream(source, max_frames, callback, **source_options)
            return
        try:
            for result in self._stream(source, max_frames, callback, **source_options):
                if not outs.write(result, self.stats.fps()):
                    yield result
                    return  # a sink asked to stop (the preview window was closed)
                yield result
        finally:
            errors = outs.close(keep=True)
            if errors:
                from shfan.errors import OutputError

                raise OutputError(errors[0])

    def _stream(self, source, max_frames, callback, **source_options) -> Iterator[Result]:
        from shfan.runtime.sources import FrameSource, FramesDevice, is_frames

        if is_frames(source):  # an image, or an iterable of images: video frames in memory
            source = FramesDevice(source, self._as_rgb)
        src = source if isinstance(source, FrameSource) else FrameSource(source, **source_options)
        self.reset()
        self.stats = RunStats()
        with src:
            still = bool(getattr(src, "still", False))
            n = 0
            while max_frames is None or n < max_frames:
                t0 = time.perf_counter()
                frame = src.read()
                wait_ms = (time.perf_counter() - t0) * 1000.0
                if frame is None:
                    return
                with self._lock:
                    result = self._process(frame.image, not still, frame.timestamp, frame.index,
                                           capture_ms=wait_ms)
                result.motion = frame.motion
                result.image_name = frame.name
                n += 1
                if callback is not None:
                    callback(result)
                yield result

    async def astream(self, source="demo", max_frames: int | None = None, **source_options):
        """stream() for asyncio code: frames are processed in a worker thread, so the event loop
        stays free. `async for result in pipeline.astream("csi://0"): ...`"""
        import asyncio

        frames = self.stream(source, max_frames, **source_options)
        end = object()
        try:
            while True:
                result = await asyncio.to_thread(next, frames, end)
                if result is end:
                    return
                yield result
        finally:
            await asyncio.to_thread(frames.close)
