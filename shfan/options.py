"""Dataclass fields that carry their command-line option: help, checked range, metavar. The
library's options dataclasses (TrainJob, BuildOptions, PipelineOptions) declare each number once,
with its default and meaning, and `shfan.cli.common.add_dataclass_options` turns the fields into
--options, so the Python API and the CLIs cannot drift. Stdlib only."""

from __future__ import annotations

from dataclasses import field

RANGES = (None, "positive", "nonneg", "fraction", "probability", "port")


def option(default, help: str | None = None, range: str | None = None, **more):
    """A dataclass field with a default and what its CLI option needs (`range` picks the
    argparse type that checks the value: positive, nonneg, fraction, probability or port)."""
    if range not in RANGES:
        raise ValueError(f"range must be one of {RANGES}, got {range!r}")
    meta = {k: v for k, v in (("help", help), ("range", range)) if v is not None}
    return field(default=default, metadata={**meta, **more})


def same_option(cls, name: str):
    """The field `name` of dataclass `cls` again (default, help, range), for an options class that
    passes it on (ServeOptions -> PipelineOptions), so the two cannot say different things."""
    source = cls.__dataclass_fields__[name]
    return field(default=source.default, metadata=source.metadata)
