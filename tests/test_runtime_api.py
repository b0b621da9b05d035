"""The embedding API: options, running modes, BGR input, upstream boxes, Result.to_dict, thread
safety (concurrent callers get the single-threaded results), the thread cap, bounded memory
(soak), still-image sources, scene cuts and appending JSON Lines across restarts."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shfan.runtime.backends import ModelInfo
from shfan.runtime.pipeline import (SCHEMA_VERSION, Pipeline, PipelineOptions, available_cores,
                                    detector_side)
from shfan.runtime.sources import DemoDevice, FrameSource, astronaut

from conftest import YUNET, run_main



def scenes():
    """Three different frames: the astronaut, the astronaut mirrored and moved, a face-less one."""
    img = astronaut()
    moved = np.zeros_like(img)
    moved[40:, 60:] = img[:-40, :-60][:, ::-1]
    return [img, moved, np.full_like(img, 128)]


def same_faces(a, b):
    return len(a.faces) == len(b.faces) and all(
        np.array_equal(x.points, y.points) and np.array_equal(x.scores, y.scores) for x, y in zip(a.faces, b.faces))


# ---------------------------------------------------------------- options


def test_options_and_legacy_keywords(tiny_onnx, yunet):
    opts = PipelineOptions(max_faces=2, min_face=40)
    with Pipeline(tiny_onnx, "onnxruntime", options=opts, detector=yunet, max_faces=3, check_side=320) as p:
        assert p.options.max_faces == 3 and p.options.min_face == 40 and p.tracker.max_faces == 3
    assert opts.max_faces == 2  # the caller's options are not modified
    with pytest.raises(TypeError, match="unknown option.*max_face"):
        Pipeline(tiny_onnx, "onnxruntime", detector=yunet, max_face=3)
    with pytest.raises(ValueError, match="running_mode"):
        Pipeline(tiny_onnx, "onnxruntime", detector=yunet, running_mode="stream")


def test_threads_are_capped_at_available_cores(tiny_onnx, yunet):
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, threads=100000) as p:
        assert p.options.threads == available_cores()
        assert p.backend.session.get_session_options().intra_op_num_threads == available_cores()


def test_detector_side_follows_min_face():
    assert detector_side((1080, 1920, 3), 24) == 1920  # full size
    assert detector_side((1080, 1920, 3), 48) == 960
    assert detector_side((480, 640, 3), 96) == 160
    assert detector_side((480, 640, 3), 8) == 640  # never upscaled


# ---------------------------------------------------------------- modes, colour, boxes


def test_running_modes(tiny_onnx, yunet):
    img = astronaut()
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, max_step=float("inf"),
                  redetect_every=0, verify_below=0.0) as p:  # random weights: no doubt checks
        assert p.options.running_mode == "image"
        assert [p.process(img).detector_ran for _ in range(3)] == [True] * 3
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, max_step=float("inf"),
                  redetect_every=0, verify_below=0.0, running_mode="video") as p:
        assert [p.process(img).detector_ran for _ in range(3)] == [True, False, False]
        assert p.process(img, track=False).detector_ran  # explicit track= still wins


def test_bgr_input_gives_the_rgb_results(tiny_onnx, yunet):
    img = astronaut()
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0) as rgb, \
            Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, color="bgr") as bgr:
        a, b = rgb.process(img), bgr.process(np.ascontiguousarray(img[..., ::-1]))
    assert len(a.faces) == 1 and same_faces(a, b)
    assert np.array_equal(b.image, img)  # results carry the RGB frame


class FixedBoxDetector:
    """A detector without eyes (roll 0) that always reports the given boxes."""

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, image):
        return [(np.asarray(b, np.float64), 0.9) for b in self.boxes]


def test_upstream_boxes(tiny_onnx, yunet):
    img = astronaut()
    box = yunet.detect(img)[0][0]
    # the same box through the pipeline's own detection path gives the same landmarks
    with Pipeline(tiny_onnx, "onnxruntime", detector=FixedBoxDetector([box]), min_score=0.0) as ref, \
            Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, running_mode="video") as p:
        want = ref.process(img)
        got = p.process(img, boxes=[box, box + 100.0])
        assert not got.detector_ran and p.tracker.tracks == []  # no detection, tracker untouched
        assert [f.track_id for f in got.faces] == [0, 1]
        assert np.array_equal(got.faces[0].points, want.faces[0].points)
        cx, cy = got.faces[1].points.mean(0)  # the second face's crop is the shifted box's
        assert box[0] + 100 < cx < box[2] + 100 and box[1] + 100 < cy < box[3] + 100
        with pytest.raises(ValueError, match="x1 > x0"):
            p.process(img, boxes=[[10, 10, 5, 20]])


def test_result_to_dict_and_stats_from_process(tiny_onnx, yunet):
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0) as p:
        r = p.process(astronaut(), index=7)
        d = r.to_dict()
        assert p.stats.frames == 1 and p.stats.detections == 1
    assert d["schema"] == SCHEMA_VERSION and d["frame"] == 7 and len(d["faces"]) == 1
    assert d["faces"][0]["points"][30] == [round(float(v), 3) for v in r.faces[0].points[30]]
    json.dumps(d)


# ---------------------------------------------------------------- threads


def test_concurrent_callers_get_single_threaded_results(tiny_onnx, yunet):
    images = scenes()
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, max_step=float("inf"), threads=1) as p:
        alone = [p.process(img) for img in images]
        assert [len(r.faces) for r in alone] == [1, 1, 0]
        got, errors = {}, []

        def worker(k):
            try:
                for i in range(12):
                    j = (k + i) % len(images)
                    got.setdefault(k, []).append((j, p.process(images[j])))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(worker, range(4)))
    assert errors == []
    results = [x for k in got for x in got[k]]
    assert len(results) == 48
    assert all(same_faces(r, alone[j]) for j, r in results)


# ---------------------------------------------------------------- stills and cuts


def test_image_folder_is_detected_afresh_every_image(tiny_onnx, yunet, tmp_path):
    import cv2

    images = scenes()
    for i, img in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img[..., ::-1])
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, max_step=float("inf"),
                  redetect_every=0) as p:
        streamed = list(p.stream(str(tmp_path)))
        alone = [p.process(img) for img in images]
    assert all(r.detector_ran for r in streamed)
    assert [len(r.faces) for r in streamed] == [1, 1, 0]
    assert all(same_faces(a, b) for a, b in zip(streamed, alone))


class CutDevice:
    """6 demo frames, then a cut to a different picture for 4 frames."""

    live = False

    def __init__(self):
        self.demo = DemoDevice(frames=6)
        self.i = 0

    def open(self):
        self.demo.open()
        self.other = scenes()[1]

    def read(self):
        self.i += 1
        if self.i <= 6:
            return self.demo.read()
        return (self.other, self.i / 30, None) if self.i <= 10 else None

    def close(self):
        pass


def test_scene_cut_resets_tracking(tiny_onnx, yunet):
    with Pipeline(tiny_onnx, "onnxruntime", detector=yunet, min_score=0.0, max_step=float("inf"),
                  redetect_every=0, max_misses=100, verify_below=0.0) as p:
        results = list(p.stream(FrameSource(CutDevice())))
    assert [r.scene_cut for r in results] == [False] * 6 + [True] + [False] * 3
    assert [r.detector_ran for r in results] == [True] + [False] * 5 + [True] + [False] * 3
    before, after = results[5].faces[0].track_id, results[6].faces[0].track_id
    assert after != before  # a new track, from the detection on the new picture


# ---------------------------------------------------------------- bounded memory


class StubBackend:
    """Instant 'model': the same face-shaped points in every crop."""

    name = "stub"
    info = ModelInfo(input_size=64, landmarks=68, heatmap_size=16)

    def __init__(self):
        rng = np.random.default_rng(0)
        p = rng.uniform(-0.5, 0.5, (68, 2)) * (64 / 1.4)
        p[36], p[45] = (-15.0, -6.0), (15.0, -6.0)
        self.points = (p + 32.0).astype(np.float32)

    def infer(self, crops):
        n = len(crops)
        return np.repeat(self.points[None], n, 0), np.full((n, 68), 0.8, np.float32)

    def close(self):
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_soak_memory_stays_flat(tiny_onnx):
    """6000 demo frames (stub model and detector, so that it takes seconds): RSS after the first
    1000 and after all must agree within 1.5 MB; per-frame timing lists (~450 B/frame) would add
    2.2 MB."""
    detector = FixedBoxDetector([[60, 45, 100, 85]])
    with Pipeline(tiny_onnx, "onnxruntime", detector=detector, redetect_every=5, max_step=float("inf")) as p:
        p.backend = StubBackend()
        frames = p.stream(FrameSource(DemoDevice(frames=6000, size=(160, 120))))
        for i, r in enumerate(frames):
            if i == 1000:
                start = rss_bytes()
        end = rss_bytes()
        assert p.stats.frames == 6000 and len(p.stats.recent["total"]) == p.stats.window
        assert all(r.faces for r in [r])  # the stub face was tracked to the end
    print(f"\nRSS growth over 5000 frames: {(end - start) / 1e3:.0f} kB")
    assert end - start < 1.5e6


# ---------------------------------------------------------------- JSON Lines across restarts


def test_restart_keeps_earlier_jsonl_lines(tiny_onnx, tmp_path):
    from shfan.cli.run import main

    out = tmp_path / "faces.jsonl"
    base = ["--headless", "--quiet", "--model", str(tiny_onnx), "--detector-model", str(YUNET), "--min-score", "0",
            "--jsonl", str(out)]
    assert run_main(main, base + ["--max-frames", "3"])[0] == 0
    first = out.read_text()
    with open(out, "a") as f:
        f.write('{"frame": 99, "cut off by a cra')  # a crash mid-line
    code, _, err = run_main(main, base + ["--source", str(tmp_path / "missing.mp4")])
    assert code == 2 and "no such file" in err
    assert run_main(main, base + ["--max-frames", "2", "--threads", "100000"])[0] == 0
    lines = out.read_text().splitlines()
    assert out.read_text().startswith(first) and len(lines) == 6
    records = [json.loads(x) for i, x in enumerate(lines) if i != 3]
    assert [r["frame"] for r in records] == [0, 1, 2, 0, 1]
    assert all(r["schema"] == SCHEMA_VERSION for r in records)
