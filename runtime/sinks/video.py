"""--output VIDEO: the annotated video file (outputs.VideoSink: read back, then renamed into place)."""

from __future__ import annotations

from shfan.runtime import outputs
from shfan.runtime.sinks import Sink, SinkSpec, register


class VideoFileSink(Sink):
    def __init__(self, path, fps: float = 30.0):
        self.label = f"--output {path}"
        self.writer = outputs.VideoSink(path, fps=fps)

    def write(self, result, frame) -> bool:
        self.writer.write(frame.annotated)
        return True

    def close(self, keep: bool = True) -> None:
        self.writer.close(keep=keep)


register(SinkSpec("video", "--output", "write the annotated video (.mp4 or .avi)", "file",
                  lambda value, _: VideoFileSink(value), metavar="VIDEO"))
