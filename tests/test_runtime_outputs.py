"""JSON Lines records, the annotated video file (atomic), the stats summary, and what
`import shfan.runtime` may pull in."""

import io
import json

import cv2
import numpy as np
import pytest

from shfan.runtime import outputs
from shfan.runtime.stats import RunStats

from conftest import fake_result, heavy_modules_after


def test_jsonl_records(tmp_path):
    sink = outputs.JsonlSink(tmp_path / "r.jsonl")
    sink.write(fake_result(0, 2))
    sink.write(fake_result(1, 0))
    sink.close()
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    a, b = (json.loads(line) for line in lines)
    assert a["frame"] == 0 and len(a["faces"]) == 2 and b["faces"] == []
    face = a["faces"][1]
    assert len(face["points"]) == 68 and all(len(p) == 2 and isinstance(p[0], float) for p in face["points"])
    assert face["points"][0] == [40.25, 30.25] and len(face["scores"]) == 68 and len(face["box"]) == 4
    assert a["latency_ms"] == pytest.approx(10.7) and set(a["timings_ms"]) >= {"detect", "infer"}


def test_jsonl_bad_folder_is_one_line(tmp_path):
    with pytest.raises(outputs.OutputError, match="does not exist"):
        outputs.JsonlSink(tmp_path / "no" / "r.jsonl")


def test_annotate_draws_landmarks():
    r = fake_result()
    bgr = outputs.annotate(r.image, r.faces, fps=31.5)
    x, y = r.faces[0].points[30]
    assert bgr[int(y), int(x), 1] > 150 and bgr[int(y), int(x), 0] < 50  # green dot on the point
    assert bgr[5:25, 5:100].any()  # FPS label


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_video_written_under_temp_name_then_renamed(tmp_path, name):
    sink = outputs.VideoSink(tmp_path / name, fps=30)
    for i in range(12):
        sink.write(outputs.annotate(fake_result(i).image, fake_result(i).faces))
        assert not (tmp_path / name).exists()  # never visible half-written
    sink.close()
    assert (tmp_path / name).is_file() and [p.name for p in tmp_path.iterdir()] == [name]
    cap = cv2.VideoCapture(str(tmp_path / name))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12


def test_aborted_video_leaves_nothing(tmp_path):
    sink = outputs.VideoSink(tmp_path / "out.mp4")
    sink.write(np.zeros((48, 64, 3), np.uint8))
    sink.close(keep=False)
    assert list(tmp_path.iterdir()) == []


def test_video_bad_names(tmp_path):
    with pytest.raises(outputs.OutputError, match="use .mp4"):
        outputs.VideoSink(tmp_path / "out.gif")
    with pytest.raises(outputs.OutputError, match="does not exist"):
        outputs.VideoSink(tmp_path / "missing" / "out.mp4")


def test_gui_check_never_raises():
    ok, why = outputs.gui_available()
    assert ok or why


def test_stats_summary_and_json(tmp_path):
    st = RunStats()
    for i in range(10):
        st.add(fake_result(i).timings, faces=1, detected=i == 0)
    s = st.summary(source="demo")
    assert s["frames"] == 10 and s["detector_runs"] == 1 and s["source"] == "demo"
    assert s["stages"]["infer"]["mean_ms"] == pytest.approx(10.0)
    assert s["processing_fps"] == pytest.approx(1000 / 10.7, rel=1e-3)
    st.write_json(tmp_path / "s.json", s)
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 10
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120)
    console.print(st.table(s))  # library code returns the table; the caller prints it
    assert "infer" in console.file.getvalue() and "10 frames" in console.file.getvalue()


def test_runtime_imports_stay_light():
    code = ("import shfan, shfan.runtime, shfan.runtime.backend, shfan.runtime.backends.onnxruntime.runner, "
            "shfan.runtime.pipeline, shfan.runtime.sources, shfan.runtime.detector, shfan.runtime.tracker, "
            "shfan.runtime.backends.tensorrt.runner, shfan.runtime.backends.pytorch.runner, "
            "shfan.runtime.cuda_host, shfan.runtime.outputs, shfan.cli.run; "
            "shfan.Pipeline")
    assert heavy_modules_after(code, ("torch", "tensorrt", "pycuda", "cuda", "skimage")) == []


# ---------------------------------------------------------------- the one writer and reader (#29)


def test_atomic_writer_writes_into_devices_and_fifos_and_refuses_sockets(tmp_path):
    """Row 2 at its root: shfan.atomic never renames over anything that is not a regular file."""
    from shfan import atomic
    from shfan.errors import OutputError

    from conftest import fifo_with_reader, is_char_device, null_device, unix_socket

    fifo = tmp_path / "f"
    reader, got = fifo_with_reader(fifo)
    atomic.write_text(fifo, "whole\n")
    reader.join(10)
    assert got == [b"whole\n"] and atomic.target_kind(fifo) == "stream"
    sock = unix_socket(tmp_path / "s")
    with pytest.raises(OutputError, match="special file"):
        atomic.write_text(sock, "x")
    assert atomic.output_problem(sock) and atomic.output_problem(tmp_path / ("x" * 300))
    assert atomic.target_kind("/dev/stdout") == "stream" and atomic.output_problem("/dev/null") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "s"]  # no temporary file left
    dev = null_device(tmp_path / "null.json")
    atomic.write_text(dev, "{}")
    assert is_char_device(dev)


def test_temporary_names_are_ascii():
    from shfan.atomic import safe_stem

    from conftest import bad_name

    for name in (bad_name("v", ".mp4"), "ünïcode.png", "x" * 300):
        stem = safe_stem(name)
        assert stem.isascii() and stem.isprintable() and len(stem) < 60
    assert safe_stem("plain.mp4") == "plain.mp4" and safe_stem(bad_name("a")) != safe_stem(bad_name("b"))


def test_images_are_read_from_bytes_and_checked_for_size_first(tmp_path, monkeypatch):
    """Rows 1 and 15 at their root (shfan.io.read_rgb): any file name, and a pixel limit applied
    from the header, before decoding."""
    from shfan import io as shio

    from conftest import bad_name

    image = np.zeros((30, 40, 3), np.uint8)
    image[..., 0] = 200
    for ext in (".png", ".jpg", ".bmp"):
        path = tmp_path / bad_name("img", ext)
        path.write_bytes(cv2.imencode(ext, image)[1].tobytes())
        got = shio.read_rgb(path)
        assert got.shape == (30, 40, 3) and got[0, 0, 2] > 150 and got[0, 0, 0] < 50  # BGR on disk, RGB here
        if ext != ".bmp":
            assert shio.image_size(path.read_bytes()) == (40, 30)
        monkeypatch.setenv("SHFAN_MAX_IMAGE_PIXELS", "1199")
        with pytest.raises(shio.ImageTooLarge, match="40 x 30 pixels, over the limit of 1,199"):
            shio.read_rgb(path)
        monkeypatch.delenv("SHFAN_MAX_IMAGE_PIXELS")
    assert shio.read_rgb(tmp_path / "missing.png") is None
