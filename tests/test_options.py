"""One validation path: the options dataclasses check themselves from their field metadata
(shfan.options), and the CLIs' options use the same rules and words, so a Python caller and a
CLI user get the same one-line complaint about the same value."""

import dataclasses
import math
import typing

import pytest

from shfan import options
from shfan.bench.config import BenchConfig, BenchError
from shfan.errors import BuildError
from shfan.builder.options import BuildOptions
from shfan.cli.common import Parser, add_dataclass_options, ranged
from shfan.runtime.pipeline_options import PipelineOptions
from shfan.serve.server import ServeError, ServeOptions
from shfan.train import TrainError, TrainJob

BAD = {"positive": 0, "nonneg": -1, "fraction": 1.0, "probability": 1.5, "port": 0}  # one refused value per range


@pytest.mark.parametrize("kind, range, good, bad", [
    (int, "positive", [1, 7], [0, -3, 2.0, True, "3", None]),
    (int, "nonneg", [0, 5], [-1, 0.5, False]),
    (int, "port", [1, 65535], [0, 65536]),
    (float, "positive", [0.1, 3, 1e9], [0.0, -1.0, math.nan, math.inf, True, "1"]),
    (float, "nonneg", [0.0, 2.0], [-0.1, math.nan]),
    (float, "fraction", [0.5], [0.0, 1.0]),
    (float, "probability", [0.0, 1.0], [1.5, -0.1, math.nan]),
    (float, None, [-5.0, 0], [math.inf, "x"]),
])
def test_rules(kind, range, good, bad):
    assert all(options.number_ok(kind, range, v) for v in good)
    assert not any(options.number_ok(kind, range, v) for v in bad)


def test_every_declared_range_has_a_rule_for_its_number_kind():
    for cls in (BuildOptions, TrainJob, PipelineOptions, BenchConfig, ServeOptions):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "range" in f.metadata:
                assert options.number_kind(hints[f.name]) in options.RULES[f.metadata["range"]], (cls, f.name)


def cli_error(parser, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def invalid_cases(cls):
    """(field, a value its declaration refuses, of the field's number kind) for every field with
    a range or choices."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "choices" in f.metadata:
            yield f.name, "nope"
        elif f.metadata.get("range") in BAD:
            yield f.name, options.number_kind(hints[f.name])(BAD[f.metadata["range"]])


CASES = [(cls, error, name, value) for cls, error in ((BuildOptions, BuildError), (TrainJob, TrainError),
                                                       (BenchConfig, BenchError), (ServeOptions, ServeError),
                                                       (PipelineOptions, ValueError))
         for name, value in invalid_cases(cls)]


@pytest.mark.parametrize("cls, error, name, value", CASES,
                         ids=[f"{c[0].__name__}.{c[2]}" for c in CASES])
def test_python_and_cli_refuse_with_the_same_line(cls, error, name, value, capsys):
    with pytest.raises(error) as exc:
        cls(**{name: value})
    python_line = str(exc.value)
    assert "\n" not in python_line and (python_line.startswith(f"{name}: expected ")
                                        or python_line.startswith(f"unknown {name} 'nope'; choose one of "))
    parser = Parser(prog="shfan-x")
    add_dataclass_options(parser, cls, [name])
    flag = "--" + name.replace("_", "-")
    said = python_line.removeprefix(f"{name}: ")
    assert cli_error(parser, [flag, str(value)], capsys) == f"error: argument {flag}: {said} (see shfan-x --help)"


def test_build_options_check_their_combinations():
    with pytest.raises(BuildError, match="^give either --weights .* not both$"):
        BuildOptions(weights="compact", onnx="model.onnx")
    with pytest.raises(BuildError, match=r"^workspace_mb: expected a whole number >= 64, got 32$"):
        BuildOptions(workspace_mb=32)
    opts = BuildOptions()
    opts.decoder = "heatmaps"  # changed after construction: build() checks again
    with pytest.raises(BuildError, match="^unknown decoder 'heatmaps'; choose one of plugin, onnx, none$"):
        opts.validate()


def test_shfan_build_reports_the_options_own_check_as_usage(capsys):
    from shfan.cli.build import build_parser

    line = cli_error(build_parser(), ["--weights", "compact", "--onnx", __file__], capsys)
    assert "give either --weights (export from PyTorch) or --onnx" in line


def test_min_score_is_a_probability_in_python_as_on_the_command_line(capsys):
    """#28: min_score was declared a probability (the CLI refused 1.5) while validate() took any
    finite number >= 0. Now both take 0 to 1 and refuse 1.5."""
    parser = Parser(prog="shfan-x")
    add_dataclass_options(parser, PipelineOptions, ["min_score"])
    assert parser.parse_args(["--min-score", "1"]).min_score == 1.0
    assert PipelineOptions(min_score=1.0).validate().min_score == 1.0
    assert "expected a number from 0 to 1, got 1.5" in cli_error(parser, ["--min-score", "1.5"], capsys)
    with pytest.raises(ValueError, match="^min_score: expected a number from 0 to 1, got 1.5$"):
        PipelineOptions(min_score=1.5)


def test_argparse_types_say_what_they_expect():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a whole number >= 1, got 'two'$"):
        ranged(int, "positive")("two")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a finite number > 0, got nan$"):
        ranged(float, "positive")("nan")
    assert ranged(float, "fraction")("0.25") == 0.25
