"""shfan-run under hostile inputs (#15): every bad input gets exit 1 or 2, one line, no traceback
and no leftover file; every output it writes is whole."""

import errno
import json
import os

import numpy as np
import pytest

from conftest import (YUNET, assert_one_line_error, assert_refused, expand, files_under, folder_with, hostile_cases,
                      run_main)


HOSTILE = [  # extra args, exit code, words in the one line
    (["--output", "@tmp/folder.mp4"], 2, "is a folder"),
    (["--output", "@tmp/no/such/out.mp4"], 2, "does not exist"),
    (["--output", "@ro/out.mp4"], 2, "cannot write"),
    (["--output", "@tmp/out.gif"], 2, "use .mp4 or .avi"),
    (["--stats-json", "@tmp/folder.mp4"], 2, "is a folder"),
    (["--stats-json", "@ro/stats.json"], 2, "cannot write"),
    (["--stats-json", "@tmp/no/stats.json"], 2, "does not exist"),
    (["--jsonl", "@tmp/folder.mp4"], 2, "is a folder"),
    (["--jsonl", "@ro/r.jsonl"], 2, "cannot write"),
    (["--precision", "int3"], 2, "--precision"),
    (["--precision", "fp16"], 2, "build folder"),
    (["--min-score", "2"], 2, "--min-score"),
    (["--min-face", "nan"], 2, "--min-face"),
    (["--max-faces", "-1"], 2, "--max-faces"),
    (["--threads", "0"], 2, "--threads"),
    (["--redetect-every", "-1"], 2, "--redetect-every"),
    (["--camera", "-1"], 2, "--camera"),
    (["--model", "@yunet"], 1, "not a shfan landmark model"),
    (["--detector-model", "@tiny"], 1, "not a YuNet face detector"),
    (["--model", "@tmp/ckpt.pt"], 1, "PyTorch checkpoint"),
    (["--model", "@tmp/list_build"], 1, "not a shfan-build manifest"),
    (["--backend", "tensorrt"], 1, "backend tensorrt runs a shfan-build folder or .engine"),
    (["--source", "@tmp/bad_images"], 1, "no frame could be read"),
    (["--jsonl", "/dev/full"], 1, ["/dev/full", "No space left"]),
]


@pytest.fixture
def place(hostile_place, tiny_onnx):
    tmp_path = hostile_place["tmp"]
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "bad_images").mkdir()
    for i in range(3):
        (tmp_path / "bad_images" / f"{i}.jpg").write_bytes(b"not a jpeg")
    folder_with(tmp_path / "list_build", {"manifest.json": "[]"})
    (tmp_path / "ckpt.pt").write_bytes(b"PK")
    return {**hostile_place, "tiny": tiny_onnx}


@hostile_cases(HOSTILE)
def test_hostile_inputs(place, extra, code, words):
    from shfan.cli.run import main

    if "/dev/full" in extra and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    argv = expand(["--headless", "--quiet", "--max-frames", "3", "--model", "@tiny", "--detector-model", "@yunet",
                   *extra], place)
    assert_refused(main, argv, code, words, place["tmp"])  # no partial video, stats or jsonl


def test_interrupt_at_start_up_is_one_line(tiny_onnx, monkeypatch):
    """Ctrl-C while the model loads: exit 130, one line, no traceback, no false 'not installed'."""
    from shfan.cli import run as cli
    from shfan.runtime import pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Pipeline, "__init__", interrupted)
    code, _, err = run_main(cli.main, ["--headless", "--model", tiny_onnx, "--detector-model", YUNET])
    assert_one_line_error(code, err, 130, "interrupted")


def test_onnxruntime_that_does_not_import_is_not_called_missing(monkeypatch):
    import builtins

    from shfan.errors import BackendError
    from shfan.runtime import ort_backend

    real = builtins.__import__

    def broken(name, *a, **k):
        if name == "onnxruntime":
            raise ImportError("half-initialised module")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(BackendError, match="installed but does not import"):
        ort_backend._import_ort()


# ---------------------------------------------------------------- outputs stay whole


def _video_of_frames(path, n=5):
    """A VideoSink with n flat frames written, not closed."""
    from shfan.runtime.outputs import VideoSink

    sink = VideoSink(path)
    for i in range(n):
        sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    return sink


def test_video_that_does_not_decode_is_refused_and_removed(tmp_path):
    """A full disk looks like this to OpenCV: the writer says nothing, the file is cut short."""
    from shfan.runtime.outputs import OutputError

    sink = _video_of_frames(tmp_path / "k.mp4")
    sink.writer.release()
    sink.writer = None
    data = sink.tmp.read_bytes()
    sink.tmp.write_bytes(data[: len(data) // 3])  # the tail (and the mp4 index) never reached the disk
    with pytest.raises(OutputError, match="could not be written completely"):
        sink.close()
    assert files_under(tmp_path) == set()


def test_whole_video_is_kept(tmp_path):
    from shfan.runtime.outputs import decodable_frames

    _video_of_frames(tmp_path / "k.avi").close()
    assert files_under(tmp_path) == {"k.avi"} and decodable_frames(tmp_path / "k.avi", 10) == 5


def test_partial_video_of_a_killed_run_is_removed_next_time(tmp_path):
    from shfan.runtime.outputs import VideoSink

    dead = tmp_path / ".k.999999999.partial.mp4"  # no such pid
    dead.write_bytes(b"half")
    alive = tmp_path / f".k.{os.getppid()}.partial.mp4"  # a process that runs
    alive.write_bytes(b"half")
    VideoSink(tmp_path / "k.mp4")
    assert not dead.exists() and alive.exists()


def test_jsonl_write_cut_by_a_full_disk_leaves_whole_lines(tmp_path, monkeypatch):
    from shfan.runtime import outputs
    from conftest import fake_result

    path = tmp_path / "r.jsonl"
    sink = outputs.JsonlSink(path)
    sink.write(fake_result(0))
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 10:
            real_write(fd, bytes(data[: len(data) // 2]))
            return len(data) // 2
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "write", half_then_full)
    with pytest.raises(outputs.OutputError, match="No space left"):
        sink.write(fake_result(1))
    monkeypatch.undo()
    sink.close()
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n") and json.loads(lines[0])["frame"] == 0


def test_stats_json_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    from shfan.errors import OutputError
    from shfan.runtime.stats import RunStats

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dumps", lambda *a, **k: "x" * 10)
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="No space left"):
        RunStats().write_json(tmp_path / "s.json", {"frames": 0})
    assert files_under(tmp_path) == set()


# ---------------------------------------------------------------- the API


def test_pipeline_refuses_empty_images_and_use_after_close(tiny_onnx):
    from shfan.errors import BackendError
    from shfan.runtime.pipeline import Pipeline

    class NoFaces:
        def detect(self, image):
            return []

    p = Pipeline(tiny_onnx, "onnxruntime", detector=NoFaces())
    for shape in ((0, 0, 3), (0, 10, 3), (10, 0, 3)):
        with pytest.raises(ValueError, match="H, W >= 1"):
            p.process(np.zeros(shape, np.uint8))
    p.close()
    with pytest.raises(BackendError, match="closed"):
        p.process(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(BackendError, match="closed"):
        next(p.stream("demo"))


@pytest.mark.parametrize("option, value", [("max_faces", -1), ("threads", -1), ("min_score", float("nan")),
                                           ("detector_threshold", 2.0), ("min_face", float("inf")),
                                           ("max_step", 0.0), ("smooth_beta", -1.0)])
def test_pipeline_options_are_checked(tiny_onnx, option, value):
    from shfan.runtime.pipeline import Pipeline

    with pytest.raises(ValueError, match=option):
        Pipeline(tiny_onnx, "onnxruntime", detector=object(), **{option: value})


def test_api_errors_name_arguments_not_only_flags(monkeypatch, tmp_path):
    from shfan.runtime.detector import DetectorError, resolve_detector_model

    monkeypatch.delenv("SHFAN_DETECTOR_MODEL", raising=False)
    with pytest.raises(DetectorError, match=r"Pipeline\(detector_model=PATH\)") as exc:
        resolve_detector_model(tmp_path / "nope.onnx")
    assert "from detector_model" in str(exc.value)


def test_long_onnxruntime_messages_are_cut_at_a_word():
    from shfan.runtime.ort_backend import short

    text = "word " * 100 + "\nsecond line"
    cut = short(text, 60)
    assert len(cut) <= 60 and cut.endswith(" ...") and "word ..." in cut and "second" not in cut
