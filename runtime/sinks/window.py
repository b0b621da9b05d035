"""The on-screen preview (outputs.Window); q or Esc ends the run. shfan-run opens it unless
--headless, and runs on without it (a warning) where there is no display."""

from __future__ import annotations

import logging

from shfan.runtime import outputs
from shfan.runtime.sinks import Sink, SinkSpec, register

log = logging.getLogger("shfan.runtime")


class WindowSink(Sink):
    label = "preview window"

    def __init__(self, title: str = "shfan-run"):
        self.window = outputs.Window(title)

    def write(self, result, frame) -> bool:
        return self.window.show(frame.annotated)

    def close(self, keep: bool = True) -> None:
        self.window.close()


def open_window(headless, _settings):
    """A WindowSink unless headless; None (and a warning) where no window can open."""
    if headless:
        return None
    usable, why = outputs.gui_available()
    if not usable:
        log.warning(f"no preview window: {why}; continuing headless (use --headless to skip this)")
        return None
    return WindowSink()


register(SinkSpec("window", "--headless", "no preview window", "switch", open_window))
