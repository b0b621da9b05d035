"""What every command-line tool shares: one argparse type per kind of option value, so a value
is checked once, where it is parsed, the same way in every CLI; output paths checked before any
work starts; --version, -v/--verbose and -q/--quiet on every tool (the `Parser`); the choice
lists from the tables they name; and one exit-code convention with one line of error and no
traceback:

    0    done
    1    the work failed (a ShfanError from the library, a file that cannot be written, ...)
    2    usage: unknown option, a bad value, a missing input, an output that cannot be written
    130  interrupted (Ctrl-C or SIGTERM: outputs finished or removed, never half-written)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
import typing
from pathlib import Path
from typing import NoReturn

from shfan.atomic import NAME_MAX, can_create_in

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


# ---------------------------------------------------------------- choices, from the tables they name


def backend_choices(auto: bool = True, runtime: bool = False) -> tuple[str, ...]:
    """--backend: the backend registry's names ('auto' first where the tool picks one itself;
    `runtime`: the tools that run the pipeline, so only the backends it uses: no checkpoints)."""
    from shfan.runtime import backends

    return backends.choices(runtime) if auto else backends.names(runtime)


def add_format_options(parser, format_help: str | None = None) -> None:
    """--format (every reader shfan.datasets has) and the extra folders some formats need."""
    from shfan.datasets import FORMATS

    parser.add_argument("--format", default="300w", choices=FORMATS, help=format_help)
    parser.add_argument("--image-root", type=existing_dir, help="image folder for wflw/aflw19 annotation files")
    parser.add_argument("--points-dir", type=existing_dir, help="COFW-68 points folder (needed by --format cofw68)")


def check_format_args(parser, args, flagged_paths) -> None:
    """Usage checks of --format against its extra folders and each (flag, dataset path): a
    300-W dataset is a folder, every other format an annotation file."""
    if args.format == "cofw68" and not args.points_dir:
        parser.error("--format cofw68 needs --points-dir (the folder of <i>_points.mat files)")
    if args.format == "aflw19" and not args.image_root:
        parser.error("--format aflw19 needs --image-root (the AFLW image folder)")
    for flag, path in flagged_paths:
        if path is None:
            continue
        if args.format == "300w" and not Path(path).is_dir():
            parser.error(f"{flag} {path} is a file; --format 300w takes a folder of images with .pts files "
                         "(an annotation file: --format wflw, cofw68 or aflw19)")
        if args.format != "300w" and not Path(path).is_file():
            parser.error(f"{flag} {path} is a folder; --format {args.format} takes the annotation file")


def check_model_args(parser, args, kinds: str) -> None:
    """--model names a shipped model or an existing path (`kinds`: the paths the tool takes);
    --precision only picks inside a build folder."""
    from shfan.weights import MODEL_NAMES

    path = Path(args.model) if args.model and args.model not in MODEL_NAMES else None
    if path and not path.exists():
        parser.error(f"--model {args.model}: no such model (give compact, accurate, {kinds})")
    if args.precision and not (path and path.is_dir()):
        parser.error("--precision picks a precision inside a shfan-build folder; give --model BUILD_FOLDER")


def build_precisions() -> tuple[str, ...]:
    """--precision of a build folder: the precisions shfan-build makes."""
    from shfan.builder.precision import PRECISIONS

    return PRECISIONS


# ---------------------------------------------------------------- options from a dataclass

def chosen(f):
    """An argparse type for a dataclass field with metadata "choices": refused with the words
    the dataclass's own check uses (shfan.options.field_problem)."""
    from shfan.options import field_problem

    def check(text: str):
        problem = field_problem(f, None, text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text

    return check


def add_dataclass_options(parser, cls, names) -> None:
    """One --option per named field of a dataclass, in the order given: the flag from the name
    (input_size -> --input-size), the default from the field, help and metavar from its
    metadata; a bool is a switch (--name, or --no-name when it defaults to True), a field with
    metadata "choices" takes one of them, a number is checked by its type and metadata "range"
    (positive, nonneg, fraction, probability, port), anything else is text. So the library's
    options and the CLI's cannot drift."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in names:
        f = fields[name]
        flag = "--" + name.replace("_", "-")
        kinds = (hints[name], *typing.get_args(hints[name]))
        if hints[name] is bool:  # a switch: --name turns a False default on, --no-name a True one off
            flag = "--no-" + name.replace("_", "-") if f.default else flag
            options = {"action": "store_false" if f.default else "store_true", "dest": name}
        elif "choices" in f.metadata:
            options = {"type": chosen(f), "choices": f.metadata["choices"], "default": f.default}
        elif int in kinds or float in kinds:
            kind = int if int in kinds else float
            options = {"type": ranged(kind, f.metadata.get("range")), "default": f.default}
        else:  # text (a path, a name)
            options = {"default": f.default}
        options.update({k: f.metadata[k] for k in ("help", "metavar") if k in f.metadata})
        parser.add_argument(flag, **options)


def checked_options(parser, cls, args, **overrides):
    """`options_from`, with the dataclass's own checks reported as a usage error (exit 2): the
    same one line a Python caller gets from constructing it."""
    from shfan.errors import ShfanError

    try:
        return options_from(cls, args, **overrides)
    except (ValueError, ShfanError) as exc:
        parser.error(str(exc))


def options_from(cls, args, **overrides):
    """A library options dataclass from parsed arguments: each field from the option of the same
    name (dest), `overrides` for the ones spelled otherwise; fields without an option keep their
    defaults."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)}
    return cls(**{**given, **overrides})
