"""--ros2-bag DIR: the run as a rosbag2 folder (MCAP storage + metadata.yaml) that `ros2 bag play DIR`
replays on a robot, written without a ROS install (mcap-ros2-support's CDR encoder). Topics, types
and stamps: sinks.ros2_messages; QoS: QOS below.

Whole or nothing: the folder is built as `.DIR.<pid>.partial` beside DIR and renamed onto DIR in
close(), after the MCAP summary and metadata.yaml are written; DIR must not exist yet (as for
`ros2 bag record -o`). A killed writer's partial folder is removed by the next run for the same DIR.

metadata.yaml is rosbag2's version 5 (what ROS 2 Humble, JetPack 6's Ubuntu 22.04, writes and
reads; later distributions read it too), storage_identifier mcap.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shfan import atomic, io
from shfan.errors import OutputError
from shfan.options import option
from shfan.runtime.sinks import Sink, SinkSettings, SinkSpec, register, require
from shfan.runtime.sinks import ros2_messages as rm

METADATA_VERSION = 5
# Offered QoS of every topic: reliable, volatile, keep last 10; a reliable publisher serves both
# reliable and best-effort subscribers, so `ros2 bag play` reaches image_transport and
# sensor-data (best-effort) nodes alike. Deadline/lifespan/lease: infinite (rosbag2's encoding).
QOS = {"history": 1, "depth": 10, "reliability": 1, "durability": 2,
       "deadline": {"sec": 9223372036, "nsec": 854775807}, "lifespan": {"sec": 9223372036, "nsec": 854775807},
       "liveliness": 1, "liveliness_lease_duration": {"sec": 9223372036, "nsec": 854775807},
       "avoid_ros_namespace_conventions": False}


@dataclass
class Ros2BagSettings(SinkSettings):
    ros2_jpeg_quality: int = option(85, "JPEG quality of the images in --ros2-bag (1-100; default 85)", "quality",
                                    metavar="Q")
    ros2_image_every: int = option(1, "store the camera image of every Nth frame in --ros2-bag (landmarks of "
                                      "every frame; default 1)", "positive", metavar="N")


def qos_yaml() -> str:
    """QOS as rosbag2 (< version 9) stores it: a YAML list in a string."""
    lines = ["- history: 1"]
    for key, value in list(QOS.items())[1:]:
        if isinstance(value, dict):
            lines += [f"  {key}:", f"    sec: {value['sec']}", f"    nsec: {value['nsec']}"]
        else:
            lines.append(f"  {key}: {json.dumps(value)}")
    return "\n".join(lines)


def metadata_yaml(file_name: str, counts: dict[str, int], start_ns: int, end_ns: int) -> str:
    """rosbag2's metadata.yaml (version 5) for one MCAP file holding `counts` messages per topic."""
    total, duration = sum(counts.values()), max(0, end_ns - start_ns)
    topics = "".join(
        f"    - topic_metadata:\n        name: {topic}\n        type: {rm.TOPICS[topic]}\n"
        f"        serialization_format: cdr\n        offered_qos_profiles: {json.dumps(qos_yaml())}\n"
        f"      message_count: {n}\n" for topic, n in counts.items())
    return (f"rosbag2_bagfile_information:\n  version: {METADATA_VERSION}\n  storage_identifier: mcap\n"
            f"  duration:\n    nanoseconds: {duration}\n  starting_time:\n    nanoseconds_since_epoch: {start_ns}\n"
            f"  message_count: {total}\n  topics_with_message_count:\n{topics}"
            f"  compression_format: \"\"\n  compression_mode: \"\"\n"
            f"  relative_file_paths:\n    - {file_name}\n"
            f"  files:\n    - path: {file_name}\n      starting_time:\n        nanoseconds_since_epoch: {start_ns}\n"
            f"      duration:\n        nanoseconds: {duration}\n      message_count: {total}\n")


def register_channel(writer, topic: str, schema_id: int, metadata: dict[str, str]) -> None:
    """A channel with rosbag2's channel metadata (its offered QoS, as `ros2 bag record` writes it;
    readers such as rosbags match it against metadata.yaml). mcap-ros2-support's Writer registers
    channels without metadata, so its channel is made here first, on the MCAP writer under it
    (mcap-ros2-support 0.6: `_writer`, `_channel_ids`; pinned < 0.7, tests/test_sinks_ros2_bag.py)."""
    cid = writer._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema_id, metadata=metadata)
    writer._channel_ids[topic] = cid


def partial_dir(path: Path, pid: int) -> Path:
    return path.parent / f".{atomic.safe_stem(path.name)}.{pid}.partial"


def remove_stale_partial_dirs(path: Path) -> None:
    """Partial folders beside `path` (partial_dir) of processes that are gone."""
    stem = atomic.safe_stem(path.name)
    for p in path.parent.glob(f".{stem}.*.partial"):
        pid = p.name[len(stem) + 2:-len(".partial")]
        if p.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not io.pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


class Ros2BagSink(Sink):
    """Each frame's image, landmark markers and landmark array as ROS 2 messages in a bag folder."""

    def __init__(self, path, settings: Ros2BagSettings | None = None, chunk_size: int = 1 << 20):
        require("mcap_ros2", "--ros2-bag")
        self.path = Path(path)
        self.label = f"--ros2-bag {path}"
        self.settings = settings or Ros2BagSettings()
        if self.path.exists():
            raise OutputError(f"{self.path}: already exists; --ros2-bag writes a new folder (as ros2 bag record "
                              "does): give a new name")
        if len(os.fsencode(self.path.name)) > atomic.NAME_MAX:
            raise OutputError(f"{self.path}: folder name too long")
        parent = self.path.parent
        if not parent.is_dir():
            raise OutputError(f"{self.path}: folder {parent} does not exist; create it first")
        if not atomic.can_create_in(parent):
            raise OutputError(f"{self.path}: cannot write in {parent} (read-only or no permission)")
        remove_stale_partial_dirs(self.path)
        self.tmp = partial_dir(self.path, os.getpid())
        self.file_name = f"{atomic.safe_stem(self.path.name)}_0.mcap"
        self.chunk_size = chunk_size
        self.file = self.writer = None
        self.schemas = {}
        self.counts = {topic: 0 for topic in rm.TOPICS}
        self.first_ns = self.last_ns = 0
        self.previous_ids: set[int] = set()
        self.frames = 0

    def _open(self):
        from mcap.writer import CompressionType
        from mcap_ros2.writer import Writer

        try:
            self.tmp.mkdir()
            self.file = open(self.tmp / self.file_name, "wb")
        except OSError as exc:
            self._discard()
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from None
        self.writer = Writer(self.file, chunk_size=self.chunk_size, compression=CompressionType.LZ4)
        self.schemas = {topic: self.writer.register_msgdef(kind, rm.MSGDEFS[kind]) for topic, kind in rm.TOPICS.items()}
        for topic, schema in self.schemas.items():
            register_channel(self.writer, topic, schema.id, {"offered_qos_profiles": qos_yaml()})

    def _put(self, topic: str, message: dict, stamp_ns: int):
        self.writer.write_message(topic, self.schemas[topic], message, log_time=stamp_ns, publish_time=stamp_ns,
                                  sequence=self.counts[topic])
        self.counts[topic] += 1

    def write(self, result, frame) -> bool:
        ns = frame.stamp_ns
        try:
            if self.writer is None:
                self._open()
                self.first_ns = ns
            if self.frames % self.settings.ros2_image_every == 0:
                self._put(rm.TOPIC_IMAGE, rm.image(frame.jpeg(self.settings.ros2_jpeg_quality), ns), ns)
            for marker in rm.markers(result.faces, ns, self.previous_ids):
                self._put(rm.TOPIC_MARKERS, marker, ns)
            self._put(rm.TOPIC_ARRAY, rm.landmark_array(result.faces), ns)
        except OSError as exc:
            self._discard()
            raise OutputError.write_failed(self.path, exc) from None
        self.previous_ids = {f.track_id for f in result.faces}
        self.last_ns = ns
        self.frames += 1
        return True

    def close(self, keep: bool = True) -> None:
        """Finish the MCAP file, write metadata.yaml and rename the folder onto DIR (keep=False, or
        no frame: nothing)."""
        if self.writer is None or not (keep and self.frames):
            self._discard()
            return
        try:
            self.writer.finish()
            atomic.flush_to_disk(self.file)
            self.file.close()
            self.writer = self.file = None
            text = metadata_yaml(self.file_name, self.counts, self.first_ns, self.last_ns)
            with open(self.tmp / "metadata.yaml", "w", encoding="utf-8") as f:
                f.write(text)
                atomic.flush_to_disk(f)
            os.rename(self.tmp, self.path)  # fails (nothing replaced) if DIR appeared meanwhile
        except OSError as exc:
            self._discard()
            raise OutputError.write_failed(self.path, exc) from None

    def _discard(self):
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        self.writer = self.file = None
        shutil.rmtree(self.tmp, ignore_errors=True)


register(SinkSpec("ros2_bag", "--ros2-bag", "record the run as a ROS 2 bag folder (MCAP storage, metadata.yaml) "
                  "that ros2 bag play replays: sensor_msgs/CompressedImage on /camera/image/compressed, "
                  "landmarks as visualization_msgs/ImageMarker and std_msgs/Float32MultiArray (README)", "dir",
                  lambda value, settings: Ros2BagSink(value, settings), metavar="DIR", settings=Ros2BagSettings,
                  library="mcap_ros2", extra="robotics"))
