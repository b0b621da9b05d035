"""--jsonl FILE: one JSON line per frame (outputs.JsonlSink: appended, whole lines only)."""

from __future__ import annotations

from shfan.runtime import outputs
from shfan.runtime.sinks import Sink, SinkSpec, register


class JsonlFileSink(Sink):
    def __init__(self, path):
        self.label = f"--jsonl {path}"
        self.writer = outputs.JsonlSink(path)  # checked now, opened (for appending) at the first frame

    def write(self, result, frame) -> bool:
        self.writer.write(result)
        return True

    def close(self, keep: bool = True) -> None:
        self.writer.close()  # lines are whole as they go: there is nothing to discard


register(SinkSpec("jsonl", "--jsonl", "append one JSON line per frame ('-' for stdout); earlier lines are kept",
                  "file_or_stdout", lambda value, _: JsonlFileSink(value), metavar="FILE"))
