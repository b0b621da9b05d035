"""shfan.serve.batching: a batch of images gives exactly Pipeline.process() on each image, with
every face of the batch in one backend call (no Triton needed)."""

import numpy as np
import pytest


cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")

from shfan.runtime.pipeline import Pipeline  # noqa: E402
from shfan.serve.batching import BatchRunner, Item, ItemError, decode_image  # noqa: E402


@pytest.fixture(scope="module")
def runner(yunet_path):
    with BatchRunner(detector_model=yunet_path, max_lanes=8) as r:
        yield r


@pytest.fixture(scope="module")
def reference(yunet_path):
    with Pipeline(detector_model=yunet_path) as p:
        yield p


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


class CountingBackend:
    def __init__(self, backend):
        self.backend, self.info, self.name, self.calls = backend, backend.info, backend.name, []

    def infer(self, crops):
        self.calls.append(len(crops))
        return self.backend.infer(crops)

    def close(self):
        pass


def _jpeg(rgb) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_batch_equals_process_per_image_in_one_backend_call(runner, reference, astronaut):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # two faces
    images = [astronaut, two, cv2.resize(astronaut, (320, 320)), np.zeros((90, 120, 3), np.uint8)]
    counting = CountingBackend(runner.backend)
    runner.gather.backend = counting
    try:
        results = runner.run([Item(i) for i in images] + [Item(_jpeg(astronaut))])
    finally:
        runner.gather.backend = runner.backend
    images.append(decode_image(_jpeg(astronaut)))
    expected_faces = []
    for image, got in zip(images, results):
        ref = reference.process(image)
        assert len(got.faces) == len(ref.faces)
        expected_faces.append(len(ref.faces))
        for g, r in zip(got.faces, ref.faces):
            np.testing.assert_allclose(g.points, r.points, atol=1e-3)
            np.testing.assert_allclose(g.scores, r.scores, atol=1e-4)
    assert expected_faces == [1, 2, 1, 0, 1]
    assert counting.calls == [5]  # the 5 faces of 5 images: one network call


def test_boxes_items_and_bad_items_do_not_disturb_the_others(runner, reference, astronaut):
    box = [[170.0, 40.0, 290.0, 200.0]]
    results = runner.run([Item(astronaut, boxes=box), Item(b"definitely not a jpeg"), Item(astronaut, boxes=[[5, 5, 1, 1]]),
                          Item(np.zeros((4, 4), np.uint8)), Item(astronaut)])
    ref = reference.process(astronaut, boxes=box)
    np.testing.assert_allclose(results[0].faces[0].points, ref.faces[0].points, atol=1e-3)
    assert isinstance(results[1], ItemError) and "not an image" in str(results[1])
    assert isinstance(results[2], ValueError) and "x1 > x0" in str(results[2])
    assert isinstance(results[3], ValueError) and "H x W x 3" in str(results[3])
    np.testing.assert_allclose(results[4].faces[0].points, reference.process(astronaut).faces[0].points, atol=1e-3)


def test_backend_failure_reaches_every_waiting_item_and_the_runner_recovers(runner, astronaut):
    class Broken(CountingBackend):
        def infer(self, crops):
            raise RuntimeError("device lost")

    runner.gather.backend = Broken(runner.backend)
    try:
        results = runner.run([Item(astronaut), Item(np.zeros((50, 50, 3), np.uint8)), Item(astronaut)])
    finally:
        runner.gather.backend = runner.backend
    assert [type(r).__name__ for r in results] == ["RuntimeError", "Result", "RuntimeError"]
    assert len(runner.run([Item(astronaut)])[0].faces) == 1


def test_too_many_items(runner, astronaut):
    with pytest.raises(ValueError, match="at most 8"):
        runner.run([Item(astronaut)] * 9)


def test_decode_image_rejects_empty_and_garbage():
    for data in (b"", b"\x00" * 10, b"GIF89a-but-not"):
        with pytest.raises(ItemError, match="not an image"):
            decode_image(data)
