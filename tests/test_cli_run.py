"""shfan-run under hostile inputs (#15): every bad input gets exit 1 or 2, one line, no traceback
and no leftover file; every output it writes is whole."""

import errno
import json
import os

import numpy as np
import pytest

from conftest import (YUNET, assert_one_line_error, assert_refused, bad_name, expand, fifo_with_reader, files_under,
                      folder_with, hostile_cases, is_char_device, null_device, run_cli, run_main, unix_socket)


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
    # hostile pass 2 (#29)
    (["--output", "@tmp/s.mp4", "--jsonl", "@tmp/s.mp4"], 2, ["--output", "--jsonl", "same path"]),  # row 6
    (["--stats-json", "@tmp/f", "--jsonl", "@tmp/./f"], 2, ["--stats-json", "--jsonl", "same path"]),
    (["--jsonl", "@tmp/" + "j" * 300 + ".jsonl"], 2, ["--jsonl", "too long"]),  # row 7
    (["--output", "@tmp/" + "v" * 300 + ".mp4"], 2, ["--output", "too long"]),
    (["--stats-json", "@tmp/" + "s" * 300], 2, ["--stats-json", "too long"]),
    (["--stats-json", "@tmp/sock"], 2, "special file"),  # row 2: a socket is refused
    (["--jsonl", "@tmp/sock"], 2, "special file"),
    (["--output", "@tmp/sock.mp4"], 2, "special file"),
    (["--model", "@tmp/emptied_build"], 1, ["not a usable shfan-build folder", "shfan-build --out"]),  # row 8
    (["--model", "@tmp/build_v99"], 1, ["shfan 99.0.0", "newer"]),  # row 9
    (["--model", "@tmp/build_opset99"], 1, ["opset 99"]),
    (["--model", "@tmp/build_landmarks98"], 1, ["landmarks 98", "model file has 68"]),
    (["--model", "@tmp/build_landmarks7"], 1, ["landmarks must be one of"]),
    (["--source", "@tmp/face.png", "--max-image-pixels", "1000"], 1, ["face.png", "512 x 512", "over the limit"]),  # 15
    # robotics sinks (#27): checked when parsed, before any library is needed
    (["--mcap", "@tmp/folder.mp4"], 2, ["--mcap", "is a folder"]),
    (["--mcap", "@ro/r.mcap"], 2, ["--mcap", "cannot write"]),
    (["--mcap", "@tmp/s.mcap", "--jsonl", "@tmp/s.mcap"], 2, ["--jsonl", "--mcap", "same path"]),
    (["--ros2-bag", "@tmp/face.png"], 2, ["--ros2-bag", "is a file"]),
    (["--ros2-bag", "@tmp", "--mcap", "@tmp/x.mcap"], 2, ["--mcap", "inside"]),
    (["--foxglove", "host:port"], 2, ["--foxglove", "HOST:PORT"]),
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
    unix_socket(tmp_path / "sock")
    unix_socket(tmp_path / "sock.mp4")
    _astronaut_png(tmp_path / "face.png")
    fp32 = {"onnx": "model_fp32.onnx"}
    cfg = {"stacks": 1, "width": 16, "landmarks": 68, "input_size": 64}
    for name, manifest in (("emptied_build", {}), ("build_v99", {"shfan_version": "99.0.0", "artifacts": {"fp32": fp32}}),
                           ("build_opset99", {"opset": 99, "artifacts": {"fp32": fp32}}),
                           ("build_landmarks98", {"model_config": {**cfg, "landmarks": 98}, "artifacts": {"fp32": fp32}}),
                           ("build_landmarks7", {"model_config": {**cfg, "landmarks": 7}, "artifacts": {"fp32": fp32}})):
        folder_with(tmp_path / name, {"manifest.json": json.dumps(manifest), "model_fp32.onnx": tiny_onnx.read_bytes()})
    return {**hostile_place, "tiny": tiny_onnx}


def _astronaut_png(path):
    import cv2

    from shfan.io import astronaut

    ok, data = cv2.imencode(".png", astronaut()[..., ::-1])  # imwrite crashes on names that are not UTF-8
    path.write_bytes(data.tobytes())
    return path


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
    from shfan.runtime.backends.onnxruntime import runner as ort_backend

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
    from shfan.runtime.backends.onnxruntime.runner import short

    text = "word " * 100 + "\nsecond line"
    cut = short(text, 60)
    assert len(cut) <= 60 and cut.endswith(" ...") and "word ..." in cut and "second" not in cut


# ---------------------------------------------------------------- hostile pass 2 (#29)


def test_names_that_are_not_utf8_work_for_every_reader_and_output(tiny_onnx, tmp_path):
    """Row 1: such names crashed OpenCV (exit 139). Images, a video source, the model, the detector
    and every output flag, in a subprocess (a crash must fail this test, not the session)."""
    import shutil

    folder = tmp_path / bad_name("g")
    folder.mkdir()
    image = _astronaut_png(folder / bad_name("img", ".png"))
    model = shutil.copy(tiny_onnx, tmp_path / bad_name("m", ".onnx"))
    detector = shutil.copy(YUNET, tmp_path / bad_name("y", ".onnx"))
    video, jsonl, stats = (tmp_path / bad_name("v", ".mp4"), tmp_path / bad_name("j", ".jsonl"),
                           tmp_path / bad_name("s", ".json"))
    common = ["--headless", "-q", "--model", model, "--detector-model", detector]
    for source in (folder, image):
        r = run_cli("run", ["--source", source, *common, "--output", video, "--jsonl", jsonl, "--stats-json", stats])
        assert r.returncode == 0, r.stderr
    r = run_cli("run", ["--source", video, *common, "--max-frames", "1", "--jsonl", jsonl])  # a video source
    assert r.returncode == 0, r.stderr
    assert len(jsonl.read_text().splitlines()) == 3 and json.loads(stats.read_text())["frames"] == 1
    assert files_under(tmp_path) == {folder.name, f"{folder.name}/{image.name}", model.name, detector.name,
                                     video.name, jsonl.name, stats.name}  # no temporary file left


def test_devices_are_written_into_never_replaced(tiny_onnx, tmp_path):
    """Row 2: a character device (/dev/null) named by any output flag stays a device; shfan
    writes into it (the user asked for the bytes to go there)."""
    devices = {flag: null_device(tmp_path / name) for flag, name in
               (("--output", "null.mp4"), ("--jsonl", "null.jsonl"), ("--stats-json", "null.json"))}
    from shfan.cli.run import main

    argv = ["--headless", "-q", "--max-frames", "2", "--model", tiny_onnx, "--detector-model", YUNET]
    code, _, err = run_main(main, argv + [x for flag, dev in devices.items() for x in (flag, dev)])
    assert code == 0, err
    assert all(is_char_device(d) for d in devices.values()) and files_under(tmp_path) == {d.name for d in devices.values()}


def test_fifo_gets_the_stats_whole(tiny_onnx, tmp_path):
    """Row 2: a FIFO is written into (a reader gets the whole JSON), not renamed over."""
    fifo = tmp_path / "stats.fifo"
    reader, got = fifo_with_reader(fifo)
    from shfan.cli.run import main

    code, _, err = run_main(main, ["--headless", "-q", "--max-frames", "2", "--model", tiny_onnx,
                                   "--detector-model", YUNET, "--stats-json", fifo])
    reader.join(30)
    assert code == 0, err
    assert json.loads(got[0])["frames"] == 2 and os.path.exists(fifo) and not os.path.isfile(fifo)


def test_sigterm_finishes_the_outputs_and_exits_130(tiny_onnx, tmp_path, monkeypatch):
    """Row 11: SIGTERM as Ctrl-C: the frame loop ends, the video and JSON lines are whole, one line,
    exit 130 (the same code as every other tool)."""
    import signal

    from shfan.cli import run as cli
    from shfan.runtime import outputs

    real_write = outputs.JsonlSink.write

    def write_then_terminate(self, result):
        real_write(self, result)
        if result.index == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(outputs.JsonlSink, "write", write_then_terminate)
    video, jsonl = tmp_path / "t.avi", tmp_path / "t.jsonl"
    code, _, err = run_main(cli.main, ["--headless", "-q", "--model", tiny_onnx, "--detector-model", YUNET,
                                       "--output", video, "--jsonl", jsonl])
    assert_one_line_error(code, err, 130, ["interrupted", "3 frames"])
    assert [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()] == [0, 1, 2]
    assert outputs.decodable_frames(video, 10) == 3 and files_under(tmp_path) == {"t.avi", "t.jsonl"}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored for the next main()


@pytest.fixture(scope="module")
def face_pipeline(yunet_path):
    """The shipped model (it finds the astronaut's face), smoothing on, video mode."""
    from shfan.runtime.pipeline import Pipeline

    with Pipeline(None, "onnxruntime", smooth=True, running_mode="video", detector_model=yunet_path) as p:
        yield p


def test_bad_timestamps_are_refused_and_never_poison_smoothing(face_pipeline):
    """Row 3: a NaN timestamp made every later frame NaN; now it is refused, and a clock that
    goes back restarts the filter instead of freezing it."""
    from shfan.io import astronaut

    img = astronaut()
    for t in (float("nan"), float("inf"), "soon"):
        with pytest.raises(ValueError, match="timestamp"):
            face_pipeline.process(img, timestamp=t)
    for t in (0.0, 0.1, 1.0, 0.5, 2.0):
        faces = face_pipeline.process(img, timestamp=t).faces
        assert faces and np.isfinite(faces[0].points).all(), t


def test_one_euro_filter_state_is_never_poisoned():
    from shfan.runtime.smoothing import OneEuroFilter

    f = OneEuroFilter()
    f(np.ones((2, 2)), 0.0)
    assert np.isnan(f(np.full((2, 2), np.nan), 0.1)).all()  # passed through, not kept
    assert np.isfinite(f(np.ones((2, 2)), float("nan"))).all()
    assert np.allclose(f(np.full((2, 2), 5.0), 0.2), f(np.full((2, 2), 5.0), 0.2)) and np.isfinite(f._x).all()
    assert np.allclose(f(np.full((2, 2), 9.0), 0.05), 9.0)  # time went back: restarted from this sample


@pytest.mark.parametrize("boxes, message", [([[0, 0, np.inf, np.inf]], "not finite"), ([[0, 0, np.nan, 9]], "not finite"),
                                            ([[10, 10, 10, 30]], "empty or inverted"),
                                            ([[50, 50, 10, 10]], "empty or inverted"),
                                            ([1, 2, 3], r"shape \(3,\)"), ("abc", "must be numbers")])
def test_bad_boxes_are_refused(face_pipeline, boxes, message):
    """Row 4: an inf box gave a face of NaN points."""
    from shfan.io import astronaut

    with pytest.raises(ValueError, match=message):
        face_pipeline.process(astronaut(), boxes=boxes)


@pytest.mark.parametrize("kwargs, message", [({"redetect_every": None}, "redetect_every must be a whole number"),
                                             ({"max_faces": "3"}, "max_faces must be a whole number"),
                                             ({"max_faces": 2.7}, "max_faces must be a whole number"),
                                             ({"max_faces": True}, "max_faces must be a whole number"),
                                             ({"min_score": "0.5"}, "min_score must be a number"),
                                             ({"smooth": "yes"}, "smooth must be True or False")])
def test_option_types_are_checked(tiny_onnx, kwargs, message):
    """Row 14: a raw TypeError, or (max_faces="3", 2.7) accepted silently."""
    from shfan.runtime.pipeline import Pipeline

    with pytest.raises(ValueError, match=message):
        Pipeline(tiny_onnx, "onnxruntime", detector=object(), **kwargs)


def test_empty_model_path_and_frames_in_memory(face_pipeline):
    """Row 14: Pipeline(model="") read '.' as a build folder; stream([img]) quoted the array in an OSError."""
    from shfan.errors import BackendError, ShfanError
    from shfan.io import astronaut
    from shfan.runtime.pipeline import Pipeline

    for model, message in (("", "empty path"), (3, "got int")):
        with pytest.raises(BackendError, match=message):
            Pipeline(model, "onnxruntime", detector=object())
    img = astronaut()
    assert [len(r.faces) for r in face_pipeline.stream([img, img])] == [1, 1]
    assert len(list(face_pipeline.stream(img))) == 1
    with pytest.raises(ShfanError, match="frame 1: expected an H x W x 3 uint8"):
        list(face_pipeline.stream(iter([img, "not an image"])))


def test_image_folder_records_name_their_file(tiny_onnx, tmp_path):
    """Newcomer finding: a skipped unreadable image shifted the frame -> file mapping; each record
    now names its image (README: JSON Lines records)."""
    from shfan.cli.run import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    _astronaut_png(folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    _astronaut_png(folder / bad_name("c", ".png"))
    jsonl = tmp_path / "r.jsonl"
    code, _, err = run_main(main, ["--source", folder, "--headless", "-q", "--model", tiny_onnx,
                                   "--detector-model", YUNET, "--jsonl", jsonl])
    assert code == 0, err
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["image"] for r in records] == ["a.png", "c\\xff.png"] and [r["frame"] for r in records] == [0, 1]
    assert all(isinstance(r["detector_ran"], bool) for r in records) and "b.png: cannot read image" in err
