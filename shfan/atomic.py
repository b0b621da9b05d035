"""Whole files or none: every output is written to a temporary name and moved onto its target only
when complete, so a crash, a full disk or Ctrl-C never leaves a half-written file (and the
temporary file is removed on failure). Torch-free.

Every output path goes through here, so three hostile cases are guarded once:
- a target that is not a regular file: a character device or FIFO (/dev/null, /dev/stdout, a
  named pipe) is *written into* once the temporary file is complete, never renamed over; other
  special files (sockets, block devices) are refused;
- a name that is not valid UTF-8 (or very long): the temporary name is plain ASCII, because
  OpenCV and some C++ writers crash on such names; Python renames it onto the real one;
- a file name component over the file system's limit: refused before any work (`output_problem`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from shfan.errors import OutputError

NAME_MAX = 255  # bytes per path component on ext4, xfs, btrfs, tmpfs (os.pathconf where it answers)


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


def target_kind(path) -> str:
    """What writing to `path` means: "file" (a regular file, or nothing yet: replaced atomically),
    "stream" (a character device or FIFO, or anything under /dev or /proc: written into), or
    "other" (a folder, socket or block device: refused)."""
    try:
        st = os.stat(path)  # follows symlinks: /dev/stdout -> /proc/self/fd/1 -> a pipe or tty
    except FileNotFoundError:
        return "stream" if _under_device_tree(path) else "file"
    except OSError:
        return "file"  # a broken parent: the writer names the real problem
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return "stream"
    if stat.S_ISREG(st.st_mode):
        return "stream" if _under_device_tree(path) else "file"  # /dev/stdout redirected to a file
    return "other"


def _under_device_tree(path) -> bool:
    parts = Path(os.path.abspath(path)).parts
    return len(parts) > 1 and parts[1] in ("dev", "proc")


def output_problem(path) -> str | None:
    """Why `path` cannot be an output file (None: it can): the one check every output option and
    writer uses before any work starts."""
    text = os.fspath(path)
    if not text:
        return "empty file name"
    path = Path(text)
    long = [p for p in path.parts if len(os.fsencode(p)) > NAME_MAX]
    if long:
        return f"{text}: file name too long ({len(os.fsencode(long[0]))} bytes; at most {NAME_MAX})"
    kind = target_kind(path)
    if path.is_dir():
        return f"{text} is a folder; give a file name"
    if kind == "other":
        return f"{text}: is a special file (socket or block device), not a file shfan can write"
    if kind == "stream":
        if not os.path.exists(path):
            return f"{text}: no such device"
        if not os.access(path, os.W_OK):
            return f"{text}: cannot write (no permission)"
        return None
    parent = path.parent
    if not parent.is_dir():
        return f"{text}: folder {parent} does not exist; create it first"
    if not can_create_in(parent) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{text}: cannot write in {parent} (read-only or no permission)"
    return None


def safe_stem(name: str, limit: int = 40) -> str:
    """An ASCII-only, short version of a file name for temporary files: OpenCV's writers crash
    (SIGSEGV) on names that are not valid UTF-8, and a long name plus a temp suffix can pass
    NAME_MAX. The real name is only ever handled by Python (os.replace)."""
    ascii_part = "".join(c if c.isascii() and c.isprintable() and c not in "/\\" else "_" for c in name)
    if ascii_part == name and len(name) <= limit:
        return name
    digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    return f"{ascii_part[:limit]}-{digest}"


def temporary_file(path, suffix: str = "", tag: str = "tmp") -> Path:
    """A new empty file (mode 0666 & ~umask) for the contents of `path`: beside it for a regular
    target (so the rename is atomic), in the system temp folder for a device or FIFO. Its name is
    ASCII and ends in `suffix` (writers that look at the extension)."""
    path = Path(path)
    where = Path(tempfile.gettempdir()) if target_kind(path) == "stream" else path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{safe_stem(path.name)}.", suffix=f".{tag}{suffix}", dir=where)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {where} ({exc.strerror})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs are ordinary files
    return Path(tmp)


def deliver(tmp, path) -> None:
    """Move the finished temporary file onto `path`: renamed over a regular file (or nothing),
    copied into a device or FIFO (never renamed over it), refused for anything else. The
    temporary file is gone afterwards on every path; OSErrors become OutputError naming `path`."""
    path = Path(path)
    try:
        kind = target_kind(path)
        if kind == "other" or path.is_dir():
            raise OutputError(f"{path}: is a folder or special file; give a regular file name")
        if kind == "stream":
            if not os.path.exists(path):  # never create a file under /dev or /proc
                raise OutputError(f"{path}: no such device")
            with open(tmp, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path (ending in `suffix`, for writers that look at the extension); it is
    delivered onto `path` (`deliver`) when the block ends normally and removed otherwise.
    OSErrors become OutputError naming `path`."""
    path = Path(path)
    problem = _writer_problem(path)
    if problem:
        raise OutputError(problem)
    tmp = temporary_file(path, suffix)
    try:
        yield tmp
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise
    deliver(tmp, path)


def _writer_problem(path: Path) -> str | None:
    """The part of output_problem a library writer checks itself (the CLIs check it all earlier)."""
    long = [p for p in path.parts if len(os.fsencode(p)) > NAME_MAX]
    if long:
        return f"{path}: file name too long ({len(os.fsencode(long[0]))} bytes; at most {NAME_MAX})"
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    if target_kind(path) == "other":
        return f"{path}: is a special file (socket or block device), not a file shfan can write"
    return None


def _remove(tmp):
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def flush_to_disk(f) -> None:
    """Python's buffer and the OS cache of an open file onto the disk: before the rename that
    publishes it, so a power loss leaves the old file or the whole new one."""
    f.flush()
    os.fsync(f.fileno())


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        flush_to_disk(f)
