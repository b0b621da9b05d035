"""--mcap FILE: the run as an MCAP file that Foxglove opens with the landmarks drawn over the image
and no configuration (topics and schemas: sinks.foxglove_messages).

Whole or nothing, like every shfan output: the file is written under `.NAME.<pid>.partial.mcap`
beside the target and renamed onto it in close(), after the MCAP summary (index, statistics) is
written. Ctrl-C and SIGTERM end shfan-run's frame loop, so the file is finished and holds the
frames so far; a killed writer (SIGKILL, power loss) leaves no file at the target, and its partial
file is removed by the next run that writes the same name (outputs.remove_stale_partials).

The writer is the pure-Python `mcap` package's chunked writer (LZ4 chunks of ~1 MiB), with
foxglove-sdk only encoding the messages: its records are appended whole, so a partial file holds
complete chunks up to a cut-off last record (README: "What a killed writer leaves").
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shfan import atomic
from shfan.errors import OutputError
from shfan.options import option
from shfan.runtime import outputs
from shfan.runtime.sinks import Sink, SinkSettings, SinkSpec, register, require
from shfan.runtime.sinks import foxglove_messages as fm

PROFILE = ""  # Foxglove schemas in protobuf: no MCAP profile (ros2 is for ROS 2 bags)


@dataclass
class McapSettings(SinkSettings):
    mcap_jpeg_quality: int = option(85, "JPEG quality of the images in --mcap (1-100; default 85)", "quality",
                                    metavar="Q")
    mcap_image_every: int = option(1, "store the camera image of every Nth frame in --mcap (landmarks and stats "
                                      "of every frame; default 1)", "positive", metavar="N")


class McapSink(Sink):
    """Each frame's JPEG image, face annotations and stats into one MCAP file (see the module)."""

    def __init__(self, path, settings: McapSettings | None = None, chunk_size: int = 1 << 20):
        require("mcap", "--mcap")
        require("foxglove", "--mcap")
        self.path = Path(path)
        self.label = f"--mcap {path}"
        self.settings = settings or McapSettings()
        problem = atomic.output_problem(self.path)  # folders, special files, long names, read-only places
        if problem:
            raise OutputError(problem)
        outputs.remove_stale_partials(self.path)
        where = Path(tempfile.gettempdir()) if atomic.target_kind(self.path) == "stream" else self.path.parent
        self.tmp = where / outputs.partial_name(self.path, os.getpid())
        self.chunk_size = chunk_size
        self.file = self.writer = None
        self.channels: dict[str, int] = {}
        self.frames = 0

    def _open(self):
        from mcap.writer import CompressionType, Writer

        from shfan import __version__
        from foxglove.messages import CompressedImage, ImageAnnotations

        try:
            self.file = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None
        w = Writer(self.file, chunk_size=self.chunk_size, compression=CompressionType.LZ4)
        w.start(profile=PROFILE, library=f"shfan {__version__}")
        for topic, cls in ((fm.TOPIC_IMAGE, CompressedImage), (fm.TOPIC_ANNOTATIONS, ImageAnnotations)):
            schema = cls.get_schema()
            sid = w.register_schema(schema.name, schema.encoding, schema.data)
            self.channels[topic] = w.register_channel(topic, "protobuf", sid)
        sid = w.register_schema(fm.STATS_SCHEMA_NAME, "jsonschema", json.dumps(fm.STATS_SCHEMA).encode())
        self.channels[fm.TOPIC_STATS] = w.register_channel(fm.TOPIC_STATS, "json", sid)
        self.writer = w

    def _add(self, topic: str, data: bytes, stamp_ns: int):
        self.writer.add_message(self.channels[topic], log_time=stamp_ns, data=data, publish_time=stamp_ns,
                                sequence=self.frames)

    def write(self, result, frame) -> bool:
        try:
            if self.writer is None:
                self._open()
            ns = frame.stamp_ns
            if self.frames % self.settings.mcap_image_every == 0:
                self._add(fm.TOPIC_IMAGE, fm.image_message(frame.jpeg(self.settings.mcap_jpeg_quality), ns).encode(), ns)
            self._add(fm.TOPIC_ANNOTATIONS, fm.annotations_message(result.faces, ns).encode(), ns)
            self._add(fm.TOPIC_STATS, fm.stats_json(result, frame.fps), ns)
        except OSError as exc:
            self._discard()
            raise OutputError.write_failed(self.path, exc) from None
        self.frames += 1
        return True

    def close(self, keep: bool = True) -> None:
        """Write the summary and move the file into place (keep=False, or no frame: nothing)."""
        if self.writer is None or not (keep and self.frames):
            self._discard()
            return
        try:
            self.writer.finish()
            atomic.flush_to_disk(self.file)
            self.file.close()
        except OSError as exc:
            self._discard()
            raise OutputError.write_failed(self.path, exc) from None
        self.writer = self.file = None
        atomic.deliver(self.tmp, self.path)  # renamed onto a file, copied into a device or FIFO

    def _discard(self):
        with contextlib.suppress(OSError):
            if self.file is not None:
                self.file.close()
        self.writer = self.file = None
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def open_mcap(value, settings):
    return McapSink(value, settings)


register(SinkSpec("mcap_file", "--mcap", "record the run as an MCAP file for Foxglove: JPEG images, the faces as "
                  "image annotations, per-frame stats (written whole at the end, or not at all)", "file",
                  open_mcap, metavar="FILE", settings=McapSettings, library="mcap", extra="robotics"))
