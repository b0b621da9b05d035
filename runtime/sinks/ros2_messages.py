"""One frame as ROS 2 messages (plain dicts for mcap-ros2-support's CDR encoder), and their message
definitions as `ros2 bag record` stores them (the .msg text with its dependencies), so that a bag
replays on a robot with only the standard message packages installed:

    /camera/image/compressed   sensor_msgs/msg/CompressedImage      JPEG, header.frame_id "camera"
    /face_landmarks/markers    visualization_msgs/msg/ImageMarker   for drawing (rqt_image_overlay,
                               Foxglove): per face a POINTS marker (ns "shfan/points") with its 68
                               points and a POLYGON (ns "shfan/box"), id = the face's track id;
                               a REMOVE for each face that was there in the previous frame and is not
    /face_landmarks/array      std_msgs/msg/Float32MultiArray       machine-readable: dim[0] "faces"
                               (N), dim[1] "track_id,score,box(x0,y0,x1,y1),points(x,y)*K" (142 for 68 points); per face
                               its track id, mean score, box, then the 68 (x, y) points

Every message of a frame carries the same stamp (header.stamp, and the bag's receive time); the
array has no header, so match it to the image by that time (message_filters' ApproximateTime does).
Coordinates are continuous image pixels (origin at the top-left corner of the top-left pixel; a
pixel's centre is at +0.5), as in shfan's JSON Lines.
"""

from __future__ import annotations

TOPIC_IMAGE = "/camera/image/compressed"
TOPIC_MARKERS = "/face_landmarks/markers"
TOPIC_ARRAY = "/face_landmarks/array"
FRAME_ID = "camera"
ARRAY_FIELDS = "track_id,score,box(x0,y0,x1,y1),points(x,y)*K"
ARRAY_STRIDE = 2 + 4 + 2 * 68

_SEP = "\n" + "=" * 80 + "\n"
_HEADER = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id"
_TIME = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec"

MSGDEFS = {
    "sensor_msgs/msg/CompressedImage": _SEP.join([
        "std_msgs/Header header\nstring format\nuint8[] data", _HEADER, _TIME]),
    "visualization_msgs/msg/ImageMarker": _SEP.join([
        "int32 CIRCLE=0\nint32 LINE_STRIP=1\nint32 LINE_LIST=2\nint32 POLYGON=3\nint32 POINTS=4\n"
        "int32 ADD=0\nint32 REMOVE=1\nstd_msgs/Header header\nstring ns\nint32 id\nint32 type\nint32 action\n"
        "geometry_msgs/Point position\nfloat32 scale\nstd_msgs/ColorRGBA outline_color\nuint8 filled\n"
        "std_msgs/ColorRGBA fill_color\nbuiltin_interfaces/Duration lifetime\ngeometry_msgs/Point[] points\n"
        "std_msgs/ColorRGBA[] outline_colors",
        _HEADER, _TIME, "MSG: geometry_msgs/Point\nfloat64 x\nfloat64 y\nfloat64 z",
        "MSG: std_msgs/ColorRGBA\nfloat32 r\nfloat32 g\nfloat32 b\nfloat32 a",
        "MSG: builtin_interfaces/Duration\nint32 sec\nuint32 nanosec"]),
    "std_msgs/msg/Float32MultiArray": _SEP.join([
        "std_msgs/MultiArrayLayout layout\nfloat32[] data",
        "MSG: std_msgs/MultiArrayLayout\nstd_msgs/MultiArrayDimension[] dim\nuint32 data_offset",
        "MSG: std_msgs/MultiArrayDimension\nstring label\nuint32 size\nuint32 stride"]),
}
TOPICS = {TOPIC_IMAGE: "sensor_msgs/msg/CompressedImage", TOPIC_MARKERS: "visualization_msgs/msg/ImageMarker",
          TOPIC_ARRAY: "std_msgs/msg/Float32MultiArray"}

POINTS, POLYGON, ADD, REMOVE = 4, 3, 0, 1
GREEN = {"r": 0.0, "g": 1.0, "b": 0.0, "a": 1.0}
ORANGE = {"r": 1.0, "g": 0.63, "b": 0.0, "a": 1.0}
CLEAR = {"r": 0.0, "g": 0.0, "b": 0.0, "a": 0.0}


def header(stamp_ns: int) -> dict:
    return {"stamp": {"sec": stamp_ns // 1_000_000_000, "nanosec": stamp_ns % 1_000_000_000}, "frame_id": FRAME_ID}


def image(jpeg: bytes, stamp_ns: int) -> dict:
    return {"header": header(stamp_ns), "format": "jpeg", "data": jpeg}


def _marker(stamp_ns, ns, ident, kind, action, points=(), color=CLEAR, scale=1.0) -> dict:
    return {"header": header(stamp_ns), "ns": ns, "id": int(ident), "type": kind, "action": action,
            "position": {"x": 0.0, "y": 0.0, "z": 0.0}, "scale": float(scale), "outline_color": color,
            "filled": 0, "fill_color": CLEAR, "lifetime": {"sec": 0, "nanosec": 0},
            "points": [{"x": float(x), "y": float(y), "z": 0.0} for x, y in points], "outline_colors": []}


def markers(faces, stamp_ns: int, previous_ids=()) -> list[dict]:
    """ImageMarkers of one frame: points and box per face, REMOVE for faces gone since the last one."""
    out = []
    for face in faces:
        x0, y0, x1, y1 = (float(v) for v in face.box)
        size = max(x1 - x0, y1 - y0, 1.0)
        out.append(_marker(stamp_ns, "shfan/points", face.track_id, POINTS, ADD, face.points, GREEN,
                           max(2.0, 0.025 * size)))
        out.append(_marker(stamp_ns, "shfan/box", face.track_id, POLYGON, ADD,
                           [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], ORANGE, 1.5))
    gone = sorted(set(previous_ids) - {f.track_id for f in faces})
    for ident in gone:
        out += [_marker(stamp_ns, ns, ident, kind, REMOVE) for ns, kind in (("shfan/points", POINTS),
                                                                            ("shfan/box", POLYGON))]
    return out


def landmark_array(faces) -> dict:
    """The machine-readable Float32MultiArray (layout in the module's docstring)."""
    data = []
    for face in faces:
        data += [float(face.track_id), float(face.score), *(float(v) for v in face.box)]
        data += [float(v) for v in face.points.reshape(-1)]
    n, stride = len(faces), (2 + 4 + 2 * (len(faces[0].points) if faces else 68))
    return {"layout": {"dim": [{"label": "faces", "size": n, "stride": n * stride},
                               {"label": ARRAY_FIELDS, "size": stride, "stride": stride}],
                       "data_offset": 0},
            "data": data}
