"""shfan-serve as a child process (tests, benchmarks, scripts): start on free loopback ports,
wait until Triton answers, stop with SIGTERM, and never leave a tritonserver behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shfan import io


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def descendants(pid: int) -> list[int]:
    """Every process below pid (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


alive = io.pid_alive  # running: not gone, not a zombie


class ServeProcess(io.Service):
    """`python -m shfan.cli.serve ARGS` on free 127.0.0.1 ports, its output in `log`."""

    def __init__(self, args=(), log: Path | None = None, env: dict | None = None, python: str = sys.executable):
        self.http, self.grpc, self.metrics = free_ports(3)
        self.url = f"127.0.0.1:{self.http}"
        self.log = Path(log or f"/tmp/shfan-serve-{self.http}.log")
        self.cmd = [python, "-m", "shfan.cli.serve", "--host", "127.0.0.1", "--http-port", str(self.http),
                    "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics), *map(str, args)]
        self.env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
        self.proc = None
        self.tree: list[int] = []

    def start(self, timeout_s: float = 240.0) -> "ServeProcess":
        """Start and wait until every model is ready; RuntimeError (with the log's tail) when the
        server exits first or is not ready in time (it is stopped then)."""
        from shfan.serve.client import ShfanClient

        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)
        deadline = time.monotonic() + timeout_s
        with ShfanClient(self.url) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"shfan-serve exited with {self.proc.returncode} before it was ready:\n{self.tail()}")
                try:
                    client.wait_ready(timeout_s=2)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"shfan-serve not ready after {timeout_s:.0f} s:\n{self.tail()}") from None
        self.tree = descendants(self.proc.pid)
        return self

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Signal shfan-serve and wait; whatever is left after timeout_s is killed, and so is any
        process it started that outlived it. Returns its exit code."""
        if self.proc is None:
            return None
        tree = descendants(self.proc.pid) or self.tree
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        return self.proc.returncode
