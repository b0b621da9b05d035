"""What every command-line tool shares: one argparse type per kind of option value, so a value
is checked once, where it is parsed, the same way in every CLI; output paths checked before any
work starts; and one exit-code convention with one line of error and no traceback:

    0    done
    1    the work failed (a ShfanError from the library, a file that cannot be written, ...)
    2    usage: unknown option, a bad value, a missing input, an output that cannot be written
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from shfan.atomic import can_create_in

FAILED, USAGE, INTERRUPTED = 1, 2, 130


def fail(message: str, code: int = FAILED) -> NoReturn:
    """One clear line on stderr, no traceback (1: the work failed; 2: usage)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", USAGE)


def entry(main):
    """Wrap a CLI's main(): library errors exit 1 with their one line, Ctrl-C exits 130, and an
    OSError (disk full, permission) is named with its file instead of a traceback."""

    @functools.wraps(main)
    def wrapper(argv=None):
        from shfan.errors import ShfanError

        try:
            return main(argv)
        except ShfanError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", INTERRUPTED)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")

    return wrapper


# ---------------------------------------------------------------- numbers


def _number(kind, text: str, ok, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 1, "a whole number >= 1")


def nonneg_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "a whole number >= 0")


def finite_float(text: str) -> float:
    return _number(float, text, lambda v: True, "a finite number")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: v > 0, "a finite number > 0")


def nonneg_float(text: str) -> float:
    return _number(float, text, lambda v: v >= 0, "a finite number >= 0")


def probability(text: str) -> float:
    return _number(float, text, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")


def open_fraction(text: str) -> float:
    return _number(float, text, lambda v: 0.0 < v < 1.0, "a fraction between 0 and 1 (exclusive)")


# ---------------------------------------------------------------- paths


def existing_path(text: str) -> str:
    if not text or not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def existing_file(text: str) -> str:
    if not os.path.isfile(text):
        what = "is a folder, not a file" if os.path.isdir(text) else "no such file"
        raise argparse.ArgumentTypeError(f"{text}: {what}")
    return text


def existing_dir(text: str) -> str:
    if not os.path.isdir(text):
        what = "is a file, not a folder" if os.path.exists(text) else "no such folder"
        raise argparse.ArgumentTypeError(f"{text}: {what}")
    return text


def writable_file(text: str) -> str:
    """An output file: not a folder, in an existing folder where files can be created."""
    if not text:
        raise argparse.ArgumentTypeError("empty file name")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} does not exist; create it first")
    if not can_create_in(parent) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {parent} (read-only or no permission)")
    return text


def writable_dir(text: str) -> str:
    """An output folder: an existing folder where files can be created, or a new one whose
    nearest existing parent is such a folder."""
    if not text:
        raise argparse.ArgumentTypeError("empty folder name")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    base = path
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {base} is a file, not a folder")
    if not can_create_in(base):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {base} (read-only or no permission)")
    return text
