"""Frame sources: URI parsing, GStreamer strings, demo motion, folders, failures that must be
clean and fast, and the newest-frame-only / reconnect behaviour of live sources."""

import threading
import time

import cv2
import numpy as np
import pytest

from shfan.runtime import sources
from shfan.runtime.sources import FrameSource, SourceError, SourceSpec, gstreamer_pipeline, parse_source


@pytest.mark.parametrize("uri, kind, location, index", [
    ("demo", "demo", "demo", None),
    ("0", "camera", "/dev/video0", 0),
    ("/dev/video2", "camera", "/dev/video2", 2),
    ("v4l2:///dev/video1", "camera", "/dev/video1", 1),
    ("csi://0", "csi", "csi://0", 0),
    ("csi://1", "csi", "csi://1", 1),
    ("rtsp://192.168.1.2:8554/cam", "rtsp", "rtsp://192.168.1.2:8554/cam", None),
])
def test_parse_uris(uri, kind, location, index):
    spec = parse_source(uri)
    assert (spec.kind, spec.location, spec.index) == (kind, location, index)
    assert spec.live == (kind in ("camera", "csi", "rtsp"))


def test_parse_paths(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "v.mp4").write_bytes(b"")
    assert parse_source(tmp_path).kind == "folder"
    assert parse_source(tmp_path / "a.png").kind == "image"
    assert parse_source(tmp_path / "v.mp4").kind == "file"
    assert parse_source(f"file://{tmp_path / 'v.mp4'}").location == str(tmp_path / "v.mp4")


@pytest.mark.parametrize("uri, words", [
    ("csi://x", "csi://N"), ("v4l2://video0", "v4l2:///dev/videoN"), ("foo://bar", "unknown source scheme"),
    ("/no/such/file.mp4", "no such file"),
])
def test_parse_errors_name_the_fix(uri, words):
    with pytest.raises(SourceError, match=words) as exc:
        parse_source(uri)
    assert "\n" not in str(exc.value)


def test_gstreamer_pipelines():
    csi = gstreamer_pipeline(parse_source("csi://1"), 1280, 720, 30)
    assert csi.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1")
    assert "nvvidconv" in csi and csi.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "format=BGR ! appsink" in csi
    v4l2 = gstreamer_pipeline(parse_source("v4l2:///dev/video3"))
    assert v4l2.startswith("v4l2src device=/dev/video3 ! ")
    rtsp = gstreamer_pipeline(parse_source("rtsp://cam/live"))
    assert rtsp.startswith("rtspsrc location=rtsp://cam/live latency=100 ! decodebin ! ")
    assert gstreamer_pipeline(SourceSpec("file", "x.mp4")) is None


def test_csi_without_gstreamer_says_so(monkeypatch):
    monkeypatch.setattr(sources, "opencv_has_gstreamer", lambda: False)
    with pytest.raises(SourceError, match="GStreamer"):
        sources.open_source("csi://0")


def test_missing_camera_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="--camera N") as exc:
        sources.open_source("97")
    assert time.monotonic() - t0 < 3.0
    assert "\n" not in str(exc.value)


def test_demo_motion_is_known_and_frames_in_order():
    ref = sources.astronaut()
    with FrameSource(sources.SourceSpec("demo", "demo")) as src:
        frames = [src.read() for _ in range(40)]
    assert [f.index for f in frames] == list(range(40))
    assert np.allclose(np.diff([f.timestamp for f in frames]), 1 / 30)
    # pixels of the still image land where frame.motion says (interior points of the face)
    pts = np.array([[200.5, 100.5], [250.5, 150.5], [220.5, 180.5], [180.5, 60.5]])
    for f in frames[::13]:
        assert f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8
        moved = pts @ f.motion[:, :2].T + f.motion[:, 2]
        for (x, y), (u, v) in zip(pts, moved):
            a = ref[int(y), int(x)].astype(float)
            b = f.image[int(v), int(u)].astype(float)
            assert np.abs(a - b).mean() < 40  # bilinear resampling + zoom; wrong maps differ by far more
    # the motion really moves: pan, zoom and roll over the first seconds
    ms = [sources.demo_motion(i) for i in range(0, 200, 10)]
    assert np.ptp([m[0, 2] for m in ms]) > 50
    assert np.ptp([np.hypot(*m[:, 0]) for m in ms]) > 0.1
    assert np.ptp([np.degrees(np.arctan2(m[1, 0], m[0, 0])) for m in ms]) > 10


def test_image_folder_in_name_order(tmp_path):
    for i, name in enumerate(["b.png", "a.jpg", "c.png"]):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    with FrameSource(tmp_path) as src:
        frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [50, 0, 100]  # a, b, c (broken skipped)


def test_empty_folder_is_a_clean_error(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        sources.open_source(tmp_path)


def _write_video(path, n=30):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), (i * 8) % 256, np.uint8))
    w.release()


def test_video_file_every_frame(tmp_path):
    _write_video(tmp_path / "v.avi", 30)
    with FrameSource(tmp_path / "v.avi") as src:
        frames = list(src)
    assert len(frames) == 30 and [f.index for f in frames] == list(range(30))


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_video_is_a_clean_error(tmp_path, keep):
    _write_video(tmp_path / "v.avi", 60)
    data = (tmp_path / "v.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * keep)])
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="truncated|corrupt|cannot open") as exc:
        with FrameSource(tmp_path / "cut.avi") as src:
            list(src)
    assert time.monotonic() - t0 < 10 and "\n" not in str(exc.value)


class FakeLiveDevice:
    """A camera that produces frames fast, and can be told to fail or stall."""

    live = True
    name = "fake-camera"

    def __init__(self, fail_after=None, stall_after=None):
        self.n = 0
        self.opens = 0
        self.fail_after, self.stall_after = fail_after, stall_after
        self.stall = threading.Event()

    def open(self):
        self.opens += 1

    def read(self):
        self.n += 1
        if self.fail_after is not None and self.n == self.fail_after:
            raise SourceError("fake-camera: no frame (camera or stream lost)")
        if self.stall_after is not None and self.n >= self.stall_after:
            self.stall.wait(30)
        time.sleep(0.002)
        return np.full((4, 4, 3), self.n % 255, np.uint8), time.monotonic(), None

    def close(self):
        pass


def test_live_source_keeps_only_the_newest_frame():
    with FrameSource(FakeLiveDevice()) as src:
        first = src.read()
        time.sleep(0.3)  # a slow consumer
        second = src.read()
    assert second.index - first.index > 10  # frames in between were dropped, not queued
    assert src.dropped > 10


def test_lost_live_source_is_reopened(caplog):
    dev = FakeLiveDevice(fail_after=3)
    with FrameSource(dev, reconnect_s=5) as src:
        frames = [src.read() for _ in range(10)]
    assert dev.opens == 2 and src.reconnects == 1
    assert frames[-1].index > frames[0].index
    assert any("reopen" in r.message for r in caplog.records)


def test_stalled_source_times_out():
    dev = FakeLiveDevice(stall_after=2)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="no frame for"):
        with FrameSource(dev, read_timeout_s=0.5) as src:
            for _ in range(10):
                src.read()
    dev.stall.set()
    assert time.monotonic() - t0 < 3
