"""The face-alignment-style baseline that shfan-bench's speedup is measured against: YuNet on
every frame, face-alignment's centre/scale crop, FAN-4 (4 stacks x 256 ch, 256 px) in PyTorch
eager one face per forward, argmax +-0.25 decoding; the same demo frames as shfan-bench.

It needs torch (shfan[torch]) and is not part of the installed package: shfan-bench loads it
from here when it runs from a source checkout, and this script runs shfan-bench with it from
anywhere (same options):

    python benchmarks/face_alignment_baseline.py --quick
    python benchmarks/face_alignment_baseline.py --json --baseline-weights fan4.pt > bench.json

Random weights by default: the speed of a forward pass does not depend on them."""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from shfan.bench import BATCH_STAGES, BenchConfig, spread, timed

log = logging.getLogger("shfan.bench")


def fa_center_scale(box, reference_scale: float = 195.0) -> tuple[np.ndarray, float]:
    """face-alignment's crop parameters from a detector box: centre moved up 12% of the box
    height, scale = (w + h) / 195 (a 200 * scale px square maps onto the 256 px input)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    center = np.array([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0])
    center[1] -= (y1 - y0) * 0.12
    return center, (x1 - x0 + y1 - y0) / reference_scale


def fa_transform(point, center, scale: float, resolution: float, invert: bool = False) -> np.ndarray:
    """face-alignment's image <-> crop map (integer result, as it rounds)."""
    h = 200.0 * scale
    t = np.eye(3)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    if invert:
        t = np.linalg.inv(t)
    return (t @ np.array([point[0], point[1], 1.0]))[:2].astype(np.int64)


def fa_crop(image: np.ndarray, center, scale: float, resolution: int = 256) -> np.ndarray:
    """face-alignment's crop: copy the (zero-padded) square into a new image, then resize."""
    import cv2

    ul = fa_transform([1, 1], center, scale, resolution, True)
    br = fa_transform([resolution, resolution], center, scale, resolution, True)
    ht, wd = image.shape[:2]
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), np.uint8)
    new_x = (max(1, -ul[0] + 1), min(br[0], wd) - ul[0])
    new_y = (max(1, -ul[1] + 1), min(br[1], ht) - ul[1])
    old_x = (max(1, ul[0] + 1), min(br[0], wd))
    old_y = (max(1, ul[1] + 1), min(br[1], ht))
    if new_x[1] >= new_x[0] and new_y[1] >= new_y[0]:
        out[new_y[0] - 1:new_y[1], new_x[0] - 1:new_x[1]] = image[old_y[0] - 1:old_y[1], old_x[0] - 1:old_x[1]]
    return cv2.resize(out, (resolution, resolution), interpolation=cv2.INTER_LINEAR)


def fa_points_to_image(points_hm: np.ndarray, center, scale: float, heatmap_size: int) -> np.ndarray:
    """Heatmap-cell points back to image px through the inverse crop map (face-alignment
    rounds here; we keep the fraction, which costs the same)."""
    h = 200.0 * scale
    return center + (points_hm / heatmap_size - 0.5) * h


class FaceAlignmentBaseline:
    """face-alignment's per-frame path: detect every frame, centre/scale crop, FAN eager in
    PyTorch one face at a time, argmax +-0.25 decoding. Default FAN-4 (4 stacks, 256 ch, 256 px)."""

    description = ("face-alignment-style: YuNet on every frame, centre/scale crop, FAN-4 (4 stacks x 256 ch, "
                   "256 px) PyTorch eager, one face per forward, argmax +-0.25 decoding")

    def __init__(self, detector, weights=None, stacks: int = 4, width: int = 256, input_size: int = 256):
        import torch

        from shfan.model import FAN, ModelConfig, load_checkpoint

        self.torch = torch
        if weights:
            self.model = load_checkpoint(weights)
        else:
            torch.manual_seed(0)
            self.model = FAN(ModelConfig(stacks=stacks, width=width, input_size=input_size))
        self.model.eval()
        self.input_size = self.model.config.input_size
        self.detector = detector

    def process(self, image: np.ndarray) -> dict[str, float]:
        """One frame -> {stage: ms}."""
        from shfan import codec

        ms = dict.fromkeys(("detect", "preprocess", "infer", "decode", "postprocess"), 0.0)
        dets, ms["detect"] = timed(self.detector.detect_faces, image)
        for det in dets:
            t0 = time.perf_counter()
            center, scale = fa_center_scale(det.box)
            crop = fa_crop(image, center, scale, self.input_size)
            inp = self.torch.from_numpy(crop.transpose(2, 0, 1)).float().div_(255.0).unsqueeze_(0)
            t1 = time.perf_counter()
            with self.torch.inference_mode():
                heatmaps = self.model(inp).numpy()
            t2 = time.perf_counter()
            points, _ = codec.decode(heatmaps, "fan")
            t3 = time.perf_counter()
            fa_points_to_image(points[0], center, scale, heatmaps.shape[-1])
            t4 = time.perf_counter()
            for stage, a, b in (("preprocess", t0, t1), ("infer", t1, t2), ("decode", t2, t3), ("postprocess", t3, t4)):
                ms[stage] += (b - a) * 1000.0
        ms["total"] = sum(ms.values())
        return ms


def run_baseline(detector, frames, config: BenchConfig) -> dict:
    """Baseline FPS and stage spreads on the first `baseline_frames` of the same frames (the
    `baseline` that shfan.bench.run takes)."""
    log.info("baseline: FAN-4 PyTorch eager on %d frames (slow by design)", config.baseline_frames)
    baseline = FaceAlignmentBaseline(detector, config.baseline_weights)
    frames = frames[:max(1, config.baseline_frames)]
    for frame in frames[:1]:
        baseline.process(frame)  # warm-up: first-call allocations
    rows = []
    t0 = time.perf_counter()
    for frame in frames:
        rows.append(baseline.process(frame))
    wall = time.perf_counter() - t0
    return {"name": f"FAN-{baseline.model.config.stacks} eager", "description": baseline.description,
            "weights": str(config.baseline_weights) if config.baseline_weights else "random (speed only)",
            "torch_threads": baseline.torch.get_num_threads(), "frames": len(frames),
            "fps": round(len(frames) / wall, 3),
            "stages": {s: spread(r[s] for r in rows) for s in (*BATCH_STAGES, "detect", "total")}}


def main(argv=None):
    """shfan-bench (same options) with this baseline, wherever shfan is installed from."""
    import functools

    from shfan.cli.bench import command
    from shfan.cli.common import entry

    return entry(functools.partial(command, baseline=run_baseline))(argv)


if __name__ == "__main__":
    sys.exit(main())
