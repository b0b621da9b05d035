"""shfan on Triton Inference Server through PyTriton (`shfan-serve`).

Three models behind Triton's HTTP (8000) / gRPC (8001) endpoints, Prometheus metrics on 8002:

    shfan_faces      image: BYTES [1] (JPEG, PNG, ... encoded)      -> faces in the image
    shfan_faces_rgb  image: UINT8 [H, W, 3] (RGB)                   -> faces in the image
    shfan_points     image: UINT8 [H, W, 3] + box: FP32 [4]         -> points of the face in the box
                     (a crop or frame, and a face detector's box (x0, y0, x1, y1) in it: for callers
                     with their own detector)

Faces outputs (per image, padded to --max-faces): count INT32 [1], boxes FP32 [F, 4],
face_scores FP32 [F], points FP32 [F, K, 2], scores FP32 [F, K]; rows past `count` are zero.
Points outputs (per box): points FP32 [K, 2], scores FP32 [K]. Points are continuous image
pixels (DESIGN.md §2), exactly what Pipeline.process() returns for the same image.

Triton's dynamic batcher merges concurrent requests (up to --max-batch images, waiting at most
--queue-delay-us); the whole batch then runs through shfan.serve.batching.BatchRunner, so all
faces of all its images reach the network in one call. Triton rejects wrong dtypes and shapes
itself. An image that cannot be decoded, a bad box or an empty request is answered with a Triton
error; PyTriton fails a batch as a whole, so requests that were batched with a bad one get an error
that says to send them again (shfan.serve.client does, once).
"""

from __future__ import annotations

import logging
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shfan.errors import ShfanError
from shfan.io import Service
from shfan.options import check_fields, option, same_option
from shfan.runtime.pipeline import PipelineOptions

log = logging.getLogger("shfan.serve")

FACES, FACES_RGB, POINTS = "shfan_faces", "shfan_faces_rgb", "shfan_points"
RESEND = "send them again"  # in the error of requests that failed only because of another one


class ServeError(ShfanError, ValueError):
    """A batch with a bad request (Triton answers every request of the batch with this text), or
    a server that cannot start (a port in use)."""


def check_ports(host: str, ports) -> None:
    """ServeError naming the first port that cannot be bound on host. PyTriton does not notice a
    tritonserver that exited on a busy port and waits out its 120 s start-up timeout."""
    import socket

    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton's servers do
            try:
                s.bind((host, int(port)))
            except OSError as exc:
                raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror}); stop what uses it or choose "
                                 "another --http-port/--grpc-port/--metrics-port") from None


@dataclass
class ServeOptions:
    model: str | None = None  # None or a shipped model name, a shfan-build folder, .onnx, .engine
    backend: str = "auto"
    precision: str | None = None
    detector_model: str | None = None
    host: str = "127.0.0.1"
    http_port: int = option(8000, range="port")
    grpc_port: int = option(8001, range="port")
    metrics_port: int = option(8002, "Prometheus metrics (GET /metrics)", "port")
    max_batch: int = option(16, "images per batch (Triton max_batch_size)", "positive")
    queue_delay_us: int = option(2000, "longest wait for a fuller batch (default 2000 us; BENCHMARKS.md §8)", "nonneg")
    preferred_batch: tuple[int, ...] = (4, 8)
    batching: bool = option(True, "every request alone (max_batch_size 1)")  # --no-batching: for comparisons
    max_faces: int = option(8, "faces per image (default 8)", "positive")
    min_face: float = same_option(PipelineOptions, "min_face")
    threads: int | None = same_option(PipelineOptions, "threads")
    verbose: bool = False
    extra: dict = field(default_factory=dict)  # further PipelineOptions fields

    def __post_init__(self):
        check_fields(self, ServeError)  # the declared ranges, as shfan-serve's options check them

    def validate(self) -> "ServeOptions":
        """ServeError naming the first bad option: the declared fields, then the three ports together."""
        check_fields(self, ServeError)
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if len(set(ports)) != 3:
            raise ServeError(f"HTTP, gRPC and metrics ports must be three different ports, got {ports}")
        return self


def use_own_libpython(env=os.environ) -> str | None:
    """Make Triton's Python-backend stub load this interpreter's libpython.

    The stub links libpython3.X.so.1.0 and the dynamic loader finds the system's copy first; when
    this interpreter is another build of 3.X (pyenv, python-build-standalone, conda) the stub then
    runs this interpreter's stdlib on another libpython and model loading fails ('_thread.RLock'
    object has no attribute '_recursion_count': PyTriton issue #51, seen with pyenv 3.11.7 on
    Debian's 3.11.2). Putting this interpreter's LIBDIR first on LD_LIBRARY_PATH (PyTriton passes
    the environment to tritonserver) fixes it; an interpreter without a shared libpython is left
    alone. Returns the directory put first, or None."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not (libdir and soname and (Path(libdir) / soname).is_file()):
        return None
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if parts[:1] != [libdir]:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + [p for p in parts if p != libdir])
    return libdir


def _pad_faces(faces, max_faces: int, k: int) -> dict[str, np.ndarray]:
    n = min(len(faces), max_faces)
    out = {"count": np.array([n], np.int32), "boxes": np.zeros((max_faces, 4), np.float32),
           "face_scores": np.zeros((max_faces,), np.float32), "points": np.zeros((max_faces, k, 2), np.float32),
           "scores": np.zeros((max_faces, k), np.float32)}
    for i, f in enumerate(faces[:n]):
        out["boxes"][i], out["face_scores"][i] = f.box, f.score
        out["points"][i], out["scores"][i] = f.points, f.scores
    return out


class ShfanTriton(Service):
    """The PyTriton models over one BatchRunner. start() returns once Triton answers; serve()
    blocks until stop() (shfan-serve calls it on SIGINT/SIGTERM)."""

    def __init__(self, opts: ServeOptions):
        from shfan.runtime.pipeline import PipelineOptions
        from shfan.serve.batching import BatchRunner

        self.opts = opts.validate()
        popts = PipelineOptions(max_faces=opts.max_faces, min_face=opts.min_face, threads=opts.threads, **opts.extra)
        lanes = opts.max_batch if opts.batching else 1
        self.runner = BatchRunner(opts.model, opts.backend, opts.precision, options=popts,
                                  detector_model=opts.detector_model, max_lanes=lanes)
        self.k = self.runner.info.landmarks
        self.triton = None

    # -- the inference callables (PyTriton hands over the requests of one batch)
    def _items(self, requests, with_boxes: bool):
        from shfan.serve.batching import Item

        items, sizes = [], []
        for r in requests:
            images = r["image"]
            boxes = r["box"] if with_boxes else None
            if len(images) == 0:
                raise ServeError("empty request (batch of 0 images); send at least one image")
            for i in range(len(images)):
                image = images[i]
                if image.dtype.kind in "SO":  # BYTES: one encoded image per row
                    image = image.reshape(-1)[0]
                items.append(Item(image, None if boxes is None else boxes[i].reshape(1, 4)))
            sizes.append(len(images))
        return items, sizes

    def _run(self, items, sizes):
        results = self.runner.run(items)
        bad = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
        if bad:
            owner = np.repeat(np.arange(len(sizes)), sizes)
            detail = "; ".join(f"request {owner[i]} image {i}: {' '.join(str(e).split())}" for i, e in bad[:4])
            raise ServeError(f"{len(bad)} bad of {len(items)} images in this batch ({detail}); requests batched "
                             f"with a bad one were not processed: {RESEND}")
        return results

    def _per_request(self, requests, with_boxes: bool) -> list[list]:
        """Each request's Results, in order; all the batch's images run together."""
        items, sizes = self._items(requests, with_boxes)
        results = iter(self._run(items, sizes))
        return [[next(results) for _ in range(n)] for n in sizes]

    def _faces_fn(self, requests):
        out = []
        for results in self._per_request(requests, with_boxes=False):
            rows = [_pad_faces(r.faces, self.opts.max_faces, self.k) for r in results]
            out.append({key: np.stack([r[key] for r in rows]) for key in rows[0]})
        return out

    def _points_fn(self, requests):
        out = []
        for results in self._per_request(requests, with_boxes=True):
            faces = [r.faces[0] for r in results]
            out.append({"points": np.stack([f.points for f in faces]).astype(np.float32),
                        "scores": np.stack([f.scores for f in faces]).astype(np.float32)})
        return out

    # -- lifecycle
    def _model_config(self):
        from pytriton.model_config import DynamicBatcher, ModelConfig

        if not self.opts.batching:
            return ModelConfig(batching=True, max_batch_size=1, batcher=DynamicBatcher())
        preferred = [b for b in self.opts.preferred_batch if b <= self.opts.max_batch] or None
        return ModelConfig(batching=True, max_batch_size=self.opts.max_batch,
                           batcher=DynamicBatcher(max_queue_delay_microseconds=self.opts.queue_delay_us,
                                                  preferred_batch_size=preferred))

    def start(self) -> "ShfanTriton":
        from pytriton.model_config import Tensor
        from pytriton.triton import Triton, TritonConfig

        use_own_libpython()
        o = self.opts
        check_ports(o.host, (o.http_port, o.grpc_port, o.metrics_port))
        config = TritonConfig(http_address=o.host, http_port=o.http_port, grpc_address=o.host, grpc_port=o.grpc_port,
                              metrics_address=o.host, metrics_port=o.metrics_port, exit_timeout_secs=5,
                              log_verbose=1 if o.verbose else 0)
        k, f = self.k, o.max_faces
        faces_out = [Tensor(name="count", dtype=np.int32, shape=(1,)), Tensor(name="boxes", dtype=np.float32, shape=(f, 4)),
                     Tensor(name="face_scores", dtype=np.float32, shape=(f,)),
                     Tensor(name="points", dtype=np.float32, shape=(f, k, 2)),
                     Tensor(name="scores", dtype=np.float32, shape=(f, k))]
        rgb = Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3))
        self.triton = Triton(config=config)
        try:
            self.triton.bind(FACES, self._faces_fn, inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
                             outputs=faces_out, config=self._model_config(), strict=True)
            self.triton.bind(FACES_RGB, self._faces_fn, inputs=[rgb], outputs=faces_out, config=self._model_config(),
                             strict=True)
            self.triton.bind(POINTS, self._points_fn, inputs=[rgb, Tensor(name="box", dtype=np.float32, shape=(4,))],
                             outputs=[Tensor(name="points", dtype=np.float32, shape=(k, 2)),
                                      Tensor(name="scores", dtype=np.float32, shape=(k,))],
                             config=self._model_config(), strict=True)
            self.triton.run()
        except BaseException:
            self.stop()
            raise
        log.info("serving %s, %s, %s on http://%s:%d (gRPC %d, metrics %d)", FACES, FACES_RGB, POINTS, o.host,
                 o.http_port, o.grpc_port, o.metrics_port)
        return self

    def serve(self, until) -> bool:
        """Block until the threading.Event `until` is set (shfan-serve sets it on SIGINT/SIGTERM)
        or Triton died; then stop. True when stopped on request."""
        try:
            while not until.wait(0.5):
                if self.triton is None or not self.triton.is_alive():
                    log.error("tritonserver exited on its own; see the log above (--verbose)")
                    return False
            return True
        finally:
            self.stop()

    def stop(self) -> None:
        triton, self.triton = self.triton, None
        if triton is not None:
            triton.stop()
        if self.runner is not None:
            self.runner.close()
            self.runner = None
