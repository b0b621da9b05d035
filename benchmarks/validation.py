"""Score a model on the validation faces shfan-train holds out (per subset, clean and hard views,
with and without test-time flip), so models trained in different sessions compare on the same faces.

    python benchmarks/validation.py --model compact --data ../shared/data/faces68/helen_train \
        --data ../shared/data/faces68/lfpw_train [--flip] [--json out.json]

The split is shfan-train's (`train.split_validation`, fraction 0.1, seed 0): helen_train -> 87
faces, lfpw_train -> 80. The hard views are `shfan-eval --views hard` (seed evaluate.HARD_SEED).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from shfan import evaluate, metrics
from shfan.datasets import read_dataset
from shfan.train import split_validation
from shfan.weights import MODEL_NAMES


def validation_sets(datas, fraction: float = 0.1, seed: int = 0):
    """(subset name, validation samples, their images) per --data folder: shfan-train's split."""
    for data in datas:
        _, val = split_validation(read_dataset(data, "300w"), fraction, seed)
        yield Path(data).name, val, [s.load_image() for s in val]


VIEWS = (("clean", None), ("hard", evaluate.HARD_SEED))  # the hard views: `shfan-eval --views hard`


def model_path(model: str, backend: str) -> Path:
    """The file of `model` for `backend`: a name (compact, accurate) or a checkpoint / .onnx / build folder."""
    return evaluate.default_model_file(backend, model) if model in MODEL_NAMES else Path(model)


def open_model(model: str, backend: str):
    """A backend on `model` (see model_path), decoding with the subpixel decoder."""
    return evaluate.open_model(model_path(model, backend), backend, None, "subpixel")


def per_face_nme(infer, input_size: int, val, images):
    """(views, per-face NME io, ms per face) of a predictor on one validation set, clean then hard."""
    gt = np.stack([s.points for s in val])
    for views, seed in VIEWS:
        t0 = time.perf_counter()
        pred = evaluate.predict(infer, val, input_size, images=images, hard=seed)
        ms = 1000 * (time.perf_counter() - t0) / len(val)
        yield views, metrics.nme_per_face(pred, gt, "inter_ocular"), ms


def report(result: dict, rows: list, json_path=None) -> None:
    """The rows on stderr (a JSON line each), the whole result on stdout (and in `json_path`)."""
    for row in rows:
        print(json.dumps(row), file=sys.stderr)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="compact", help="compact | accurate | checkpoint/.onnx/build folder")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flip", action="store_true", help="also score test-time flip averaging")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    backend = open_model(args.model, args.backend)
    rows = []
    try:
        for subset, val, images in validation_sets(args.data, args.val_fraction, args.seed):
            for flip in ([False, True] if args.flip else [False]):
                infer = evaluate.with_flip(backend.infer, backend.info.input_size) if flip else backend.infer
                for views, per_face, ms in per_face_nme(infer, backend.info.input_size, val, images):
                    rows.append({"subset": subset, "faces": len(val), "views": views, "flip": flip,
                                 "nme_io": round(float(per_face.mean()), 4),
                                 "fr10": round(float((per_face > 10).mean()), 4), "ms_per_face": round(ms, 1)})
    finally:
        backend.close()
    report({"model": str(model_path(args.model, args.backend)), "rows": rows}, rows, args.json)


if __name__ == "__main__":
    main()
