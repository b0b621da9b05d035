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

This module is the Pipeline itself; what it is built from lives beside it and is re-exported
here: pipeline_options (PipelineOptions, available_cores), results (Result, Face, SCHEMA_VERSION)
and framing (the detector's input size, scene-cut thumbnails, checks on boxes and images).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import Callable, Iterator

import numpy as np

from shfan import geometry
from shfan.errors import BackendError
from shfan.io import Closable
from shfan.runtime.backends import open_backend
from shfan.runtime.framing import (DETECTOR_MIN_FACE, MAX_DETECTOR_SIDE, QUICK_SCAN_SIDE,
                                   as_rgb, checked_boxes, detector_side, scene_change, thumbnail)
from shfan.runtime.pipeline_options import IGNORED_KWARGS, OPTION_NAMES, PipelineOptions, available_cores
from shfan.runtime.results import SCHEMA_VERSION, Face, Result
from shfan.runtime.stats import RunStats, Stopwatch
from shfan.runtime.tracker import Track, Tracker, crop_matrix

log = logging.getLogger("shfan.runtime")

# The API and what earlier versions of this module held (now in pipeline_options, results, framing)
__all__ = ["Pipeline", "PipelineOptions", "Result", "Face", "SCHEMA_VERSION", "BackendError", "available_cores",
           "OPTION_NAMES", "IGNORED_KWARGS", "detector_side", "checked_boxes", "thumbnail", "scene_change", "as_rgb",
           "DETECTOR_MIN_FACE", "MAX_DETECTOR_SIDE", "QUICK_SCAN_SIDE"]


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
        return as_rgb(image, self.options.color)

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
