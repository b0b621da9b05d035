"""What every command-line tool shares: one argparse type per kind of option value, so a value
is checked once, where it is parsed, the same way in every CLI; output paths checked before any
work starts; --version, -v/--verbose and -q/--quiet on every tool (the `Parser`); the choice
lists from the tables they name; and one exit-code convention with one line of error and no
traceback:

    0    done
    1    the work failed (a ShfanError from the library, a file that cannot be written, ...)
    2    usage: unknown option, a bad value, a missing input, an output that cannot be written
    130  interrupted (Ctrl-C or SIGTERM: outputs finished or removed, never half-written)

The value types live in shfan.cli.values, the options built from tables and dataclasses in
shfan.cli.declared; both are re-exported here, where every CLI imports them.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from shfan.cli.declared import (add_dataclass_options, add_deprecated_alias, add_format_options, add_max_image_pixels,
                               backend_choices, build_precisions, check_format_args, check_model_args, checked_options,
                               chosen, options_from)
from shfan.cli.values import (OUTPUT_TYPES, existing_dir, existing_file, existing_path, finite_float, nonneg_float,
                              nonneg_int, open_fraction, port, positive_float, positive_int, probability, ranged,
                              writable_dir, writable_file, writable_file_or_stdout)

__all__ = ["FAILED", "INTERRUPTED", "LOGGER", "OUTPUT_TYPES", "USAGE", "Parser", "PlainFormatter", "StderrHandler",
           "add_dataclass_options", "add_deprecated_alias", "add_format_options", "add_max_image_pixels",
           "backend_choices", "build_precisions", "check_format_args", "check_model_args", "checked_options", "chosen",
           "configure_logging", "entry", "existing_dir", "existing_file", "existing_path", "fail", "finite_float",
           "nonneg_float", "nonneg_int", "open_fraction", "options_from", "port", "positive_float", "positive_int",
           "printable_streams", "probability", "ranged", "require", "restore_sigterm", "sigterm_as_interrupt",
           "use_max_image_pixels", "version", "writable_dir", "writable_file", "writable_file_or_stdout"]

FAILED, USAGE, INTERRUPTED = 1, 2, 130
LOGGER = "shfan"  # every library module logs under it (shfan.train, shfan.runtime, ...)


def fail(message: str, code: int = FAILED) -> NoReturn:
    """One clear line on stderr, no traceback (1: the work failed; 2: usage)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(code)


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The installed distribution's version; shfan.__version__ (its single source, read by
    pyproject.toml) when running from a source tree that is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("shfan")
    except PackageNotFoundError:
        from shfan import __version__

        return __version__


# ---------------------------------------------------------------- logging


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted, so a redirected stderr (tests,
    an embedding program) gets the lines."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler assigns it; the property always follows sys.stderr
        pass


class PlainFormatter(logging.Formatter):
    """Info lines as they are (the CLIs' progress lines); others prefixed 'warning: ' etc."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"


def configure_logging(verbose: bool = False, quiet: bool = False) -> logging.Logger:
    """The 'shfan' logger to stderr: INFO by default, DEBUG with -v, WARNING with -q. One
    handler however often it is called (a test runs many mains in one process)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(PlainFormatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    return logger


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (argparse prints the whole usage block first), and
    the options every shfan tool has: --version, -v/--verbose, -q/--quiet (logging configured
    by parse_args). A tool whose -v/-q also do more says so in `verbose_help`/`quiet_help`;
    `check(parser, args)` runs the usage checks that span several options after parsing."""

    def __init__(self, *args, verbose_help: str = "more detail: debug messages",
                 quiet_help: str = "less output: warnings and errors only", check=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.check = check
        self.add_argument("--version", action="version", version=f"shfan {version()}",
                          help="print the shfan version and exit")
        loud = self.add_mutually_exclusive_group()
        loud.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
        loud.add_argument("-q", "--quiet", action="store_true", help=quiet_help)

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        configure_logging(parsed.verbose, parsed.quiet)
        self.check_distinct_outputs(parsed)
        if self.check:
            self.check(self, parsed)
        return parsed

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", USAGE)

    def check_distinct_outputs(self, parsed) -> None:
        """Two output options naming one path (or one output folder inside another) would
        overwrite each other silently: a usage error, for every option typed as an output
        (writable_file, writable_file_or_stdout, writable_dir). Devices and FIFOs (/dev/null)
        may be shared."""
        from shfan.atomic import target_kind

        given = [(a.option_strings[0], getattr(parsed, a.dest), a.type is writable_dir) for a in self._actions
                 if a.type in OUTPUT_TYPES and a.option_strings and getattr(parsed, a.dest, None) not in (None, "-")]
        given = [(flag, value, folder) for flag, value, folder in given if target_kind(value) != "stream"]
        for i, (flag_a, a, dir_a) in enumerate(given):
            for flag_b, b, dir_b in given[i + 1:]:
                real_a, real_b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
                if real_a == real_b:
                    self.error(f"{flag_a} {a} and {flag_b} {b} name the same path; give each output its own")
                if (dir_a and real_a in real_b.parents) or (dir_b and real_b in real_a.parents):
                    self.error(f"{flag_b} {b} lies inside {flag_a} {a} (or the other way round); "
                               "give each output its own place")


def printable_streams() -> None:
    """File names that are not UTF-8 (kept by Python as lone surrogates) print as \\xNN on stdout
    too, instead of a UnicodeEncodeError after the work is done (stderr does so already)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # a test's StringIO, a closed stream
            pass


def entry(main):
    """Wrap a CLI's main(): library errors exit 1 with their one line, Ctrl-C exits 130, and an
    OSError (disk full, permission) is named with its file instead of a traceback."""

    @functools.wraps(main)
    def wrapper(argv=None):
        from shfan.errors import ShfanError

        printable_streams()
        previous = sigterm_as_interrupt()
        environ = dict(os.environ)  # options such as --max-image-pixels set variables for this run only
        try:
            return main(argv)
        except ShfanError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", INTERRUPTED)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        finally:
            restore_sigterm(previous)
            if dict(os.environ) != environ:
                os.environ.clear()
                os.environ.update(environ)

    return wrapper


def sigterm_as_interrupt():
    """SIGTERM (kill, systemctl stop, a container's stop) handled like Ctrl-C by every tool: it
    raises KeyboardInterrupt, so outputs are finished or removed as for Ctrl-C and the tool exits
    130 with one line (it was 143 and no line). The previous handler, for restore_sigterm; None
    where signals cannot be set (not the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):
        return None


def restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except (ValueError, OSError):
            pass


def use_max_image_pixels(limit: int | None) -> None:
    """--max-image-pixels: the limit shfan.io.read_rgb applies (through its environment variable,
    so worker processes follow it too; `entry` restores the environment when main() returns)."""
    if limit is not None:
        os.environ["SHFAN_MAX_IMAGE_PIXELS"] = str(limit)


def require(module: str, message: str) -> None:
    """Exit with one line (`message`, naming the install) when an optional dependency is missing."""
    from shfan.platform_facts import module_available

    if not module_available(module):
        fail(message)
