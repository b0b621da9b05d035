"""One frame as Foxglove messages (foxglove-sdk's schemas, protobuf-encoded), shared by the MCAP
file sink and the live view so that both show exactly the same thing:

    /camera/image/compressed     foxglove.CompressedImage   JPEG of the camera image, frame_id "camera"
    /face_landmarks/annotations  foxglove.ImageAnnotations  per face: its 68 points (POINTS), each
                                 300-W part as a line (LINE_STRIP / LINE_LOOP), the box as a
                                 polygon (LINE_LOOP), the score and track id as text
    /shfan/stats                 shfan.FrameStats (JSON)    frame, faces, detector_ran, scene_cut,
                                                            latency and per-stage timings (ms), fps

Annotation coordinates are shfan's continuous image pixels, which are Foxglove's convention too
(origin at the top-left corner of the top-left pixel). Metadata on each points annotation names the
face ("face": track id) and the part ("part": jaw, ..., "points" for the 68 points), so a reader
finds the numbers without relying on the order.
"""

from __future__ import annotations

import json

from shfan.runtime.sinks.parts import parts

TOPIC_IMAGE = "/camera/image/compressed"
TOPIC_ANNOTATIONS = "/face_landmarks/annotations"
TOPIC_STATS = "/shfan/stats"
FRAME_ID = "camera"

STATS_SCHEMA_NAME = "shfan.FrameStats"
STATS_SCHEMA = {
    "title": STATS_SCHEMA_NAME, "type": "object",
    "properties": {"frame": {"type": "integer"}, "faces": {"type": "integer"},
                   "detector_ran": {"type": "boolean"}, "scene_cut": {"type": "boolean"},
                   "latency_ms": {"type": "number"}, "fps": {"type": "number"},
                   "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}}},
}

POINT_COLOR = (0.0, 1.0, 0.0, 1.0)
LINE_COLOR = (0.0, 0.8, 1.0, 0.8)
BOX_COLOR = (1.0, 0.63, 0.0, 1.0)


def timestamp(stamp_ns: int):
    from foxglove.messages import Timestamp

    return Timestamp(sec=stamp_ns // 1_000_000_000, nsec=stamp_ns % 1_000_000_000)


def _color(rgba):
    from foxglove.messages import Color

    return Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])


def _meta(**items):
    from foxglove.messages import KeyValuePair

    return [KeyValuePair(key=k, value=str(v)) for k, v in items.items()]


def image_message(jpeg: bytes, stamp_ns: int):
    from foxglove.messages import CompressedImage

    return CompressedImage(timestamp=timestamp(stamp_ns), frame_id=FRAME_ID, data=jpeg, format="jpeg")


def annotations_message(faces, stamp_ns: int):
    """foxglove.ImageAnnotations for the faces of one frame (see the module's docstring)."""
    from foxglove.messages import ImageAnnotations, Point2, PointsAnnotation, PointsAnnotationType, TextAnnotation

    ts = timestamp(stamp_ns)
    points, texts = [], []
    for face in faces:
        xy = [Point2(x=float(x), y=float(y)) for x, y in face.points]
        size = max(float(face.box[2] - face.box[0]), float(face.box[3] - face.box[1]), 1.0)
        points.append(PointsAnnotation(timestamp=ts, type=PointsAnnotationType.Points, points=xy,
                                       outline_color=_color(POINT_COLOR), thickness=max(2.0, 0.025 * size),
                                       metadata=_meta(face=face.track_id, part="points")))
        for name, start, end, closed in parts(len(xy)):
            kind = PointsAnnotationType.LineLoop if closed else PointsAnnotationType.LineStrip
            points.append(PointsAnnotation(timestamp=ts, type=kind, points=xy[start:end],
                                           outline_color=_color(LINE_COLOR), thickness=1.0,
                                           metadata=_meta(face=face.track_id, part=name)))
        x0, y0, x1, y1 = (float(v) for v in face.box)
        corners = [Point2(x=x0, y=y0), Point2(x=x1, y=y0), Point2(x=x1, y=y1), Point2(x=x0, y=y1)]
        points.append(PointsAnnotation(timestamp=ts, type=PointsAnnotationType.LineLoop, points=corners,
                                       outline_color=_color(BOX_COLOR), thickness=1.5,
                                       metadata=_meta(face=face.track_id, part="box")))
        texts.append(TextAnnotation(timestamp=ts, position=Point2(x=x0, y=max(12.0, y0 - 4.0)),
                                    text=f"#{face.track_id} {float(face.score):.2f}", font_size=12.0,
                                    text_color=_color(BOX_COLOR), background_color=_color((0.0, 0.0, 0.0, 0.5)),
                                    metadata=_meta(face=face.track_id)))
    return ImageAnnotations(points=points, texts=texts)


def stats_record(result, fps: float | None) -> dict:
    record = {"frame": int(result.index), "faces": len(result.faces), "detector_ran": bool(result.detector_ran),
              "scene_cut": bool(result.scene_cut),
              "latency_ms": round(float(result.timings.get("total", 0.0)), 3),
              "timings_ms": {k: round(float(v), 3) for k, v in result.timings.items()}}
    if fps is not None:
        record["fps"] = round(float(fps), 3)
    return record


def stats_json(result, fps: float | None) -> bytes:
    return json.dumps(stats_record(result, fps), separators=(",", ":")).encode()
