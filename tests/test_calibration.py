"""Calibration sources (300-W, fallback, bad inputs), the held-out split, activation ranges,
per-conv sensitivity and the accuracy guard's exclusion ladder, measured on real ONNX files."""

import numpy as np
import pytest
from conftest import read_cache_as_modelopt_does

from shfan.calibration import face_sets, guard
from shfan.calibration.guard import Measurement, Reference, exclusion_ladder, guarded_quantize, mean_nme
from shfan.calibration.ort_tools import predict_landmarks
from shfan.calibration.face_sets import CalibrationError, FaceSet


def test_annotated_folder_gives_crops_and_ground_truth(helen_dir):
    faces = face_sets.load_faces(helen_dir, 64, max_faces=20)
    assert faces.crops.shape == (20, 3, 64, 64) and faces.crops.dtype == np.float32
    assert 0.0 <= faces.crops.min() and faces.crops.max() <= 1.0
    assert faces.points.shape == (20, 68, 2) and not faces.fallback
    # eval crops put the face in the middle of the crop
    assert np.all((faces.points > 0) & (faces.points < 64))
    again = face_sets.load_faces(helen_dir, 64, max_faces=20)
    np.testing.assert_array_equal(faces.crops, again.crops)  # reproducible choice -> stable cache key


def test_jittered_views_move_the_points_with_the_pixels():
    size, marks = 64, np.array([[20.0, 24.0], [40.0, 30.0], [31.0, 45.0]], np.float32)
    crops = np.zeros((4, 3, size, size), np.float32)
    for face in range(4):  # one bright blob per crop, at a different landmark
        x, y = marks[face % 3]
        yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, our convention
        crops[face] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    points = np.repeat(marks[None], 4, axis=0)
    views = face_sets.with_jittered_views(FaceSet(crops, points, "t"))
    assert len(views) == 8 and views.origin == "t + jittered views"
    np.testing.assert_array_equal(views.crops[:4], crops)  # the clean faces come first, untouched
    moved = 0
    for face in range(4, 8):
        img = views.crops[face, 0]
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        blob = np.array([(xx * img).sum(), (yy * img).sum()]) / img.sum()
        expected = views.points[face, (face - 4) % 3]
        assert np.abs(blob - expected).max() < 0.3  # the point follows the warped pixels
        moved += np.abs(expected - marks[(face - 4) % 3]).max() > 1.0
    assert moved >= 3  # the views really are jittered
    assert face_sets.with_jittered_views(FaceSet(crops, None, "t")).points is None


def test_split_is_disjoint_and_bounded():
    faces = FaceSet(np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1), None, "t")
    calib, held = face_sets.split(faces)
    assert len(held) == 20 and len(calib) == 80
    assert not set(calib.crops.ravel()) & set(held.crops.ravel())
    small = FaceSet(np.zeros((10, 1, 1, 1), np.float32), None, "t")
    assert len(face_sets.split(small)[1]) == 5  # never more than half held out


def test_fallback_is_marked_and_jittered():
    faces = face_sets.fallback_faces(64, 8)
    assert faces.fallback and "fallback" in faces.origin and faces.points is None
    assert faces.crops.shape == (8, 3, 64, 64)
    assert np.abs(faces.crops[0] - faces.crops[1]).mean() > 0.01


def test_bad_sources(tmp_path):
    with pytest.raises(CalibrationError, match="no such calibration source"):
        face_sets.load_faces(tmp_path / "missing", 64, 10)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CalibrationError, match="not a folder or a video"):
        face_sets.load_faces(tmp_path / "notes.txt", 64, 10)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images"):
        face_sets.load_faces(empty, 64, 10)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"png? no")
    with pytest.raises(CalibrationError, match="could be read"):
        face_sets.load_faces(broken, 64, 10)
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    with pytest.raises(CalibrationError, match="cannot open this video"):
        face_sets.load_faces(tmp_path / "clip.mp4", 64, 10)


def test_video_unreadable_from_the_first_frame_says_why(tmp_path, monkeypatch):
    """A read error before any frame is the error shown (not "no face detected")."""
    from shfan.runtime import sources as runtime_sources

    class Broken:
        def __init__(self, spec):
            pass

        def open(self):
            pass

        def read(self):
            raise runtime_sources.SourceError("clip.mp4: decoder error at frame 0")

        def close(self):
            pass

    monkeypatch.setattr(runtime_sources, "OpenCVDevice", Broken)
    with pytest.raises(CalibrationError, match="decoder error at frame 0"):
        face_sets.video_faces(tmp_path / "clip.mp4", 64, 4)


def test_image_folder_uses_the_detector(helen_dir, yunet_path, tmp_path):
    pytest.importorskip("shfan.runtime.detector")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for jpg in sorted(helen_dir.glob("*.jpg"))[:4]:
        (folder / jpg.name).symlink_to(jpg)
    faces = face_sets.load_faces(folder, 64, 4, detector_model=str(yunet_path))
    assert 1 <= len(faces) <= 4 and faces.points is None and "YuNet" in faces.origin


def test_exclusion_ladder_grows_from_the_most_sensitive():
    names = [f"/c{i}/Conv" for i in range(30)]
    ladder = exclusion_ladder(names)
    assert ladder == [names[:k] for k in (4, 8, 12, 16, 24)]  # never all 30: that would be fp16
    assert exclusion_ladder(names[:3]) == []


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
    held = face_sets.load_faces(helen_dir, 64, 16)
    held.points = None  # measure against the fp32 model's predictions
    ref = Reference.from_fp32(d / "fp32.onnx", held, cfg)
    assert ref.kind == "fp32 predictions" and ref.measure(d / "fp32.onnx") == Measurement(0.0, 0.0, 0.0)
    ranking = [(f"/c{i}/Conv", 1.0 / (i + 1)) for i in range(10)]
    calls, ranked = [], []

    def quantize(excluded):  # lossy until the worst 8 are kept out
        calls.append(excluded)
        return d / ("fp32.onnx" if "/c7/Conv" in excluded else "lossy.onnx")

    def rank(path):
        ranked.append(path)
        return ranking

    result = guarded_quantize(quantize, ref, rank, bound=0.1)
    names = [n for n, _ in ranking]
    assert calls == [[], names[:4], names[:8]] and ranked == [d / "lossy.onnx"]
    assert result.within_bound and result.accepted.excluded == names[:8]
    assert result.attempts[0].drift > 0.1 and result.accepted.drift == 0.0
    assert result.to_dict()["sensitivity"][0] == {"node": "/c0/Conv", "nme_drift_alone": 1.0}
    never = guarded_quantize(lambda excluded: d / "lossy.onnx", ref, rank, bound=0.1)
    assert not never.within_bound and len(never.attempts) == 1 + len(exclusion_ladder(names))
    first_try = guarded_quantize(lambda excluded: d / "fp32.onnx", ref, lambda p: pytest.fail("ranked"), bound=0.1)
    assert first_try.within_bound and len(first_try.attempts) == 1


@pytest.fixture(scope="module")
def int8_model(two_models, helen_dir):
    """The tiny model quantized through the builder's own path (measured ranges -> cache ->
    ModelOpt), plus the faces it was calibrated on."""
    pytest.importorskip("modelopt.onnx.quantization")
    from shfan.builder.precision import to_int8
    from shfan.calibration import ranges

    d, cfg = two_models
    faces = face_sets.load_faces(helen_dir, 64, 24)
    measured = ranges.sample_conv_inputs(d / "fp32.onnx", faces.crops).ranges("percentile", 99.99)
    cache = ranges.write_trt_cache(measured, d / "calib.cache")
    to_int8(d / "fp32.onnx", d / "int8.onnx", faces.crops, calibration_cache=cache)
    return d / "int8.onnx", faces, cfg


def test_ranges_match_an_independent_computation(two_models, helen_dir, tmp_path):
    from shfan.calibration import ranges

    d, _ = two_models
    crops = face_sets.load_faces(helen_dir, 64, 20).crops
    sample = ranges.sample_conv_inputs(d / "fp32.onnx", crops)
    top = sample.ranges("max")
    assert top["image"] == pytest.approx(float(crops.max()))
    pct = sample.ranges("percentile", 90.0)
    assert pct["image"] == pytest.approx(float(np.percentile(crops, 90.0)), abs=0.01)  # sampled estimate
    assert set(pct) == set(top) and all(0 < pct[k] <= top[k] for k in top)
    assert all(pct[k] < top[k] for k in top if k != "image")  # ReLU outputs have long tails
    back = read_cache_as_modelopt_does(ranges.write_trt_cache(top, tmp_path / "c.cache"))
    assert back == pytest.approx(top, rel=1e-6)
    assert (tmp_path / "c.cache").read_text().startswith("TRT-8501-EntropyCalibration2\n")


def test_keep_only_quantized_removes_the_other_qdq(int8_model):
    onnx = pytest.importorskip("onnx")
    from shfan.calibration.ort_tools import predict_landmarks
    from shfan.calibration.sensitivity import keep_only_quantized, quantized_convs

    path, faces, cfg = int8_model
    model = onnx.load(str(path))
    convs = quantized_convs(model)
    assert len(convs) == sum(n.op_type == "Conv" for n in model.graph.node) > 10

    def q_nodes(b):
        return sum(n.op_type == "QuantizeLinear" for n in onnx.load_from_string(b).graph.node)

    assert q_nodes(keep_only_quantized(model, set(convs))) == q_nodes(model.SerializeToString())
    assert q_nodes(keep_only_quantized(model, {convs[0]})) == 2  # its activation and its weight
    assert q_nodes(keep_only_quantized(model, set())) == 0
    everything = predict_landmarks(keep_only_quantized(model, set(convs)), faces.crops, cfg)
    np.testing.assert_array_equal(everything, predict_landmarks(path, faces.crops, cfg))


def test_a_conv_with_ruined_scales_ranks_first(int8_model, tmp_path):
    """Make one conv's activation scale 50x too coarse: the ranking must find it."""
    onnx = pytest.importorskip("onnx")
    from shfan.calibration.ort_tools import predict_landmarks
    from shfan.calibration.sensitivity import rank_convs

    path, faces, cfg = int8_model
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    victim = convs[len(convs) // 2]
    dq = next(n for n in model.graph.node if n.output[0] == victim.input[0])
    scale = inits[dq.input[1]]
    scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * 50, scale.name))
    onnx.save(model, str(tmp_path / "ruined.onnx"))
    fp32 = predict_landmarks(path.parent / "fp32.onnx", faces.crops[:8], cfg)
    ranking = rank_convs(tmp_path / "ruined.onnx", faces.crops[:8], fp32, cfg)
    assert ranking[0][0] == victim.name and len(ranking) == len(convs)
    assert ranking[0][1] > 2 * ranking[1][1]
    assert [d for _, d in ranking] == sorted((d for _, d in ranking), reverse=True)


def test_guard_with_ground_truth_reports_signed_drift(two_models, helen_dir):
    d, cfg = two_models
    held = face_sets.load_faces(helen_dir, 64, 16)
    ref = Reference.from_fp32(d / "fp32.onnx", held, cfg)
    assert ref.kind == "ground truth" and ref.fp32_nme > 0
    m = ref.measure(d / "fp32.onnx")
    assert m.nme == pytest.approx(ref.fp32_nme) and m.drift == pytest.approx(0.0) and m.drift_upper == pytest.approx(0.0)
    lossy = ref.measure(d / "lossy.onnx")
    per_face = guard.nme_per_face(predict_landmarks(d / "lossy.onnx", held.crops, cfg), held.points) - ref.fp32_per_face
    assert lossy.drift == pytest.approx(per_face.mean())
    se = per_face.std(ddof=1) / np.sqrt(len(per_face))
    assert lossy.drift_upper == pytest.approx(per_face.mean() + 1.645 * se) and se > 0
    assert mean_nme(held.points, held.points) == 0.0


def test_tensors_too_big_for_one_pass_are_sampled_in_groups(two_models, helen_dir):
    """A budget smaller than one face's tensors: several passes, the same extremes."""
    onnx = pytest.importorskip("onnx")
    from shfan.calibration import ranges

    d, _ = two_models
    model = onnx.load(str(d / "fp32.onnx"))
    names = ranges.conv_inputs(model)
    sizes = ranges.bytes_per_face(model, names)
    assert sizes["image"] == 3 * 64 * 64 * 4 and all(v > 0 for v in sizes.values())
    groups = ranges.fetch_groups(names, sizes, sum(sizes.values()) // 3)
    assert len(groups) >= 3 and [n for g in groups for n in g] == names
    assert ranges.fetch_groups(names, sizes, sum(sizes.values())) == [names]
    crops = face_sets.load_faces(helen_dir, 64, 12).crops
    whole = ranges.sample_tensors(model, names, crops)
    split = ranges.sample_tensors(model, names, crops, budget_bytes=sum(sizes.values()) // 3)
    assert split.amax == whole.amax and split.lo == whole.lo and split.hi == whole.hi
    assert set(split.picked) == set(names)
