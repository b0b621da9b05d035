"""A small client for shfan-serve's models (tritonclient, HTTP or gRPC).

    from shfan.serve.client import ShfanClient
    with ShfanClient("127.0.0.1:8000") as c:
        faces = c.faces(open("photo.jpg", "rb").read())      # or an RGB uint8 array
        points, scores = c.points(crop_rgb, [x0, y0, x1, y1])  # your detector's box in the crop

A request that failed only because it was batched with a bad one (the server's error says
"send them again") is sent once more.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from shfan.io import Closable

from shfan.serve.server import FACES, FACES_RGB, POINTS, RESEND


@dataclass
class RemoteFace:
    box: np.ndarray  # tight box of the points (x0, y0, x1, y1), image px
    points: np.ndarray  # [K, 2] float32, continuous image px
    scores: np.ndarray  # [K]
    score: float


class ShfanClient(Closable):
    """One connection to shfan-serve. url: host:port of the HTTP (default) or gRPC endpoint.
    Thread-safe for HTTP with concurrency > 1; give each thread its own client otherwise."""

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", timeout_s: float = 60.0,
                 concurrency: int = 1):
        if protocol == "http":
            import tritonclient.http as tc

            self._client = tc.InferenceServerClient(url, concurrency=concurrency, connection_timeout=timeout_s,
                                                    network_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as tc

            self._client = tc.InferenceServerClient(url)
        else:
            raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self._tc, self.protocol, self.timeout_s = tc, protocol, timeout_s

    def close(self):
        self._client.close()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until every shfan model answers ready (TimeoutError after timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if all(self._client.is_model_ready(m) for m in (FACES, FACES_RGB, POINTS)):
                    return
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"shfan-serve not ready after {timeout_s:.0f} s")
            time.sleep(0.5)

    def _input(self, name, array, dtype):
        inp = self._tc.InferInput(name, list(array.shape), dtype)
        if self.protocol == "http":
            inp.set_data_from_numpy(array, binary_data=True)
        else:
            inp.set_data_from_numpy(array)
        return inp

    def infer(self, model: str, inputs: list, outputs: list[str]) -> dict[str, np.ndarray]:
        """One request (raw arrays in, arrays out); resent once when the server says so."""
        requested = [self._tc.InferRequestedOutput(o) for o in outputs]
        for attempt in (0, 1):
            try:
                result = self._client.infer(model, inputs, outputs=requested)
                return {o: result.as_numpy(o) for o in outputs}
            except self._tc.InferenceServerException as exc:
                if attempt or RESEND not in str(exc):
                    raise

    def faces_batch(self, images) -> list[list[RemoteFace]]:
        """Faces of several images in one request: all encoded bytes, or all RGB arrays of one shape."""
        if all(isinstance(i, (bytes, bytearray)) for i in images):
            model, inp = FACES, self._input("image", np.array([[bytes(i)] for i in images], dtype=np.object_), "BYTES")
        else:
            model, inp = FACES_RGB, self._input("image", np.stack([np.asarray(i, np.uint8) for i in images]), "UINT8")
        out = self.infer(model, [inp], ["count", "boxes", "face_scores", "points", "scores"])
        return [[RemoteFace(out["boxes"][b, i], out["points"][b, i], out["scores"][b, i], float(out["face_scores"][b, i]))
                 for i in range(int(out["count"][b, 0]))] for b in range(len(images))]

    def faces(self, image) -> list[RemoteFace]:
        """Faces in one image: encoded bytes (JPEG, PNG, ...) or an RGB uint8 array."""
        return self.faces_batch([image])[0]

    def points(self, image, boxes):
        """(points [N, K, 2], scores [N, K]) of the faces in `boxes` ([x0, y0, x1, y1], a face
        detector's box) in one RGB uint8 image (a frame or a crop)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        image = np.asarray(image, np.uint8)
        images = np.broadcast_to(image, (len(boxes),) + image.shape)
        out = self.infer(POINTS, [self._input("image", np.ascontiguousarray(images), "UINT8"),
                                  self._input("box", boxes, "FP32")], ["points", "scores"])
        return out["points"], out["scores"]


def stream_video(path, url: str = "127.0.0.1:8000", clients: int = 4, max_frames: int | None = None,
                 quality: int = 90) -> list[list[RemoteFace]]:
    """Every frame of a video through shfan-serve from `clients` concurrent clients (frames JPEG
    encoded, each client taking the next unread frame); faces per frame, in frame order."""
    import cv2

    from shfan import io

    with io.library_path(path) as name:  # OpenCV crashes on names that are not UTF-8
        cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        raise OSError(f"{path}: cannot open this video")
    lock = threading.Lock()
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    counter = iter(range(max_frames if max_frames is not None else 1 << 62))

    def next_frame():
        with lock:
            index = next(counter, None)
            ok, frame = cap.read() if index is not None else (False, None)
            return (index, frame) if ok else (None, None)

    def worker():
        try:
            with ShfanClient(url) as client:
                while True:
                    index, frame = next_frame()
                    if index is None:
                        return
                    data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
                    results[index] = client.faces(data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cap.release()
    if errors:
        raise errors[0]
    return [results[i] for i in sorted(results)]
