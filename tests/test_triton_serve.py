"""shfan-serve on a real Triton Inference Server (PyTriton's tritonserver, CPU, loopback ports).

Skips without the `serve` extra (PyTriton pins numpy < 2, so it lives in its own venv: `make
test-serve`) or on a platform PyTriton does not ship tritonserver for. Every answer is checked
against Pipeline.process() on the same image in this process."""

import os
import platform
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="needs PyTriton (pip install 'shfan[serve]'; make test-serve)")
httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient (pip install 'shfan[serve]')")
pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image (the demo extra)")
import cv2  # noqa: E402

from conftest import YUNET  # noqa: E402
from shfan.runtime.pipeline import Pipeline  # noqa: E402
from shfan.serve.batching import decode_image  # noqa: E402
from shfan.serve.client import ShfanClient  # noqa: E402
from shfan.serve.process import ServeProcess, alive, descendants  # noqa: E402
from shfan.serve.server import FACES, FACES_RGB, POINTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOL_PX = 1e-3


def _platform_ok():
    libc, version = platform.libc_ver()
    if platform.machine() not in ("x86_64", "aarch64") or libc != "glibc":
        return f"PyTriton ships tritonserver for x86-64/aarch64 glibc only, not {platform.machine()} {libc}"
    if tuple(int(x) for x in version.split(".")[:2]) < (2, 35):
        return f"PyTriton's tritonserver needs glibc >= 2.35, this is {version}"
    return None


class Server(ServeProcess):
    def __init__(self, *args):
        reason = _platform_ok()
        if reason:
            pytest.skip(reason)
        if not YUNET.is_file():
            pytest.skip("../shared/models/yunet_s_640_640.onnx not present")
        super().__init__(["--detector-model", YUNET, "--threads", "2", *args],
                         log=Path(os.environ.get("TMPDIR", "/tmp")) / f"shfan-serve-test-{os.getpid()}.log")
        try:
            self.start()
        except RuntimeError as exc:
            pytest.fail(str(exc))


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def reference():
    with Pipeline(detector_model=YUNET, max_faces=8) as p:
        yield p


@pytest.fixture(scope="module")
def images():
    a = skimage_data.astronaut()
    return {"astronaut": a, "mirrored": np.ascontiguousarray(a[:, ::-1]), "small": cv2.resize(a, (256, 256)),
            "two": np.concatenate([a, a[:, ::-1]], axis=1), "none": np.full((120, 160, 3), 90, np.uint8),
            "coffee": skimage_data.coffee()}


def _jpeg(rgb):
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def _check(got, ref):
    assert len(got) == len(ref.faces), (len(got), len(ref.faces))
    for g, r in zip(got, ref.faces):
        assert np.abs(g.points - r.points).max() <= TOL_PX
        assert np.abs(g.scores - r.scores).max() <= 1e-4
        assert abs(g.score - r.score) <= 1e-4
        np.testing.assert_allclose(g.box, r.box, atol=TOL_PX)


def _run_all(threads, timeout_s=300):
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)


def test_concurrent_clients_get_what_pipeline_process_gives(server, reference, images):
    """8 clients at once (HTTP bytes, HTTP arrays, gRPC), every answer against Pipeline.process()."""
    names = list(images)
    jpegs = {n: _jpeg(images[n]) for n in names}
    expected = {("rgb", n): reference.process(images[n]) for n in names}
    expected.update({("jpeg", n): reference.process(decode_image(jpegs[n])) for n in names})
    assert [len(expected[("rgb", n)].faces) for n in names] == [1, 1, 1, 2, 0, 0]
    errors, done = [], []

    def client(i):
        try:
            with ShfanClient(server.url if i % 4 else f"127.0.0.1:{server.grpc}", "http" if i % 4 else "grpc") as c:
                for j in range(6):
                    n = names[(i + j) % len(names)]
                    kind = "jpeg" if (i + j) % 2 else "rgb"
                    got = c.faces(jpegs[n] if kind == "jpeg" else images[n])
                    _check(got, expected[(kind, n)])
                    done.append(n)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    _run_all(threads)
    assert not errors, errors[:3]
    assert len(done) == 48


def test_bytes_ending_in_zeros_arrive_whole(server, reference, images):
    """A BMP stores rows bottom-up: a black top row makes the file end in zero bytes, which a
    fixed-width numpy bytes array would strip."""
    a = images["astronaut"].copy()
    a[:8] = 0
    bmp = cv2.imencode(".bmp", cv2.cvtColor(a, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert bmp.endswith(b"\x00" * 16)
    with ShfanClient(server.url) as c:
        _check(c.faces(bmp), reference.process(a))


def test_points_for_the_callers_boxes(server, reference, images):
    a = images["astronaut"]
    boxes = [[170.0, 40.0, 290.0, 200.0], [160.0, 30.0, 300.0, 215.0]]
    with ShfanClient(server.url) as c:
        points, scores = c.points(a, boxes)
    ref = reference.process(a, boxes=boxes)
    assert points.shape == (2, 68, 2) and scores.shape == (2, 68)
    for i, face in enumerate(ref.faces):
        assert np.abs(points[i] - face.points).max() <= TOL_PX
        np.testing.assert_allclose(scores[i], face.scores, atol=1e-4)
    # a crop the caller cut out, with the box in crop coordinates
    crop = np.ascontiguousarray(a[20:240, 140:330])
    with ShfanClient(server.url) as c:
        points, _ = c.points(crop, [[30.0, 20.0, 150.0, 180.0]])
    ref = reference.process(crop, boxes=[[30.0, 20.0, 150.0, 180.0]])
    assert np.abs(points[0] - ref.faces[0].points).max() <= TOL_PX


def test_stream_video_from_concurrent_clients(server, reference, images, tmp_path):
    from shfan.serve.client import stream_video

    video = tmp_path / "clip.avi"
    a = cv2.cvtColor(images["astronaut"], cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (a.shape[1], a.shape[0]))
    for i in range(7):
        writer.write(np.roll(a, 9 * i, axis=1))
    writer.release()
    got = stream_video(video, server.url, clients=3)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(got) == len(frames) == 7
    for frame, faces in zip(frames, got):  # the client sends JPEG quality 90: the same bytes here
        jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        _check(faces, reference.process(decode_image(jpeg)))


def _counters(port, model):
    """Triton's own Prometheus counters for a model: (images inferred, model executions)."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()

    def value(metric):
        m = re.search(rf'^{metric}{{model="{model}",version="1"}} (\S+)$', text, re.M)
        assert m, f"{metric} for {model} not in the metrics"
        return int(float(m.group(1)))

    return value("nv_inference_count"), value("nv_inference_exec_count")


def test_concurrent_requests_reach_the_model_as_batches(server, images):
    """Triton's own counters: 12 images at once run in fewer model executions than images."""
    before, deadline = _counters(server.metrics, FACES), time.monotonic() + 10
    while time.monotonic() < deadline:  # earlier tests' requests may still be on their way into the counters
        time.sleep(0.5)
        now = _counters(server.metrics, FACES)
        if now == before:
            break
        before = now
    jpeg = _jpeg(images["small"])
    barrier = threading.Barrier(12)
    counts = []

    def one():
        with ShfanClient(server.url) as c:
            barrier.wait()
            counts.append(len(c.faces(jpeg)))

    threads = [threading.Thread(target=one) for _ in range(12)]
    _run_all(threads)
    assert counts == [1] * 12
    deadline = time.monotonic() + 15  # Triton's metrics endpoint may lag the answers by a moment
    while True:
        after = _counters(server.metrics, FACES)
        inferences, executions = after[0] - before[0], after[1] - before[1]
        if inferences >= 12 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert inferences == 12 and executions < inferences, (inferences, executions)


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, reference, images):
    from tritonclient.utils import InferenceServerException

    a = images["astronaut"]
    raw = httpclient.InferenceServerClient(server.url)

    def send(model, *inputs):
        ins = []
        for name, array, dtype in inputs:
            inp = httpclient.InferInput(name, list(array.shape), dtype)
            inp.set_data_from_numpy(array, binary_data=True)
            ins.append(inp)
        return raw.infer(model, ins)

    try:
        cases = {
            "wrong dtype": (FACES_RGB, ("image", a[None].astype(np.float32), "FP32")),
            "wrong shape": (FACES_RGB, ("image", np.zeros((1, 64, 64, 4), np.uint8), "UINT8")),
            "not an image": (FACES, ("image", np.array([[b"\x89PNG but not really"]], dtype=np.object_), "BYTES")),
            "empty batch": (FACES, ("image", np.zeros((0, 1), dtype=np.object_), "BYTES")),
            "bad box": (POINTS, ("image", a[None], "UINT8"), ("box", np.array([[50, 50, 10, 10]], np.float32), "FP32")),
            "missing box": (POINTS, ("image", a[None], "UINT8")),
        }
        messages = {}
        for what, (model, *inputs) in cases.items():
            with pytest.raises(InferenceServerException) as info:
                send(model, *inputs)
            messages[what] = str(info.value)
        assert "not an image" in messages["not an image"]
        assert "x1 > x0" in messages["bad box"]
        assert "FP32" in messages["wrong dtype"] or "data-type" in messages["wrong dtype"]
    finally:
        raw.close()
    with ShfanClient(server.url) as c:  # still serving, still right
        _check(c.faces(a), reference.process(a))
    assert server.proc.poll() is None


def test_sigterm_stops_tritonserver_cleanly(server):
    tree = descendants(server.proc.pid)
    assert any("tritonserver" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace") for p in tree), \
        "tritonserver should run below shfan-serve"
    code = server.stop(signal.SIGTERM, timeout_s=60)
    assert code == 0, server.tail()
    assert "shfan-serve: stopped" in server.tail()
    time.sleep(0.5)
    assert not [pid for pid in tree if alive(pid)], "tritonserver (or its stub) outlived shfan-serve"


def test_port_in_use_is_a_one_line_error_and_leaves_nothing_behind(tmp_path):
    import socket

    if _platform_ok() or not YUNET.is_file():
        pytest.skip("no tritonserver here, or no YuNet")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # bound, not listening: tritonserver cannot bind it, connects are refused
        port = busy.getsockname()[1]
        # the last --http-port wins: the busy one
        proc = ServeProcess(["--detector-model", YUNET, "--http-port", port], log=tmp_path / "serve.log")
        with pytest.raises(RuntimeError, match="exited with 1"):
            proc.start(timeout_s=120)
    log = proc.tail()
    assert f"error: cannot listen on 127.0.0.1:{port} (Address already in use)" in log, log
    assert "Traceback" not in log, log

    def cmdline(p):
        try:
            return (p / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return b""

    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and f"--http-port {port} ".encode() in cmdline(p)]
