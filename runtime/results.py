"""What a Pipeline returns: a Result per frame holding a Face per face, and their JSON Lines
record (README "JSON Lines records")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEMA_VERSION = 1  # of Result.to_dict() / the JSON Lines records


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
