"""shfan-bench under hostile inputs (#15): exit 1 or 2, one line, no traceback, no leftovers."""

import pytest

from conftest import assert_refused, expand, hostile_cases


HOSTILE = [  # extra args, exit code, words in the one line
    (["--baseline-frames", "0"], 2, "--baseline-frames"),
    (["--frames", "-1"], 2, "--frames"),
    (["--repeats", "0"], 2, "--repeats"),
    (["--warmup", "-1"], 2, "--warmup"),
    (["--threads", "0"], 2, "--threads"),
    (["--max-calib", "0"], 2, "--max-calib"),
    (["--precisions", "fp8"], 2, "unknown precision fp8"),
    (["--batch-sizes", "0,2"], 2, "from 1 to 64"),
    (["--cache-dir", "@ro/cache"], 2, "cannot write"),
    (["--cache-dir", "@tmp/a_file"], 2, "is a file"),
    (["--detector-model", "@tmp/nope.onnx"], 2, "no such file"),
    (["--baseline-weights", "@tmp/nope.pt"], 2, "no such file"),
    (["--model", "@tmp/nope.onnx"], 1, "no such model"),
    (["--model", "@yunet", "--detector-model", "@yunet", "--cache-dir", "@tmp/cache", "--no-baseline",
      "--no-tensorrt"], 1, "not a shfan ONNX"),
]


@hostile_cases(HOSTILE)
def test_hostile_inputs(hostile_place, extra, code, words):
    pytest.importorskip("onnx")
    from shfan.cli.bench import main

    argv = expand(["--quick", *extra], hostile_place)
    assert_refused(main, argv, code, words, hostile_place["tmp"], ignore={"cache"})  # nothing built, nothing half-written
