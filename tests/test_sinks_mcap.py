"""shfan-run --mcap (#27): a real shared video recorded to MCAP, read back with the `mcap` reader,
every message decoded and checked against the JSON Lines of the same run; whole-or-nothing files
(SIGTERM finishes it, SIGKILL leaves none); one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import SHARED, YUNET, assert_one_line_error, files_under, run_main

mcap_reader = pytest.importorskip("mcap.reader")
pytest.importorskip("foxglove")
protobuf_decoder = pytest.importorskip("mcap_protobuf.decoder")
from mcap.decoder import DecoderFactory  # noqa: E402

VIDEO = SHARED / "data" / "videos" / "single_face.mp4"  # 72 frames, 640 x 360, one face
LONG_VIDEO = SHARED / "data" / "videos" / "franck.webm"  # 4998 frames


class JsonDecoder(DecoderFactory):
    def decoder_for(self, message_encoding, schema):
        return json.loads if message_encoding == "json" else None


def read_mcap(path):
    """{topic: [decoded messages]}, {topic: schema name}, and the file's summary."""
    topics, schemas = {}, {}
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[protobuf_decoder.DecoderFactory(), JsonDecoder()])
        for schema, channel, _, decoded in reader.iter_decoded_messages(log_time_order=True):
            topics.setdefault(channel.topic, []).append(decoded)
            schemas[channel.topic] = (schema.name, channel.message_encoding)
        summary = reader.get_summary()
    return topics, schemas, summary


def faces_of(annotations):
    """{track id: (68 points from the POINTS annotation, the 68 points put together from the parts,
    the box corners)} from one decoded foxglove.ImageAnnotations."""
    faces = {}
    for a in annotations.points:
        meta = {kv.key: kv.value for kv in a.metadata}
        face = faces.setdefault(int(meta["face"]), {"parts": []})
        xy = [(p.x, p.y) for p in a.points]
        if meta["part"] == "points":
            face["points"] = np.array(xy)
        elif meta["part"] == "box":
            face["box"] = np.array(xy)
        else:
            face["parts"].extend(xy)
    return {k: (v["points"], np.array(v["parts"]), v["box"]) for k, v in faces.items()}



def run_args(*extra):
    return ["--source", VIDEO, "--headless", "--quiet", "--detector-model", YUNET, *extra]


@pytest.fixture(scope="module")
def recorded(default_model, tmp_path_factory):
    from shfan.cli.run import main

    tmp = tmp_path_factory.mktemp("mcap")
    code, _, err = run_main(main, run_args("--mcap", tmp / "run.mcap", "--jsonl", tmp / "run.jsonl"))
    assert code == 0, err
    records = [json.loads(line) for line in (tmp / "run.jsonl").read_text().splitlines()]
    return tmp, records, read_mcap(tmp / "run.mcap")


def test_mcap_of_a_real_video_equals_its_json_lines(recorded):
    tmp, records, (topics, schemas, summary) = recorded
    assert files_under(tmp) == {"run.mcap", "run.jsonl"}  # no partial file left
    assert len(records) == 72
    assert schemas == {"/camera/image/compressed": ("foxglove.CompressedImage", "protobuf"),
                       "/face_landmarks/annotations": ("foxglove.ImageAnnotations", "protobuf"),
                       "/shfan/stats": ("shfan.FrameStats", "json")}
    assert {t: len(m) for t, m in topics.items()} == {t: 72 for t in schemas}
    assert summary.statistics.message_count == 3 * 72  # the index written at close
    assert [s["frame"] for s in topics["/shfan/stats"]] == [r["frame"] for r in records]
    assert [s["faces"] for s in topics["/shfan/stats"]] == [len(r["faces"]) for r in records]
    assert sum(len(r["faces"]) for r in records) >= 70  # the face is found: the comparison below is not empty
    for record, annotations in zip(records, topics["/face_landmarks/annotations"]):
        got = faces_of(annotations)
        assert sorted(got) == sorted(f["id"] for f in record["faces"])
        for face in record["faces"]:
            points, parts, box = got[face["id"]]
            assert np.abs(points - np.array(face["points"])).max() <= 1e-3
            assert np.abs(parts - np.array(face["points"])).max() <= 1e-3  # the 300-W parts hold all 68, in order
            x0, y0, x1, y1 = face["box"]
            assert np.abs(box - [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]).max() <= 1e-3
        assert len(annotations.texts) == len(record["faces"])


def test_mcap_images_are_the_video_frames(recorded):
    import cv2

    _, _, (topics, _, _) = recorded
    images = topics["/camera/image/compressed"]
    first = cv2.imdecode(np.frombuffer(images[0].data, np.uint8), cv2.IMREAD_COLOR)
    cap = cv2.VideoCapture(str(VIDEO))
    ok, frame = cap.read()
    cap.release()
    assert ok and images[0].format == "jpeg" and images[0].frame_id == "camera"
    assert first.shape == frame.shape and np.abs(first.astype(int) - frame).mean() < 4  # JPEG q85 of the frame
    stamps = [m.timestamp.seconds * 10**9 + m.timestamp.nanos for m in images]
    assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000 * 10**9  # wall-clock nanoseconds


def test_mcap_image_rate_and_quality(default_model, tmp_path):
    from shfan.cli.run import main

    code, _, err = run_main(main, run_args("--max-frames", "9", "--mcap", tmp_path / "a.mcap",
                                           "--mcap-image-every", "3", "--mcap-jpeg-quality", "20"))
    assert code == 0, err
    topics, _, _ = read_mcap(tmp_path / "a.mcap")
    assert len(topics["/camera/image/compressed"]) == 3 and len(topics["/face_landmarks/annotations"]) == 9
    small = len(topics["/camera/image/compressed"][0].data)
    code, _, err = run_main(main, run_args("--max-frames", "1", "--mcap", tmp_path / "b.mcap"))
    assert code == 0, err
    assert small < 0.6 * len(read_mcap(tmp_path / "b.mcap")[0]["/camera/image/compressed"][0].data)


def test_sigterm_finishes_the_mcap_with_the_frames_so_far(default_model, tmp_path, monkeypatch):
    from shfan.cli import run as cli
    from shfan.runtime import outputs

    real_write = outputs.JsonlSink.write

    def write_then_terminate(self, result):
        real_write(self, result)
        if result.index == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(outputs.JsonlSink, "write", write_then_terminate)
    code, _, err = run_main(cli.main, run_args("--mcap", tmp_path / "t.mcap", "--jsonl", tmp_path / "t.jsonl"))
    assert_one_line_error(code, err, 130, ["interrupted", "5 frames"])
    topics, _, summary = read_mcap(tmp_path / "t.mcap")
    assert [s["frame"] for s in topics["/shfan/stats"]] == [0, 1, 2, 3, 4] and summary is not None
    assert files_under(tmp_path) == {"t.mcap", "t.jsonl"}


def read_partial(path, seeking: bool, log_time_order: bool) -> tuple[int, str]:
    """(messages a reader gets from a file, the error that stopped it or '')."""
    n = 0
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f) if seeking else mcap_reader.NonSeekingReader(f)
        try:
            for _ in reader.iter_messages(log_time_order=log_time_order):
                n += 1
        except Exception as exc:  # what a reader gets is the point here
            return n, type(exc).__name__
    return n, ""


@pytest.mark.slow
def test_killed_writer_leaves_no_file_and_the_next_run_cleans_up(default_model, tmp_path):
    """SIGKILL mid-run: no file at the target (never one that crashes a reader); the partial file
    beside it holds whole chunks up to the cut; the next run removes it and writes a whole file."""
    if not LONG_VIDEO.is_file():
        pytest.skip("franck.webm not present")
    out = tmp_path / "k.mcap"
    argv = [sys.executable, "-m", "shfan.cli.run", "--source", LONG_VIDEO, "--headless", "-q",
            "--detector-model", YUNET, "--mcap", out]
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    partial = []
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial.mcap")]
        if partial and partial[0].stat().st_size > 3 << 20:  # a few chunks written
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not out.exists() and len(partial) == 1 and partial[0].name == f".k.{proc.pid}.partial.mcap"
    got = {(seeking, ordered): read_partial(partial[0], seeking, ordered) for seeking in (True, False)
           for ordered in (True, False)}
    print(f"\nkilled writer's partial file ({partial[0].stat().st_size} bytes), (seeking, log_time_order): "
          f"(messages, error): {got}")
    n, error = got[False, False]  # streamed in file order: whole chunks up to the cut, then an error
    assert n >= 3 * 30 and error == "EndOfFile"
    assert got[False, True] == (0, "EndOfFile")  # sorting by log time reads to the end first: nothing
    assert got[True, False][0] == 0 and got[True, False][1]  # make_reader looks for the footer: an error at once
    code, _, err = run_main(__import__("shfan.cli.run", fromlist=["main"]).main,
                            run_args("--max-frames", "2", "--mcap", out))
    assert code == 0, err
    assert files_under(tmp_path) == {"k.mcap"}  # the dead writer's partial file is gone
    assert len(read_mcap(out)[0]["/shfan/stats"]) == 2


def test_pipeline_stream_writes_sinks(default_model, tmp_path):
    from shfan.runtime.pipeline import Pipeline
    from shfan.runtime.sinks.mcap_file import McapSettings, McapSink

    with Pipeline(default_model, "onnxruntime", detector_model=YUNET) as p:
        sink = McapSink(tmp_path / "api.mcap", McapSettings(mcap_jpeg_quality=70))
        results = list(p.stream(str(VIDEO), max_frames=4, sinks=[sink]))
    topics, _, _ = read_mcap(tmp_path / "api.mcap")
    assert len(results) == 4 and len(topics["/face_landmarks/annotations"]) == 4
    pts = faces_of(topics["/face_landmarks/annotations"][3])[results[3].faces[0].track_id][0]
    assert np.abs(pts - results[3].faces[0].points).max() <= 1e-3


def test_bad_mcap_options_are_one_line(tmp_path, tiny_onnx, monkeypatch):
    from shfan.cli.run import main

    base = ["--headless", "-q", "--max-frames", "2", "--model", tiny_onnx, "--detector-model", YUNET]
    (tmp_path / "dir.mcap").mkdir()
    for extra, code, words in ((["--mcap", tmp_path / "dir.mcap"], 2, "is a folder"),
                               (["--mcap", tmp_path / "no" / "x.mcap"], 2, "does not exist"),
                               (["--mcap", tmp_path / "q.mcap", "--mcap-jpeg-quality", "101"], 2,
                                "--mcap-jpeg-quality: expected a JPEG quality from 1 to 100, got 101"),
                               (["--mcap", tmp_path / "e.mcap", "--mcap-image-every", "0"], 2, "--mcap-image-every")):
        got, _, err = run_main(main, [*base, *extra])
        assert_one_line_error(got, err, code, words)
    monkeypatch.setitem(sys.modules, "mcap", None)  # not installed
    got, _, err = run_main(main, [*base, "--mcap", tmp_path / "m.mcap"])
    assert_one_line_error(got, err, 1, ["--mcap needs the mcap package", "shfan[robotics]"])
    assert files_under(tmp_path) == {"dir.mcap"}


def test_sink_settings_refuse_in_python_what_their_options_refuse():
    from shfan.errors import OutputError
    from shfan.runtime.sinks.foxglove_live import FoxgloveSettings
    from shfan.runtime.sinks.mcap_file import McapSettings
    from shfan.runtime.sinks.ros2_bag import Ros2BagSettings

    for make, words in ((lambda: McapSettings(mcap_jpeg_quality=101), "expected a JPEG quality from 1 to 100, got 101"),
                        (lambda: Ros2BagSettings(ros2_image_every=0), "expected a whole number >= 1, got 0"),
                        (lambda: FoxgloveSettings(foxglove_jpeg_quality=0), "foxglove_jpeg_quality: expected a JPEG")):
        with pytest.raises(OutputError, match=words):
            make()
