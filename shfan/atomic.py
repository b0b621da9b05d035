"""Whole files or none: every output is written to a temporary name beside its target and renamed
onto it only when complete, so a crash, a full disk or Ctrl-C never leaves a half-written file
(and the temporary file is removed on failure). Torch-free."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from shfan.errors import OutputError


def can_create_in(folder) -> bool:
    """Whether a file can be created in `folder`, found by creating one: os.access says yes to
    root on a read-only mount."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".shfan-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that look at the
    extension); it replaces `path` when the block ends normally and is removed otherwise.
    OSErrors become OutputError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {path.parent} ({exc.strerror})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp):
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
