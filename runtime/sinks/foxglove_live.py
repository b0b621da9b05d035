"""--foxglove [HOST:]PORT: a live view for the Foxglove app (Open connection > Foxglove WebSocket >
ws://HOST:PORT), served by foxglove-sdk's WebSocket server with the same topics and messages as
--mcap (sinks.foxglove_messages).

A slow or absent viewer never slows the pipeline or grows its memory: log() hands each message to
the server's per-client queue of `foxglove_backlog` messages, which drops its oldest message when
full (frames are dropped for the viewer, never for the pipeline); a client whose control queue
fills is disconnected. Nothing is encoded for a topic no client subscribes to. Clients may connect
and leave at any time. The default host is 127.0.0.1 (this machine only); 0.0.0.0 exposes the
camera to the network.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from shfan.errors import OutputError
from shfan.options import option
from shfan.runtime.sinks import Sink, SinkSettings, SinkSpec, check_range, register, require
from shfan.runtime.sinks import foxglove_messages as fm

log = logging.getLogger("shfan.runtime")

DEFAULT_HOST = "127.0.0.1"
STOP_WAIT_S = 2.0


@dataclass
class FoxgloveSettings(SinkSettings):
    foxglove_jpeg_quality: int = option(70, "JPEG quality of the live view's images (1-100; default 70)", "quality",
                                        metavar="Q")
    foxglove_backlog: int = option(30, "messages queued per live viewer before the oldest is dropped (default 30: "
                                       "~10 frames)", "positive", metavar="N")

    def __post_init__(self):
        super().__post_init__()
        check_range("foxglove_backlog", self.foxglove_backlog, 1, 100_000)


def parse_host_port(text: str) -> tuple[str, int]:
    """'PORT' or 'HOST:PORT' ('[::1]:PORT' for IPv6) -> (host, port); port 0 picks a free one.
    ValueError with a message for anything else."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: give PORT or HOST:PORT with a port from 0 to 65535 (e.g. 8765 or 0.0.0.0:8765)")
    if sep and not host:
        raise ValueError(f"{text!r}: empty host; give PORT or HOST:PORT")
    return host, int(port)


class FoxgloveLiveSink(Sink):
    """Serve each frame's image, annotations and stats to Foxglove clients (see the module)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8765, settings: FoxgloveSettings | None = None):
        require("foxglove", "--foxglove")
        import foxglove
        from foxglove.channels import CompressedImageChannel, ImageAnnotationsChannel

        self.settings = settings or FoxgloveSettings()
        self.label = f"--foxglove {host}:{port}"
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name="shfan", host=host, port=port, context=self.context,
                                                message_backlog_size=self.settings.foxglove_backlog)
        except Exception as exc:  # the SDK raises its own RuntimeError for bind failures
            raise OutputError(f"--foxglove {host}:{port}: cannot serve there ({str(exc).splitlines()[0]})") from None
        self.host, self.port = host, self.server.port
        self.image = CompressedImageChannel(fm.TOPIC_IMAGE, context=self.context)
        self.annotations = ImageAnnotationsChannel(fm.TOPIC_ANNOTATIONS, context=self.context)
        self.stats = foxglove.Channel(fm.TOPIC_STATS, schema=fm.STATS_SCHEMA, context=self.context)
        self.frames = 0
        self.sent = self.sent_bytes = 0  # images handed to the server (some client subscribed), their bytes
        where = "0.0.0.0 exposes the camera to the network" if host in ("0.0.0.0", "::") else "this machine only"
        log.info(f"Foxglove live view on ws://{host}:{self.port} ({where}): in Foxglove, Open connection > "
                 "Foxglove WebSocket")

    def write(self, result, frame) -> bool:
        ns = frame.stamp_ns
        if self.image.has_sinks():
            jpeg = frame.jpeg(self.settings.foxglove_jpeg_quality)
            self.image.log(fm.image_message(jpeg, ns), log_time=ns)
            self.sent += 1
            self.sent_bytes += len(jpeg)
        if self.annotations.has_sinks():
            self.annotations.log(fm.annotations_message(result.faces, ns), log_time=ns)
        if self.stats.has_sinks():
            self.stats.log(fm.stats_record(result, frame.fps), log_time=ns)
        self.frames += 1
        return True

    def close(self, keep: bool = True) -> None:
        """Stop serving. foxglove-sdk's stop() waits for every client to take its last messages, so
        a viewer that stopped reading would hold the run's end forever: wait STOP_WAIT_S at most."""
        server, self.server = self.server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.stop, name="foxglove-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_WAIT_S)
        if stopper.is_alive():
            log.warning(f"--foxglove: a viewer stopped reading; not waiting for it (after {STOP_WAIT_S:g} s)")


def open_live(value, settings):
    host, port = value
    return FoxgloveLiveSink(host, port, settings)


register(SinkSpec("foxglove_live", "--foxglove", "serve a live view to the Foxglove app on [HOST:]PORT (host "
                  "default 127.0.0.1, this machine only; 0.0.0.0 exposes the camera to the network); a slow or "
                  "absent viewer never slows the run", "host_port", open_live, metavar="[HOST:]PORT",
                  settings=FoxgloveSettings, library="foxglove", extra="robotics", parse=parse_host_port))
