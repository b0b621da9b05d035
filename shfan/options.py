"""Dataclass fields that carry their command-line option and their rule: help, checked range or
choices, metavar. The library's options dataclasses (TrainJob, BuildOptions, PipelineOptions)
declare each option once, with its default and meaning; `check_fields` checks a dataclass's
values against those declarations, and `shfan.cli.common.add_dataclass_options` turns the same
fields into --options whose argparse types use the same RULES, so the Python API and the CLIs
cannot drift. Stdlib only."""

from __future__ import annotations

import math
import numbers
from dataclasses import field, fields

# range name -> {number kind: (accepts(value), what a valid value is)}: the one table of ranges,
# read by check_fields (Python) and by the CLI's argparse types (shfan.cli.common).
RULES = {
    None: {int: (lambda v: True, "a whole number"), float: (lambda v: True, "a finite number")},
    "positive": {int: (lambda v: v >= 1, "a whole number >= 1"), float: (lambda v: v > 0, "a finite number > 0")},
    "nonneg": {int: (lambda v: v >= 0, "a whole number >= 0"), float: (lambda v: v >= 0, "a finite number >= 0")},
    "fraction": {float: (lambda v: 0.0 < v < 1.0, "a fraction between 0 and 1 (exclusive)")},
    "probability": {float: (lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")},
    "port": {int: (lambda v: 1 <= v <= 65535, "a port 1-65535")},
    "quality": {int: (lambda v: 1 <= v <= 100, "a JPEG quality from 1 to 100")},
}
RANGES = tuple(RULES)


def option(default, help: str | None = None, range: str | None = None, **more):
    """A dataclass field with a default and what its CLI option needs (`range` picks the rule
    that checks the value: positive, nonneg, fraction, probability, port or quality; `choices=` a list)."""
    if range not in RANGES:
        raise ValueError(f"range must be one of {RANGES}, got {range!r}")
    meta = {k: v for k, v in (("help", help), ("range", range)) if v is not None}
    return field(default=default, metadata={**meta, **more})


def same_option(cls, name: str):
    """The field `name` of dataclass `cls` again (default, help, range), for an options class that
    passes it on (ServeOptions -> PipelineOptions), so the two cannot say different things."""
    source = cls.__dataclass_fields__[name]
    return field(default=source.default, metadata=source.metadata)


def number_ok(kind, range: str | None, value) -> bool:
    """`value` is a `kind` (int: a whole number, not a bool; float: a finite real) inside `range`."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    real = whole or isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return (whole if kind is int else real) and RULES[range][kind][0](value)


def number_problem(kind, range: str | None, value) -> str | None:
    """None when `value` is fine (number_ok), else 'expected <what>, got <value>': the words the
    CLI's option uses too."""
    return None if number_ok(kind, range, value) else f"expected {RULES[range][kind][1]}, got {value!r}"


def field_problem(f, kind, value, optional: bool = False) -> str | None:
    """The one-line complaint about `value` in field `f` (its declared choices or range), None
    when it is fine. `kind`: the field's number type (int or float), None for other fields;
    `optional`: None is allowed (the field is `... | None`)."""
    choices = f.metadata.get("choices")
    if choices is not None:
        return None if value in choices else f"unknown {f.name} {value!r}; choose one of {', '.join(choices)}"
    if "range" not in f.metadata or kind is None or (value is None and optional):
        return None
    problem = number_problem(kind, f.metadata["range"], value)
    return f"{f.name}: {problem}" if problem else None


def number_kind(hint) -> type | None:
    """int or float for a field annotated with one of them (optionally `| None`), else None."""
    import typing

    kinds = (hint, *typing.get_args(hint))
    return int if int in kinds else float if float in kinds else None


def optional(hint) -> bool:
    """The annotation allows None (`int | None`)."""
    import typing

    return type(None) in typing.get_args(hint)


def check_fields(obj, error=ValueError):
    """Raise `error` with the one-line complaint about the first field of dataclass `obj` outside
    its declared choices or range; return `obj` when every field is fine."""
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        hint = hints[f.name]
        problem = field_problem(f, number_kind(hint), getattr(obj, f.name), optional(hint))
        if problem:
            raise error(problem)
    return obj
