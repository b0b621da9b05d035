"""Other landmark pipelines timed beside shfan on the same demo frames, when they are installed in
the same environment (optional: `pip install 'shfan[baselines]'`); absent ones are reported as
skipped with the install line, never as an error.

- dlib: its HOG face detector on every frame + the 68-point regressor (Kazemi & Sullivan 2014,
  `shape_predictor_68_face_landmarks.dat` from the face-recognition-models wheel): the pipeline
  most frontal-face users pick. The detector runs without upsampling (it finds faces of 80 px
  and up, which the demo's are), its fastest setting.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

from shfan.bench.timing import spread

log = logging.getLogger("shfan.bench")

INSTALL = {"dlib": "pip install 'shfan[baselines]' (dlib-bin, face-recognition-models)"}


def dlib_predictor_path() -> Path | None:
    """shape_predictor_68_face_landmarks.dat of the face-recognition-models wheel, if installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return path if path.is_file() else None


def dlib_available() -> bool:
    from shfan.platform_facts import module_available

    return module_available("dlib") and dlib_predictor_path() is not None


def time_dlib(frames) -> dict:
    """FPS and per-stage spreads of dlib's detector + 68-point regressor on `frames` (RGB)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_predictor_path()))
    detect_ms, landmark_ms, faces = [], [], 0
    detector(frames[0], 0)  # warm-up
    t_start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        boxes = detector(frame, 0)
        t1 = time.perf_counter()
        for box in boxes:
            predictor(frame, box)
        detect_ms.append(1000 * (t1 - t0))
        landmark_ms.append(1000 * (time.perf_counter() - t1))
        faces += len(boxes)
    wall = time.perf_counter() - t_start
    return {"name": "dlib", "description": f"dlib {dlib.__version__}: HOG detector (every frame, no upsampling) + "
                                           "68-point regressor",
            "frames": len(frames), "faces": faces, "fps": round(len(frames) / wall, 2),
            "stages": {"detect": spread(detect_ms), "landmarks": spread(landmark_ms)}}


PIPELINES = {"dlib": (dlib_available, time_dlib)}


def compare(frames, names) -> tuple[list[dict], list[dict]]:
    """(rows for the installed pipelines among `names`, skipped entries with the reason)."""
    rows, skipped = [], []
    for name in names:
        available, run = PIPELINES[name]
        if not available():
            skipped.append({"backend": name, "reason": f"not installed here: {INSTALL[name]}"})
            continue
        log.info("timing %s on %d demo frames", name, len(frames))
        rows.append(run(frames))
    return rows, skipped
