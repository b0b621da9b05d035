"""scripts/pseudo_label.py: teacher labels written as a 300-W folder that lines up with its crops."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import small_300w

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pseudo_label.py"


def _script():
    spec = importlib.util.spec_from_file_location("pseudo_label", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_teacher_labels_line_up_with_the_written_crops(helen_dir, yunet_path, tmp_path):
    """The shipped model (with flip) labels 6 faces it never saw labels of (the .pts beside them
    are ignored); scoring the same model on the written folder must give a small error: labels
    in another frame than their crop, or flip-averaged points with the left/right channels not
    swapped back, put the targets off the faces (NME io > 20)."""
    from shfan import evaluate
    from shfan.datasets import read_300w

    faces = small_300w(helen_dir, tmp_path / "faces", 6)
    script = _script()
    script.main(["--teacher", "compact", "--flip", "--images", str(faces), "--out", str(tmp_path / "out"),
                 "--detector-model", str(yunet_path)])
    report = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert report["counts"]["seen"] == 6 and report["counts"]["kept"] >= 5
    written = read_300w(tmp_path / "out")
    assert len(written) == report["counts"]["kept"]
    assert all(s.load_image().shape[0] <= 320 for s in written)
    infer, size, close = script.open_teacher("compact", flip=False)
    try:
        summary, per_face = evaluate.score(infer, written, size)
    finally:
        close()
    assert per_face.max() < 5.0, per_face  # the teacher's own labels: only flip-vs-not differences remain


def test_labels_of_a_mirrored_image_are_the_mirrored_labels(helen_dir, tmp_path):
    """label() with flip on a face and on its mirror image: the same landmarks, mirrored with
    the left/right map (what a flipped training view's targets must be)."""
    from shfan import augment
    from shfan.datasets import read_300w

    script = _script()
    s = read_300w(helen_dir)[0]
    image = s.load_image()
    infer, size, close = script.open_teacher("compact", flip=True)
    try:
        pts, _, _ = script.label(infer, size, image, s.box)
        mirror = np.ascontiguousarray(image[:, ::-1])
        box = np.array([image.shape[1] - s.box[2], s.box[1], image.shape[1] - s.box[0], s.box[3]])
        mpts, _, _ = script.label(infer, size, mirror, box)
    finally:
        close()
    back = mpts[augment.FLIP_68].copy()
    back[:, 0] = image.shape[1] - back[:, 0]
    iod = np.linalg.norm(pts[36] - pts[45])
    assert np.linalg.norm(back - pts, axis=1).mean() / iod < 0.01  # flip averaging is symmetric
    assert np.linalg.norm(mpts - pts, axis=1).mean() / iod > 0.1  # and the mirror is not the face
