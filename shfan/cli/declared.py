"""The options CLIs build from tables and dataclasses: choice lists from the tables they name
(backends, dataset formats, shipped models, build precisions) with their usage checks, and one
--option per field of a library options dataclass (add_dataclass_options, options_from), so the
library's options and the CLI's cannot drift. Re-exported by shfan.cli.common."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from shfan.cli.values import existing_dir, existing_file, existing_path, positive_int, ranged, writable_dir

# option(..., path=KIND): the argparse type that checks such a path
PATH_TYPES = {"file": existing_file, "path": existing_path, "out_dir": writable_dir}


# ---------------------------------------------------------------- choices, from the tables they name


def backend_choices(auto: bool = True, runtime: bool = False) -> tuple[str, ...]:
    """--backend: the backend registry's names ('auto' first where the tool picks one itself;
    `runtime`: the tools that run the pipeline, so only the backends it uses: no checkpoints)."""
    from shfan.runtime import backends

    return backends.choices(runtime) if auto else backends.names(runtime)


def add_deprecated_alias(parser, old: str, new: str, **kwargs) -> None:
    """`old` still works for one release, as `new`, with a warning on stderr that names `new`
    (hidden from --help). For flags renamed so one word keeps one meaning across the tools."""
    import sys

    class Alias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"warning: {old} is now {new}; {old} goes in the next release", file=sys.stderr)
            setattr(namespace, self.dest, values)

    parser.add_argument(old, dest=new.lstrip("-").replace("-", "_"), action=Alias, help=argparse.SUPPRESS, **kwargs)


def add_max_image_pixels(parser) -> None:
    """--max-image-pixels, for the tools that read still images (shfan.io's header check)."""
    parser.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                        help="refuse images larger than N pixels before decoding them (default 100000000; "
                             "$SHFAN_MAX_IMAGE_PIXELS)")


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
        parser.error(f"--model {args.model}: no such model (give {', '.join(MODEL_NAMES)}, {kinds})")
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
    (positive, nonneg, fraction, probability, port, quality), a path by its metadata "path" (file,
    path, out_dir: PATH_TYPES), anything else is text. So the library's options and the CLI's
    cannot drift."""
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
        elif "path" in f.metadata:  # checked as the CLI's path types check (exists, is a file, is writable)
            options = {"type": PATH_TYPES[f.metadata["path"]], "default": f.default}
        else:  # text (a name)
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
