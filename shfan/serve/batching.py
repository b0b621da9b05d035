"""Pipeline.process() for a batch of images, with every face of every image in one backend call.

Triton's dynamic batcher hands the model a batch of requests; running Pipeline.process() on each
would still run the landmark network once per image. Here each image of a batch goes to its own
lane (a Pipeline with its own detector and tracker, in its own thread) and the lanes share one
backend through a gather point: when every lane still working is waiting for landmarks, their
crops go through the backend together, and each lane continues with its own slice. So the
results are exactly those of Pipeline.process() on each image (same code path, same crops), and
the network sees one batch per round.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from shfan.io import Closable

log = logging.getLogger("shfan.serve")


class _Gather:
    """Collects the crops of the lanes of one round; runs the backend when every lane that has
    not finished is waiting."""

    def __init__(self, backend):
        self.backend = backend
        self._cond = threading.Condition()
        self._running = 0
        self._pending: dict[int, np.ndarray] = {}
        self._results: dict[int, object] = {}
        self.batch_sizes: deque[int] = deque(maxlen=4096)  # crops per backend call, newest last

    def begin(self, lanes: int) -> None:
        with self._cond:
            self._running = lanes

    def finish(self) -> None:
        with self._cond:
            self._running -= 1
            self._flush()

    def infer(self, key: int, crops: np.ndarray):
        with self._cond:
            self._pending[key] = crops
            self._flush()
            while key not in self._results:
                self._cond.wait()
            result = self._results.pop(key)
        if isinstance(result, BaseException):
            raise result
        return result

    def _flush(self) -> None:  # with the lock held
        if not self._pending or len(self._pending) < self._running:
            return
        keys = list(self._pending)
        sizes = [len(self._pending[k]) for k in keys]
        try:
            points, scores = self.backend.infer(np.concatenate([self._pending[k] for k in keys]))
        except Exception as exc:  # every waiting lane gets the backend's error
            results = {k: exc for k in keys}
        else:
            bounds = np.cumsum([0] + sizes)
            results = {k: (points[a:b], scores[a:b]) for k, a, b in zip(keys, bounds[:-1], bounds[1:])}
        self.batch_sizes.append(int(sum(sizes)))
        self._pending.clear()
        self._results.update(results)
        self._cond.notify_all()


class _LaneBackend:
    """What a lane's Pipeline sees as its backend."""

    def __init__(self, gather: _Gather, key: int, info, name: str):
        self.gather, self.key, self.info, self.name = gather, key, info, name

    def infer(self, crops):
        return self.gather.infer(self.key, crops)

    def close(self):
        pass


@dataclass
class Item:
    """One image of a batch: an RGB uint8 array, or encoded bytes (JPEG, PNG, ...); boxes: None
    (detect faces) or [[x0, y0, x1, y1], ...] from the caller's detector."""

    image: object
    boxes: object = None


class ItemError(ValueError):
    """A bad item (not an image, bad box): its message is the one-line reason."""


def decode_image(data) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 array; ItemError for anything OpenCV cannot decode."""
    import cv2

    buf = np.frombuffer(bytes(data), np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if image is None:
        raise ItemError(f"{buf.size} bytes that are not an image OpenCV can decode (send JPEG, PNG, BMP, ...)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class BatchRunner(Closable):
    """Pipeline.process() over batches of images (see the module doc).

    model/backend/precision/options/detector_model: as for Pipeline; options.color is taken as
    "rgb" (bytes are decoded to RGB). max_lanes: the largest batch (Triton's max_batch_size).
    """

    def __init__(self, model=None, backend: str = "auto", precision: str | None = None, *, options=None,
                 detector_model=None, max_lanes: int = 16):
        import dataclasses

        from shfan.runtime.pipeline import Pipeline, PipelineOptions

        self._pipeline_args = dict(model=model, backend=backend, precision=precision, detector_model=detector_model)
        opts = dataclasses.replace(options or PipelineOptions(), color="rgb", running_mode="image")
        self.options = opts
        self._Pipeline = Pipeline
        first = Pipeline(options=opts, **self._pipeline_args)
        self.backend = first.backend  # the one shared backend
        self.info = first.info
        self.gather = _Gather(self.backend)
        self.max_lanes = int(max_lanes)
        self._lanes = [self._as_lane(first, 0)]
        self._round = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.max_lanes, thread_name_prefix="shfan-lane")

    def _as_lane(self, pipeline, key: int):
        pipeline.backend = _LaneBackend(self.gather, key, self.info, self.backend.name)
        return pipeline

    def _lane(self, key: int):
        while len(self._lanes) <= key:  # lanes are made when a batch first needs them
            p = self._Pipeline(options=self.options, **self._pipeline_args)
            p.backend.close()  # its own session is not used: every lane shares self.backend
            self._lanes.append(self._as_lane(p, len(self._lanes)))
        return self._lanes[key]

    def run(self, items: list[Item]) -> list:
        """One Result per item, or the exception (ItemError, ValueError, BackendError) that item
        raised; the other items are not affected."""
        if len(items) > self.max_lanes:
            raise ValueError(f"{len(items)} images in one batch; at most {self.max_lanes}")
        with self._round:
            lanes = [self._lane(i) for i in range(len(items))]
            self.gather.begin(len(items))
            futures = [self._pool.submit(self._one, lane, item) for lane, item in zip(lanes, items)]
            return [f.result() for f in futures]

    def _one(self, lane, item: Item):
        try:
            image = item.image
            if isinstance(image, (bytes, bytearray, memoryview, np.bytes_)):
                image = decode_image(image)
            return lane.process(image, boxes=item.boxes)
        except Exception as exc:  # reported per item by run()
            return exc
        finally:
            self.gather.finish()

    def close(self):
        self._pool.shutdown(wait=True)
        for lane in self._lanes:
            lane.backend = None
        self._lanes = []
        if self.backend is not None:
            self.backend.close()
            self.backend = None
