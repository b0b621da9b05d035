"""Output sinks: where each frame's result goes (window, video, JSON Lines, MCAP, ROS 2 bag, live
Foxglove view). One interface for all of them, so that adding a sink touches one module:

    sink.write(result, frame) -> bool   # once per frame; False: the user asked to stop (window)
    sink.close(keep=True)               # once; keep=False discards what was written

A sink checks its target when it is made and opens it at its first write (so a source that fails
to open leaves nothing behind). Every file sink is whole or nothing: it writes under a temporary
name and moves the finished file into place in close() (shfan.atomic), as outputs.VideoSink does.

Each sink module registers a SinkSpec (its shfan-run option, the kind of value it takes, optional
settings as a dataclass of shfan.options fields, and how to open it); shfan-run makes its options
from the registry, and `Pipeline.stream(..., sinks=[...])` takes the same Sink objects.

Heavy or optional libraries (mcap, foxglove-sdk, mcap-ros2-support) are imported inside the sink
module that needs them, when that sink is made; `import shfan.runtime.sinks` loads none of them.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from shfan.errors import OutputError

log = logging.getLogger("shfan.runtime")

# The sink modules, in the order their options appear in shfan-run --help and the order each
# frame is written (JSON Lines first: its lines are the record of what the other sinks got).
BUILTIN = ("jsonl", "video", "mcap_file", "ros2_bag", "foxglove_live", "window")


class Sink:
    """Base class: a sink gets every frame's result and is closed once."""

    label = "output"  # how messages name it: "--mcap out.mcap"

    def write(self, result, frame: "FrameView") -> bool:
        raise NotImplementedError

    def close(self, keep: bool = True) -> None:
        """Finish (keep=True: move the finished file into place) or discard (keep=False)."""


@dataclass(frozen=True)
class SinkSpec:
    """How shfan-run offers a sink. kind: the value the option takes ("file", "file_or_stdout",
    "dir", "host_port", "switch"); settings: a dataclass whose fields (shfan.options.option) become
    more options; open(value, settings) -> Sink, or None when the option was not given."""

    name: str
    flag: str
    help: str
    kind: str
    open: Callable[[Any, Any], Sink | None]
    metavar: str | None = None
    settings: type | None = None
    library: str | None = None  # the import the sink needs (for a one-line "pip install" error)
    extra: str | None = None  # the pip extra that installs it
    parse: Callable[[str], Any] | None = None  # kind "host_port": text -> value (ValueError: a usage error)


_REGISTRY: dict[str, SinkSpec] = {}


def register(spec: SinkSpec) -> SinkSpec:
    _REGISTRY[spec.name] = spec
    return spec


def specs() -> list[SinkSpec]:
    """Every sink's spec, in BUILTIN order (importing each sink module: they are light)."""
    for name in BUILTIN:
        importlib.import_module(f"{__name__}.{name}")
    return [s for name in BUILTIN for s in _REGISTRY.values() if s.name == name]


def require(module: str, what: str, extra: str = "robotics") -> None:
    """OutputError naming the install when an optional library is missing (never a traceback)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise OutputError(f"{what} needs the {module} package ({exc}); "
                          f"install it with: pip install 'shfan[{extra}]'") from None


class FrameView:
    """One frame as the sinks see it; each rendering is made at most once, and only when a sink
    asks: the annotated BGR picture (window, video) and the JPEG of the camera image (MCAP, bag,
    live view), so two sinks that want the same JPEG do not encode it twice."""

    def __init__(self, result, fps: float | None = None, stamp_ns: int | None = None):
        self.result = result
        self.fps = fps
        self.stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
        self._annotated = None
        self._jpeg: dict[int, bytes] = {}

    @property
    def annotated(self) -> np.ndarray:
        if self._annotated is None:
            from shfan.runtime.outputs import annotate

            self._annotated = annotate(self.result.image, self.result.faces, self.fps)
        return self._annotated

    def jpeg(self, quality: int = 85) -> bytes:
        """The camera image (no drawing: viewers draw the annotations) as JPEG bytes."""
        if quality not in self._jpeg:
            import cv2

            ok, data = cv2.imencode(".jpg", cv2.cvtColor(self.result.image, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise OutputError("OpenCV could not encode a JPEG image")
            self._jpeg[quality] = data.tobytes()
        return self._jpeg[quality]


class StampClock:
    """Result timestamps (media seconds from 0, or monotonic capture seconds) -> nanoseconds since
    the Unix epoch, as robotics tools expect: the first frame gets the wall time when it arrived,
    later frames keep their spacing; never decreasing."""

    def __init__(self):
        self._origin: tuple[int, float] | None = None
        self._last = 0

    def __call__(self, timestamp: float) -> int:
        if self._origin is None:
            self._origin = (time.time_ns(), float(timestamp))
        wall0, ts0 = self._origin
        ns = wall0 + int(round((float(timestamp) - ts0) * 1e9))
        self._last = max(self._last, ns)
        return self._last


class SinkSet:
    """Several sinks written together: shfan-run's frame loop and Pipeline.stream(sinks=...)."""

    def __init__(self, sinks=()):
        self.sinks = []
        self.clock = StampClock()
        for s in sinks:
            self.add(s)

    def add(self, sink) -> None:
        if sink is None:
            return
        if not (callable(getattr(sink, "write", None)) and callable(getattr(sink, "close", None))):
            raise TypeError(f"sinks must have write(result, frame) and close(keep); got {type(sink).__name__}")
        self.sinks.append(sink)

    def __bool__(self):
        return bool(self.sinks)

    def write(self, result, fps: float | None = None) -> bool:
        """Write one frame to every sink; False when one asked to stop (the window was closed)."""
        frame = FrameView(result, fps, self.clock(result.timestamp))
        go_on = True
        for sink in self.sinks:
            if sink.write(result, frame) is False:
                go_on = False
        return go_on

    def close(self, keep: bool = True) -> list[str]:
        """Close every sink (all of them, even when one fails); the errors' messages."""
        errors = []
        for sink in self.sinks:
            try:
                sink.close(keep)
            except OutputError as exc:
                errors.append(str(exc))
        self.sinks = []
        return errors


def settings_from(spec: SinkSpec, values: dict | None = None):
    """spec.settings filled from `values` (unknown names are an error), or None without settings."""
    if spec.settings is None:
        return None
    names = {f.name for f in dataclasses.fields(spec.settings)}
    values = {k: v for k, v in (values or {}).items() if k in names}
    return spec.settings(**values)


class SinkSettings:
    """Base of a sink's settings dataclass: checks its declared fields (shfan.options ranges) when
    made, in the words the CLI options use."""

    def __post_init__(self):
        from shfan.options import check_fields

        check_fields(self, OutputError)


def check_range(name: str, value, low, high) -> None:
    """OutputError unless low <= value <= high (settings that shfan.options' ranges do not cover)."""
    if not (low <= value <= high):
        raise OutputError(f"{name} must be from {low} to {high}, got {value}")
