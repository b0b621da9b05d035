"""shfan-build under hostile inputs (#15): exit 1 or 2, one line, no traceback, nothing left in
the output's parent; a damaged build folder is rebuilt, not reported up to date."""

import json

import pytest

from conftest import (assert_one_line_error, assert_refused, assert_sigterm_is_one_line_and_130, expand, files_under,
                      folder_with, hostile_cases, run_main, small_300w)

pytest.importorskip("onnx")
pytest.importorskip("torch")


HOSTILE = [  # extra args, exit code, words in the one line
    (["--max-nme-drift", "nan"], 2, "--max-nme-drift"),
    (["--max-nme-drift", "0"], 2, "--max-nme-drift"),
    (["--max-calib", "-1"], 2, "--max-calib"),
    (["--max-batch", "0"], 2, "--max-batch"),
    (["--out", "@ro/build"], 2, "cannot write"),
    (["--out", "@tmp/a_file"], 2, "is a file"),
    (["--calib-data", "@tmp/nope"], 2, "no such file"),
    (["--onnx", "@tmp/model.onnx"], 2, "not both"),
    (["--weights", "@tmp/model.onnx"], 1, "pass it with --onnx"),
    (["--precision", "fp32", "--max-calib", "0", "--calib-data", "@tmp/one_face"], 1,
     ["only 1 usable faces", "held-out"]),
    (["--precision", "int8", "--max-calib", "0"], 1, ["--max-calib 0", "int8"]),
    (["--precision", "fp32", "--calib-data", "@tmp/mixed"], 1, ["67 points", ".pts"]),
    # hostile pass 2 (#29): checked before any work (it ran a minute, then failed)
    (["--triton-repo", "@tmp/a_file"], 2, ["--triton-repo", "is a file"]),  # row 7
    (["--triton-repo", "@tmp/out"], 2, ["--out", "--triton-repo", "same path"]),  # row 6
    (["--triton-repo", "@tmp/out/triton"], 2, ["--triton-repo", "inside"]),
    (["--triton-repo", "@tmp/" + "t" * 300], 2, ["--triton-repo", "too long"]),
    (["--out", "@tmp/" + "o" * 300], 2, ["--out", "too long"]),
]


@pytest.fixture
def place(hostile_place, tiny_checkpoint, helen_dir, afw_dir):
    tmp_path = hostile_place["tmp"]
    small_300w(helen_dir, tmp_path / "one_face", 1)
    small_300w(afw_dir, tmp_path / "mixed", 3, lambda i, t: t.replace("n_points: 68", "n_points: 67")
               .rsplit("\n", 3)[0] + "\n}\n" if i == 1 else t)
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    return {**hostile_place, "tiny": tiny_checkpoint}


@hostile_cases(HOSTILE)
def test_hostile_inputs(place, extra, code, words):
    from shfan.cli.build import main

    argv = ["--weights", "@tiny", "--precision", "fp32", "--out", "@tmp/out", *extra]
    if "--onnx" in extra:
        argv += ["--weights", "@tiny"]
    assert_refused(main, expand(argv, place), code, words, place["tmp"])  # no out folder, no staging folder


def test_damaged_build_folder_is_rebuilt_not_up_to_date(tiny_checkpoint, tmp_path):
    from shfan.cli.build import main

    out = tmp_path / "b"
    argv = ["--weights", tiny_checkpoint, "--precision", "fp32", "--decoder", "none", "--out", out]
    assert run_main(main, argv)[0] == 0
    code, _, err = run_main(main, argv)
    assert code == 0 and "up to date" in err
    cache = json.loads((out / "cache.json").read_text())
    assert set(cache["files"]) >= {"model_fp32.onnx", "manifest.json"}
    onnx_file = out / "model_fp32.onnx"
    good = onnx_file.read_bytes()
    onnx_file.write_bytes(good[: len(good) // 2])  # truncated
    code, _, err = run_main(main, argv)
    assert code == 0 and "model_fp32.onnx" in err and "rebuilding" in err and "up to date" not in err
    assert onnx_file.read_bytes() == good  # the export is deterministic: the same bytes are back
    onnx_file.unlink()
    code, _, err = run_main(main, argv)
    assert code == 0 and "missing or changed" in err and onnx_file.is_file()


def test_fp32_without_ground_truth_is_the_reference_not_nme_zero(tiny_checkpoint, tmp_path):
    from shfan.cli.build import main

    code, out, err = run_main(main, ["--weights", tiny_checkpoint, "--precision", "fp32", "--decoder", "none",
                                     "--out", tmp_path / "b"])
    assert code == 0 and "reference" in out and "0.000" not in out


def test_manifest_that_is_a_list_is_rebuilt(tiny_checkpoint, tmp_path):
    from shfan.cli.build import main

    out = folder_with(tmp_path / "b", {"manifest.json": "[]"})
    code, _, err = run_main(main, ["--weights", tiny_checkpoint, "--precision", "fp32", "--decoder", "none", "--out", out])
    assert code == 0 and json.loads((out / "manifest.json").read_text())["selected_precision"] == "fp32"


# ---------------------------------------------------------------- hostile pass 2 (#29)


def test_full_disk_names_the_file_being_written(tiny_checkpoint, tmp_path, monkeypatch):
    """Row 12: 'error: No space left on device' named no file (a write error carries none)."""
    import errno

    import onnx

    from shfan.cli.build import main

    def full(model, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"half an onnx")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)
    out = tmp_path / "b"
    code, _, err = run_main(main, ["--weights", tiny_checkpoint, "--precision", "fp32", "--out", out])
    assert_one_line_error(code, err, 1, [f"{out / 'model_fp32.onnx'}: cannot write", "No space left", "left as it was"])
    assert files_under(tmp_path) == set()  # the staged folder is gone


def test_sigterm_is_one_line_and_130(tiny_checkpoint, tmp_path, monkeypatch):
    """Row 11: the same SIGTERM handling as every tool (common.entry), the build folder untouched."""
    from shfan.builder import workflow
    from shfan.cli.build import main

    assert_sigterm_is_one_line_and_130(main, ["--weights", tiny_checkpoint, "--precision", "fp32", "--out",
                                              tmp_path / "b"], monkeypatch, workflow, "build")
