"""Several models on the same validation faces, each compared face by face with the first: the
mean NME io difference per subset and view (clean, hard) with a paired bootstrap 95 % interval, so
that a 0.03-point difference between two fine-tunes can be called a difference or noise.
Each row also has the mean with every face capped at the 10 % failure threshold (`capped10`,
1 - AUC@10 in tenths: the CED's area up to 10 %) and its paired difference: on the hard views a
face that fails in both models (36 % against 67 %, say) swings the plain mean by a third of a point
while telling nothing about which model is better; capped, a failure counts once, as a failure.

    python benchmarks/paired_validation.py runs/v3/best.pt runs/ab/awing/best.pt runs/ab/single/best.pt \
        --data ../shared/data/faces68/helen_train --data ../shared/data/faces68/lfpw_train [--json out.json]

Models: checkpoints (PyTorch backend), `.onnx` files or build folders (ONNX Runtime), or a model name.
The faces are shfan-train's validation split (`benchmarks/validation.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from shfan.runtime.backends import is_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation import open_model, per_face_nme, validation_sets  # noqa: E402


def scores(model: str, sets) -> dict:
    """{(subset, view): per-face NME io} of one model on the validation sets (checkpoints on the
    PyTorch backend, everything else on ONNX Runtime)."""
    backend = open_model(model, "pytorch" if is_checkpoint(model) else "onnxruntime")
    try:
        return {(subset, views): nme for subset, val, images in sets
                for views, nme, _ in per_face_nme(backend.infer, backend.info.input_size, val, images)}
    finally:
        backend.close()


FAIL = 10.0  # % inter-ocular: FR@10's threshold, and the cap of the capped mean


def capped(nme: np.ndarray) -> np.ndarray:
    """Per-face NME with failures counted at the threshold: mean(capped) = FAIL * (1 - AUC@FAIL)."""
    return np.minimum(nme, FAIL)


def paired_interval(diff: np.ndarray, rounds: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of per-face differences (faces resampled together)."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="the first is the reference")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    sets = list(validation_sets(args.data))
    per_model = {m: scores(m, sets) for m in args.models}
    ref = per_model[args.models[0]]
    rows = []
    for model in args.models:
        for key, nme in per_model[model].items():
            row = {"model": model, "subset": key[0], "views": key[1], "nme_io": round(float(nme.mean()), 4),
                   "fr10": round(float((nme > FAIL).mean()), 4), "capped10": round(float(capped(nme).mean()), 4)}
            if model != args.models[0]:
                diff = nme - ref[key]
                lo, hi = paired_interval(diff)
                diff_c = capped(nme) - capped(ref[key])
                lo_c, hi_c = paired_interval(diff_c)
                row.update(diff=round(float(diff.mean()), 4), diff_95=[round(lo, 4), round(hi, 4)],
                           diff_capped10=round(float(diff_c.mean()), 4), diff_capped10_95=[round(lo_c, 4), round(hi_c, 4)],
                           better_faces=int((diff < 0).sum()), faces=len(diff))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
