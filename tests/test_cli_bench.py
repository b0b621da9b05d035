"""shfan-bench under hostile inputs (#15): exit 1 or 2, one line, no traceback, no leftovers."""

import pytest

from conftest import YUNET, assert_one_line_error, files_under, run_main


@pytest.fixture
def place(tmp_path, readonly_dir):
    (tmp_path / "a_file").write_text("x")
    return {"tmp": tmp_path, "ro": readonly_dir}


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


@pytest.mark.parametrize("extra, code, words", HOSTILE, ids=[" ".join(h[0]) for h in HOSTILE])
def test_hostile_inputs(place, extra, code, words):
    pytest.importorskip("onnx")
    from shfan.cli.bench import main

    argv = [a.replace("@tmp", str(place["tmp"])).replace("@ro", str(place["ro"])).replace("@yunet", str(YUNET))
            for a in ["--quick", *extra]]
    before = files_under(place["tmp"])
    got, out, err = run_main(main, argv)
    assert_one_line_error(got, err, code, words)
    assert {f for f in files_under(place["tmp"]) if f != "cache"} == before  # nothing built, nothing half-written
