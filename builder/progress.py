"""One line per build stage with its duration, and a total: the exporter-style UX.

The lines go to `write` (the CLIs pass a console printer); without one they are INFO records of
the `shfan.builder` logger, so a library caller sees them only when it configures logging."""

from __future__ import annotations

import contextlib
import logging
import time

log = logging.getLogger("shfan.builder")


class Stages:
    def __init__(self, write=None):
        self.write = write or log.info
        self.start = time.perf_counter()
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        """Yields a dict; put a short result under 'detail' to have it shown on the line."""
        info = {"detail": ""}
        t0 = time.perf_counter()
        yield info
        dt = time.perf_counter() - t0
        self.timings.append((name, dt))
        detail = f"  {info['detail']}" if info["detail"] else ""
        self.write(f"✓ {name:<26}{dt:6.1f} s{detail}")

    def note(self, message: str):
        self.write(f"  {message}")

    def warn(self, message: str):
        self.write(f"! {message}")

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start
