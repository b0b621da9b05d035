"""shfan-run --foxglove (#27): a WebSocket client speaking the Foxglove protocol gets the channel
advertisements and annotations, leaves, and the run ends at the same frame count as without it; a
client that never reads leaves the pipeline's memory bounded (the server drops its oldest messages)."""

import base64
import json
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest

from conftest import SHARED, YUNET, assert_one_line_error, run_main

pytest.importorskip("foxglove")
ws_client = pytest.importorskip("websockets.sync.client")
protobuf_decoder = pytest.importorskip("mcap_protobuf.decoder")

VIDEO = SHARED / "data" / "videos" / "single_face.mp4"
SUBPROTOCOL = "foxglove.sdk.v1"  # foxglove-sdk 0.30's server (the app speaks it)


def video_frames(n):
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def decode_protobuf(channel, payload):
    from mcap.records import Schema

    schema = Schema(id=1, name=channel["schemaName"], encoding="protobuf", data=base64.b64decode(channel["schema"]))
    return protobuf_decoder.DecoderFactory().decoder_for("protobuf", schema)(payload)



def test_a_viewer_comes_and_goes_and_the_run_is_unchanged(default_model):
    from shfan.runtime.pipeline import Pipeline
    from shfan.runtime.sinks.foxglove_live import FoxgloveLiveSink

    frames = video_frames(40)
    with Pipeline(default_model, "onnxruntime", detector_model=YUNET) as p:
        alone = [len(r.faces) for r in p.stream(frames)]
        sink = FoxgloveLiveSink("127.0.0.1", 0)
        seen, done = {}, threading.Event()

        def viewer():
            try:
                with ws_client.connect(f"ws://127.0.0.1:{sink.port}", subprotocols=[SUBPROTOCOL]) as ws:
                    while "advertise" not in seen:
                        msg = json.loads(ws.recv(timeout=30))
                        seen[msg["op"]] = msg
                    channels = {c["topic"]: c for c in seen["advertise"]["channels"]}
                    ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                        {"id": 7, "channelId": channels["/face_landmarks/annotations"]["id"]}]}))
                    seen["channels"] = channels
                    while "annotations" not in seen:
                        msg = ws.recv(timeout=30)
                        if isinstance(msg, bytes) and msg[0] == 1:  # message data: op, subscription, time, payload
                            sub, _ = struct.unpack_from("<IQ", msg, 1)
                            assert sub == 7
                            seen["annotations"] = decode_protobuf(channels["/face_landmarks/annotations"], msg[13:])
            except Exception as exc:  # reported by the assertions below
                seen["error"] = repr(exc)
            done.set()  # disconnected

        class ViewerJoinsAtFrame5:
            """A sink before the live one: at frame 5 a viewer connects, and the run waits until it
            has subscribed (in the consumer, so the frame source never stalls)."""

            def write(self, result, frame):
                if result.index == 5:
                    threading.Thread(target=viewer, daemon=True).start()
                    deadline = time.monotonic() + 60
                    while not sink.annotations.has_sinks() and not done.is_set() and time.monotonic() < deadline:
                        time.sleep(0.02)
                return True

            def close(self, keep=True):
                pass

        with_viewer = [len(r.faces) for r in p.stream(frames, sinks=[ViewerJoinsAtFrame5(), sink])]
    assert done.wait(30) and "error" not in seen, seen.get("error")
    assert set(seen["channels"]) == {"/camera/image/compressed", "/face_landmarks/annotations", "/shfan/stats"}
    assert seen["channels"]["/camera/image/compressed"]["schemaName"] == "foxglove.CompressedImage"
    points = [a for a in seen["annotations"].points if len(a.points) == 68]
    assert len(points) == 1 and seen["serverInfo"]["name"] == "shfan"
    assert with_viewer == alone and len(alone) == 40 and sink.server is None  # closed with the stream


def raw_subscriber(port, channel_ids) -> socket.socket:
    """A client that does the WebSocket handshake, subscribes, and then never reads again."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
               "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    body = json.dumps({"op": "subscribe", "subscriptions": [{"id": i, "channelId": c}
                                                            for i, c in enumerate(channel_ids)]}).encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(body)) if len(body) >= 126 else bytes([0x81, 0x80 | len(body)])
    s.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
    return s


def test_a_viewer_that_never_reads_leaves_memory_bounded(tiny_onnx):

    from shfan.runtime.pipeline import Pipeline
    from shfan.runtime.sinks.foxglove_live import FoxgloveLiveSink, FoxgloveSettings

    if not YUNET.is_file():
        pytest.skip("shared YuNet model not present")
    sink = FoxgloveLiveSink("127.0.0.1", 0, FoxgloveSettings(foxglove_jpeg_quality=100))
    client = raw_subscriber(sink.port, [sink.image.id(), sink.annotations.id(), sink.stats.id()])
    deadline = time.monotonic() + 10
    while not sink.image.has_sinks() and time.monotonic() < deadline:
        time.sleep(0.05)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)  # ~0.7 MB as JPEG q100
    rss = {}

    def frames(n=160):
        for i in range(n):
            if i in (20, n - 1):
                rss[i] = rss_mb()
            yield np.roll(noise, i, axis=1)

    try:
        with Pipeline(tiny_onnx, "onnxruntime", detector_model=YUNET) as p:
            count = sum(1 for _ in p.stream(frames(), sinks=[sink]))
    finally:
        client.close()
    grown = rss[159] - rss[20]
    print(f"\nnever-reading viewer: {sink.sent_bytes / 1e6:.0f} MB of images offered, RSS grew {grown:.1f} MB")
    assert count == 160 and sink.sent == 160 and sink.sent_bytes > 80e6
    assert grown < 40  # the server kept at most foxglove_backlog messages for the client


def test_bad_foxglove_options_are_one_line(tiny_onnx, tmp_path):
    from shfan.cli.run import main

    base = ["--headless", "-q", "--max-frames", "2", "--model", tiny_onnx, "--detector-model", YUNET]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for extra, code, words in ((["--foxglove", "abc"], 2, ["--foxglove", "HOST:PORT"]),
                                   (["--foxglove", "70000"], 2, ["--foxglove", "0 to 65535"]),
                                   (["--foxglove", ":80"], 2, "empty host"),
                                   (["--foxglove", f"127.0.0.1:{busy.getsockname()[1]}"], 1, "cannot serve there"),
                                   (["--foxglove", "0", "--foxglove-backlog", "0"], 2, "--foxglove-backlog")):
            got, _, err = run_main(main, [*base, *extra])
            assert_one_line_error(got, err, code, words)
    finally:
        busy.close()
    got, _, err = run_main(main, [*base, "--foxglove", "127.0.0.1:0"])  # no viewer: runs as without
    assert got == 0, err
