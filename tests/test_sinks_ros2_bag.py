"""shfan-run --ros2-bag (#27): a rosbag2 folder written with mcap-ros2-support and read back with a
second, independent library (rosbags, which parses metadata.yaml as rosbag2 does and decodes CDR
with its own ROS 2 Humble type store): topics, types, QoS, message counts, the JPEG images, and
landmark coordinates equal to the JSON Lines of the same run."""

import json
import sys

import numpy as np
import pytest

from conftest import SHARED, YUNET, assert_one_line_error, fake_result, files_under, run_main

pytest.importorskip("mcap_ros2.writer")
rosbag2 = pytest.importorskip("rosbags.rosbag2")
typesys = pytest.importorskip("rosbags.typesys")

VIDEO = SHARED / "data" / "videos" / "single_face.mp4"  # 72 frames, 640 x 360, one face
TYPES = {"/camera/image/compressed": "sensor_msgs/msg/CompressedImage",
         "/face_landmarks/markers": "visualization_msgs/msg/ImageMarker",
         "/face_landmarks/array": "std_msgs/msg/Float32MultiArray"}


def read_bag(path):
    """[(topic, log time, decoded message)] in file order, and the connections, read with rosbags."""
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    with rosbag2.Reader(path) as reader:
        connections = {c.topic: c for c in reader.connections}
        messages = [(c.topic, t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]
        assert reader.message_count == len(messages)
    return messages, connections



@pytest.fixture(scope="module")
def recorded(default_model, tmp_path_factory):
    from shfan.cli.run import main

    tmp = tmp_path_factory.mktemp("bag")
    code, _, err = run_main(main, ["--source", VIDEO, "--headless", "-q", "--detector-model", YUNET,
                                   "--ros2-bag", tmp / "run", "--jsonl", tmp / "run.jsonl"])
    assert code == 0, err
    records = [json.loads(line) for line in (tmp / "run.jsonl").read_text().splitlines()]
    return tmp, records, read_bag(tmp / "run")


def test_bag_folder_is_what_ros2_bag_play_reads(recorded):
    tmp, records, (messages, connections) = recorded
    assert files_under(tmp) == {"run", "run/metadata.yaml", "run/run_0.mcap", "run.jsonl"}
    assert {t: c.msgtype for t, c in connections.items()} == TYPES
    for c in connections.values():
        (qos,) = c.ext.offered_qos_profiles
        assert c.ext.serialization_format == "cdr" and qos.reliability.name == "RELIABLE"
        assert qos.durability.name == "VOLATILE" and qos.history.name == "KEEP_LAST" and qos.depth == 10
    by_topic = {t: [m for topic, _, m in messages if topic == t] for t in TYPES}
    assert len(by_topic["/camera/image/compressed"]) == len(by_topic["/face_landmarks/array"]) == len(records) == 72
    stamps = [t for _, t, _ in messages]
    assert stamps == sorted(stamps)
    for image in by_topic["/camera/image/compressed"][:3]:
        import cv2

        decoded = cv2.imdecode(np.asarray(image.data, np.uint8), cv2.IMREAD_COLOR)
        assert image.format == "jpeg" and image.header.frame_id == "camera" and decoded.shape == (360, 640, 3)


def test_bag_landmarks_equal_the_json_lines(recorded):
    _, records, (messages, _) = recorded
    arrays = [m for topic, _, m in messages if topic == "/face_landmarks/array"]
    assert sum(len(r["faces"]) for r in records) >= 70  # the comparison below is not empty
    for record, array in zip(records, arrays):
        faces, fields = array.layout.dim
        assert faces.label == "faces" and faces.size == len(record["faces"]) and fields.size == 142
        rows = np.asarray(array.data, np.float64).reshape(faces.size, fields.size)
        for row, face in zip(rows, record["faces"]):
            assert row[0] == face["id"] and abs(row[1] - face["score"]) < 1e-4
            assert np.abs(row[2:6] - face["box"]).max() <= 1e-3
            assert np.abs(row[6:].reshape(68, 2) - np.array(face["points"])).max() <= 1e-3
    # markers: per frame a POINTS and a POLYGON per face, at the same stamp as the frame's image
    stamps = {t for topic, t, _ in messages if topic == "/camera/image/compressed"}
    markers = [(t, m) for topic, t, m in messages if topic == "/face_landmarks/markers"]
    assert all(t in stamps for t, _ in markers)
    frame_of = {t: i for i, t in enumerate(sorted(stamps))}
    for t, m in markers:
        faces = {f["id"]: f for f in records[frame_of[t]]["faces"]}
        if m.action == 0:  # ADD
            face = faces[m.id]
            got = np.array([[p.x, p.y] for p in m.points])
            want = np.array(face["points"]) if m.ns == "shfan/points" else None
            if m.type == 4:
                assert m.ns == "shfan/points" and np.abs(got - want).max() <= 1e-3
            else:
                assert m.type == 3 and m.ns == "shfan/box" and len(got) == 4
        else:  # REMOVE: only for a face that is not in this frame
            assert m.action == 1 and m.id not in faces


def test_faces_that_leave_get_remove_markers_and_discarded_bags_leave_nothing(tmp_path):
    from shfan.runtime.sinks import FrameView, SinkSet
    from shfan.runtime.sinks.ros2_bag import Ros2BagSink

    outs = SinkSet([Ros2BagSink(tmp_path / "b")])
    for i, n in enumerate((2, 1, 0)):
        outs.write(fake_result(i, n))
    assert outs.close(keep=True) == []
    messages, _ = read_bag(tmp_path / "b")
    markers = [(m.ns, m.id, m.action) for topic, _, m in messages if topic == "/face_landmarks/markers"]
    assert markers == [("shfan/points", 0, 0), ("shfan/box", 0, 0), ("shfan/points", 1, 0), ("shfan/box", 1, 0),
                       ("shfan/points", 0, 0), ("shfan/box", 0, 0), ("shfan/points", 1, 1), ("shfan/box", 1, 1),
                       ("shfan/points", 0, 1), ("shfan/box", 0, 1)]
    arrays = [m for topic, _, m in messages if topic == "/face_landmarks/array"]
    assert [a.layout.dim[0].size for a in arrays] == [2, 1, 0] and len(arrays[2].data) == 0
    sink = Ros2BagSink(tmp_path / "c")
    sink.write(fake_result(0, 1), FrameView(fake_result(0, 1)))
    sink.close(keep=False)
    assert files_under(tmp_path) == {"b", "b/b_0.mcap", "b/metadata.yaml"}


def test_bad_bag_folders_are_one_line_and_stale_partials_go(tmp_path, tiny_onnx, monkeypatch):
    from shfan.cli.run import main

    base = ["--headless", "-q", "--max-frames", "2", "--model", tiny_onnx, "--detector-model", YUNET]
    (tmp_path / "old").mkdir()
    (tmp_path / "file").write_text("x")
    for extra, code, words in ((["--ros2-bag", tmp_path / "old"], 1, ["already exists", "new name"]),
                               (["--ros2-bag", tmp_path / "file"], 2, "is a file"),
                               (["--ros2-bag", tmp_path / "a" / "b"], 1, "does not exist"),
                               (["--ros2-bag", tmp_path / "q", "--ros2-jpeg-quality", "0"], 2, "--ros2-jpeg-quality")):
        got, _, err = run_main(main, [*base, *extra])
        assert_one_line_error(got, err, code, words)
    monkeypatch.setitem(sys.modules, "mcap_ros2", None)  # not installed
    got, _, err = run_main(main, [*base, "--ros2-bag", tmp_path / "m"])
    assert_one_line_error(got, err, 1, ["--ros2-bag needs the mcap_ros2 package", "shfan[robotics]"])
    monkeypatch.undo()
    (tmp_path / ".new.999999999.partial").mkdir()  # a killed writer's folder (no such pid)
    got, _, err = run_main(main, [*base, "--ros2-bag", tmp_path / "new"])
    assert got == 0, err
    assert files_under(tmp_path) == {"old", "file", "new", "new/metadata.yaml", "new/new_0.mcap"}
