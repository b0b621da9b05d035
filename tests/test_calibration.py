"""Calibration sources (300-W, fallback, bad inputs), the held-out split and the accuracy
guard's exclusion ladder, measured on real ONNX files."""

import numpy as np
import pytest

from shfan.calibration import sources
from shfan.calibration.guard import Reference, exclusion_ladder, guarded_quantize, mean_nme
from shfan.calibration.sources import CalibrationError, FaceSet


def test_annotated_folder_gives_crops_and_ground_truth(helen_dir):
    faces = sources.load_faces(helen_dir, 64, max_faces=20)
    assert faces.crops.shape == (20, 3, 64, 64) and faces.crops.dtype == np.float32
    assert 0.0 <= faces.crops.min() and faces.crops.max() <= 1.0
    assert faces.points.shape == (20, 68, 2) and not faces.fallback
    # eval crops put the face in the middle of the crop
    assert np.all((faces.points > 0) & (faces.points < 64))
    again = sources.load_faces(helen_dir, 64, max_faces=20)
    np.testing.assert_array_equal(faces.crops, again.crops)  # reproducible choice -> stable cache key


def test_split_is_disjoint_and_bounded():
    faces = FaceSet(np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1), None, "t")
    calib, held = sources.split(faces)
    assert len(held) == 20 and len(calib) == 80
    assert not set(calib.crops.ravel()) & set(held.crops.ravel())
    small = FaceSet(np.zeros((10, 1, 1, 1), np.float32), None, "t")
    assert len(sources.split(small)[1]) == 5  # never more than half held out


def test_fallback_is_marked_and_jittered():
    faces = sources.fallback_faces(64, 8)
    assert faces.fallback and "fallback" in faces.origin and faces.points is None
    assert faces.crops.shape == (8, 3, 64, 64)
    assert np.abs(faces.crops[0] - faces.crops[1]).mean() > 0.01


def test_bad_sources(tmp_path):
    with pytest.raises(CalibrationError, match="no such calibration source"):
        sources.load_faces(tmp_path / "missing", 64, 10)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CalibrationError, match="not a folder or a video"):
        sources.load_faces(tmp_path / "notes.txt", 64, 10)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images"):
        sources.load_faces(empty, 64, 10)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"png? no")
    with pytest.raises(CalibrationError, match="could be read"):
        sources.load_faces(broken, 64, 10)
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    with pytest.raises(CalibrationError, match="cannot open this video"):
        sources.load_faces(tmp_path / "clip.mp4", 64, 10)


def test_image_folder_uses_the_detector(helen_dir, tmp_path):
    pytest.importorskip("shfan.runtime.detector")
    from conftest import YUNET

    if not YUNET.is_file():
        pytest.skip("shared YuNet model not present")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for jpg in sorted(helen_dir.glob("*.jpg"))[:4]:
        (folder / jpg.name).symlink_to(jpg)
    faces = sources.load_faces(folder, 64, 4, detector_model=str(YUNET))
    assert 1 <= len(faces) <= 4 and faces.points is None and "YuNet" in faces.origin


def test_exclusion_ladder_names_the_head_first():
    ladder = exclusion_ladder(4)
    assert ladder[0] == [] and ladder[1] == ["^/l3/"]
    assert all(set(a) < set(b) for a, b in zip(ladder, ladder[1:]))  # each step keeps more out
    assert "^/m3/" in ladder[3] and "^/conv1/" in ladder[-1]
    assert exclusion_ladder(1)[1] == ["^/l0/"]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A tiny fp32 ONNX and a perturbed copy standing in for a lossy quantization."""
    onnx = pytest.importorskip("onnx")
    import torch

    from shfan.builder.export import export_onnx
    from shfan.model import FAN, ModelConfig

    torch.manual_seed(0)
    model = FAN(ModelConfig(stacks=1, width=64, input_size=64)).eval()
    d = tmp_path_factory.mktemp("guard")
    onnx.save(export_onnx(model), str(d / "fp32.onnx"))
    with torch.no_grad():
        model.l0.weight.add_(0.5 * torch.randn_like(model.l0.weight))
    onnx.save(export_onnx(model), str(d / "lossy.onnx"))
    return d, model.config.to_dict()


def test_guard_retries_until_within_bound(two_models, helen_dir):
    d, cfg = two_models
    held = sources.load_faces(helen_dir, 64, 16)
    held.points = None  # measure against the fp32 model's predictions
    ref = Reference.from_fp32(d / "fp32.onnx", held, cfg)
    assert ref.kind == "fp32 predictions" and ref.measure(d / "fp32.onnx") == (0.0, 0.0)
    calls = []

    def quantize(excluded):  # lossy until the head is kept out, as real int8 often is
        calls.append(excluded)
        return d / ("fp32.onnx" if "^/l0/" in excluded else "lossy.onnx")

    result = guarded_quantize(quantize, ref, stacks=1, bound=0.1)
    assert calls == [[], ["^/l0/"]]
    assert result.within_bound and result.accepted.excluded == ["^/l0/"]
    assert result.attempts[0].drift > 0.1 and result.accepted.drift == 0.0
    never = guarded_quantize(lambda excluded: d / "lossy.onnx", ref, stacks=1, bound=0.1)
    assert not never.within_bound and len(never.attempts) == len(exclusion_ladder(1))


def test_guard_with_ground_truth_reports_signed_drift(two_models, helen_dir):
    d, cfg = two_models
    held = sources.load_faces(helen_dir, 64, 16)
    ref = Reference.from_fp32(d / "fp32.onnx", held, cfg)
    assert ref.kind == "ground truth" and ref.fp32_nme > 0
    nme, drift = ref.measure(d / "fp32.onnx")
    assert nme == pytest.approx(ref.fp32_nme) and drift == pytest.approx(0.0)
    assert mean_nme(held.points, held.points) == 0.0
