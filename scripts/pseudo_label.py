"""Maintainer step: label unlabeled faces with a teacher model, as a 300-W folder that
`shfan-train --extra-data` trains on (distillation by pseudo-labels).

    python scripts/pseudo_label.py --teacher runs/campaign/accurate/last.pt --flip \\
        --images ../shared/data/faces68/ytf_udacity --out runs/pseudo/ytf
    python scripts/pseudo_label.py --teacher accurate --flip --every 10 \\
        --videos ../shared/data/videos/*.mp4 ../shared/data/videos/franck.webm --out runs/pseudo/videos

Every image or sampled video frame goes through the YuNet detector (any labels beside the images
are ignored), the best face's box becomes a crop, and the teacher labels it twice: the second
pass crops around the first pass's landmarks (the crop convention of training and validation),
with test-time flip averaging if asked. Each kept face is written like ../shared/data/faces68: a
loose square crop (2x the landmark box, at most 320 px) and a 300-W `.pts` in that crop's pixels.
The teacher labels each face once, on its clean crop; training then draws its augmented views
from these points exactly as it does from human labels, so the targets of a flipped or rotated
view are the teacher's points moved with the view (the alignment tests/test_pseudo_label.py checks).

Faces whose second pass moved the points by more than --max-shift of the face size (the teacher
did not settle) or whose mean peak score is under --min-score are left out; `labels.json` lists
every face with both numbers, and the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from shfan import atomic, augment, evaluate, geometry
from shfan.io import sha256_file
from shfan.runtime.detector import YuNetDetector, landmark_box_from_detection

LOOSE = 2.0  # crop side / landmark box side, as ../shared/data/faces68
MAX_SIDE = 320


def teacher_file(model: str) -> Path:
    """The file a model name, checkpoint, .onnx or build folder stands for."""
    from shfan import weights

    return weights.resolve(model, evaluate.model_kind(None)) if model in weights.MODEL_NAMES else Path(model)


def open_teacher(model: str, flip: bool):
    """(infer, input_size, close) of a model name, checkpoint, .onnx or build folder."""
    net = evaluate.open_model(teacher_file(model), None, None, "subpixel")
    infer = evaluate.with_flip(net.infer, net.info.input_size) if flip else net.infer
    return infer, net.info.input_size, net.close


def label(infer, input_size: int, image: np.ndarray, box, passes: int = 2):
    """Teacher landmarks (image px) from `passes` crops, each around the previous landmarks;
    returns (points [K, 2], mean score, last pass's mean move / face size)."""
    pts, shift, score = None, float("nan"), float("nan")
    for _ in range(passes):
        crop, m = augment.eval_view(image, box, input_size)  # the crop of validation and shfan-eval
        crop_pts, scores = infer(crop[None])
        new = evaluate.to_image(crop_pts, [m])[0]
        if pts is not None:
            shift = float(np.linalg.norm(new - pts, axis=1).mean() / _face_size(new))
        pts, score, box = new, float(np.mean(scores)), geometry.box_from_points(new)
    return pts, score, shift


def _face_size(points) -> float:
    x0, y0, x1, y1 = geometry.box_from_points(points)
    return float(np.sqrt(max(x1 - x0, 1e-3) * max(y1 - y0, 1e-3)))


def loose_crop(image: np.ndarray, points: np.ndarray):
    """The ../shared/data/faces68 crop: a square of 2x the landmark box's larger side around its
    centre, at most 320 px; returns (crop, points in its pixels)."""
    x0, y0, x1, y1 = geometry.box_from_points(points)
    side = LOOSE * max(x1 - x0, y1 - y0)
    out = int(min(MAX_SIDE, max(32, round(side))))
    m = geometry.similarity(((x0 + x1) / 2, (y0 + y1) / 2), side, out)
    return geometry.warp(image, m, out), geometry.transform_points(points, m)


def write_face(out: Path, name: str, crop: np.ndarray, points: np.ndarray) -> None:
    """PNG + 300-W .pts (1-based: continuous + 0.5), each written whole."""
    import cv2

    ok, png = cv2.imencode(".png", crop[..., ::-1])
    if not ok:
        raise RuntimeError(f"{name}: cannot encode the crop")
    atomic.write_bytes(out / f"{name}.png", png.tobytes())
    rows = "\n".join(f"{x + 0.5:.3f} {y + 0.5:.3f}" for x, y in points)
    atomic.write_text(out / f"{name}.pts", f"version: 1\nn_points: {len(points)}\n{{\n{rows}\n}}\n")


def images_in(folder: Path):
    """(name, RGB image) of each image in a folder (sorted), labels ignored."""
    from shfan.io import read_rgb

    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        yield f"{folder.name}_{path.stem}", read_rgb(path)  # None: not decodable (counted, skipped)


def frames_in(videos, every: int):
    """(name, RGB frame) of every `every`-th frame of each video."""
    import cv2

    for video in videos:
        cap = cv2.VideoCapture(str(video))
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % every == 0:
                yield f"{Path(video).stem}_f{i:05d}", bgr[..., ::-1].copy()
            i += 1
        cap.release()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, help="compact | accurate | checkpoint | .onnx | build folder")
    ap.add_argument("--flip", action="store_true", help="test-time flip averaging in the teacher")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="a folder of face images (any labels beside them are ignored)")
    src.add_argument("--videos", type=Path, nargs="+", help="video files; every --every-th frame")
    ap.add_argument("--every", type=int, default=10, help="video frame step")
    ap.add_argument("--detector-model", help="YuNet ONNX (default: shfan's, downloaded once)")
    ap.add_argument("--max-shift", type=float, default=0.03, help="drop a face whose 2nd pass moved the points "
                                                                   "more than this share of the face size")
    ap.add_argument("--min-score", type=float, default=0.3, help="drop a face whose mean heatmap peak is lower")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.images is not None and not args.images.is_dir():
        ap.error(f"--images {args.images}: no such folder")
    missing = [str(v) for v in args.videos or [] if not v.is_file()]
    if missing:
        ap.error(f"--videos: no such file: {', '.join(missing)}")
    if args.every < 1:
        ap.error("--every must be >= 1")

    detector = YuNetDetector(args.detector_model)
    infer, input_size, close = open_teacher(args.teacher, args.flip)
    args.out.mkdir(parents=True, exist_ok=True)
    faces = images_in(args.images) if args.images is not None else frames_in(args.videos, args.every)
    records, counts = [], {"seen": 0, "unreadable": 0, "no_face": 0, "unsettled": 0, "low_score": 0, "kept": 0}
    try:
        for name, image in faces:
            counts["seen"] += 1
            if image is None:
                counts["unreadable"] += 1
                continue
            found = detector.detect_faces(image)
            if not found:
                counts["no_face"] += 1
                continue
            pts, score, shift = label(infer, input_size, image, landmark_box_from_detection(found[0].box))
            verdict = ("unsettled" if not shift <= args.max_shift else
                       "low_score" if not score >= args.min_score else "kept")
            counts[verdict] += 1
            records.append({"name": name, "score": round(score, 4), "shift": round(shift, 5), "verdict": verdict})
            if verdict == "kept":
                write_face(args.out, name, *loose_crop(image, pts))
            if counts["seen"] % 200 == 0:
                print(json.dumps(counts), file=sys.stderr, flush=True)
    finally:
        close()
    source = teacher_file(args.teacher)  # its hash tells whether remade labels came from the same weights
    report = {"teacher": args.teacher, "teacher_sha256": sha256_file(source) if source.is_file() else None,
              "flip": args.flip, "input_size": input_size, "counts": counts, "max_shift": args.max_shift,
              "min_score": args.min_score, "faces": records}
    atomic.write_text(args.out / "labels.json", json.dumps(report, indent=1) + "\n")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
