"""One argparse type per kind of option value, so a value is checked once, where it is parsed,
the same way in every CLI: numbers inside the ranges shfan.options names, existing inputs, and
outputs checked before any work starts (shfan.atomic's rules). Re-exported by shfan.cli.common."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from shfan.atomic import NAME_MAX, can_create_in


# ---------------------------------------------------------------- numbers


def ranged(kind, range: str | None = None):
    """An argparse type for a `kind` (int/float) value inside `range` (a name in
    shfan.options.RULES): the same rule and the same words as the dataclasses' own check."""
    from shfan.options import RULES, number_ok

    def check(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            value = None
        if not number_ok(kind, range, value):
            shown = text if value is None else value  # the number as Python would show it: got 0, got nan
            raise argparse.ArgumentTypeError(f"expected {RULES[range][kind][1]}, got {shown!r}")
        return value

    return check


positive_int = ranged(int, "positive")
nonneg_int = ranged(int, "nonneg")
port = ranged(int, "port")
finite_float = ranged(float)
positive_float = ranged(float, "positive")
nonneg_float = ranged(float, "nonneg")
probability = ranged(float, "probability")
open_fraction = ranged(float, "fraction")


# ---------------------------------------------------------------- paths


def existing_path(text: str) -> str:
    if not text or not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def _must_be(text: str, ok, kind: str, is_other, other: str) -> str:
    """`text` where ok(text); else the error: is_other(text) -> 'is a <other>, not a <kind>',
    otherwise 'no such <kind>'. (One helper: two copies of it are a duplicates pair.)"""
    if not ok(text):
        raise argparse.ArgumentTypeError(f"{text}: is a {other}, not a {kind}" if is_other(text)
                                         else f"{text}: no such {kind}")
    return text


def existing_file(text: str) -> str:
    return _must_be(text, os.path.isfile, "file", os.path.isdir, "folder")


def existing_dir(text: str) -> str:
    return _must_be(text, os.path.isdir, "folder", os.path.exists, "file")


def writable_file(text: str) -> str:
    """An output file: not a folder or special file, a name the file system takes, in an existing
    folder where files can be created; or a device / FIFO to write into (/dev/null, /dev/stdout).
    shfan.atomic.output_problem is the one check (the library's writers use it too)."""
    from shfan.atomic import output_problem

    problem = output_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def writable_file_or_stdout(text: str) -> str:
    """An output file (writable_file), or '-' for stdout."""
    return text if text == "-" else writable_file(text)


def writable_dir(text: str) -> str:
    """An output folder: an existing folder where files can be created, or a new one whose
    nearest existing parent is such a folder."""
    if not text:
        raise argparse.ArgumentTypeError("empty folder name")
    path = Path(text).expanduser()
    long = [p for p in path.parts if len(os.fsencode(p)) > NAME_MAX]
    if long:
        raise argparse.ArgumentTypeError(f"{text}: folder name too long ({len(os.fsencode(long[0]))} bytes; "
                                         f"at most {NAME_MAX})")
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


OUTPUT_TYPES = (writable_file, writable_file_or_stdout, writable_dir)  # Parser.check_distinct_outputs
