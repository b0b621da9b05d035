"""PipelineOptions: everything a Pipeline is tuned with (shfan-run's options are its fields)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from shfan.options import check_fields, option


def available_cores() -> int:
    """CPU cores this process may run on (affinity / container limits), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


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

    running_mode: str = option("image", choices=("image", "video"))
    color: str = option("rgb", choices=("rgb", "bgr"))
    max_faces: int = option(4, "faces tracked at once (default 4)", "positive")
    min_face: float = option(24.0, "smallest face (width in frame pixels) to find; the detector sees the frame "
                                   "scaled so such a face is 24 px: full size at 24 (default), half size at 48 "
                                   "(~4x cheaper)", "positive", metavar="PX")
    detector_threshold: float = option(0.6, range="probability")
    redetect_every: int = option(5, "run the face detector every N frames to check tracks and find new faces "
                                    "(0: only when a track is lost; default 5)", "nonneg", metavar="N")
    max_misses: int = option(1, "drop a track after N detector checks in a row found no face under it (default 1)",
                             "positive", metavar="N")
    min_score: float = option(0.25, "mean heatmap score below which a track is dropped and re-detected "
                                    "(default 0.25)", "probability")
    max_step: float = 1.6
    scene_cut: float = 0.15
    verify_below: float = option(0.75, range="probability")
    smooth: bool = False
    smooth_min_cutoff: float = option(1.0, range="positive")
    smooth_beta: float = option(0.05, range="nonneg")
    threads: int | None = option(None, "ONNX Runtime CPU threads (default: one per physical core, at most 8; "
                                       "capped at the cores available)", "positive", metavar="N")

    def __post_init__(self):
        self.validate()  # made in Python or from shfan-run's options: the same checks, the same words

    def validate(self) -> "PipelineOptions":
        """ValueError naming the first bad option: its type, then its declared range or choices
        (check_fields: the rules shfan-run's options use), then the two that take inf."""
        self._check_types()
        check_fields(self, ValueError)
        for name in ("max_step", "scene_cut"):  # inf: never
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"{name} must be > 0 (inf: off), got {getattr(self, name)}")
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
