"""YuNet on real AFW faces, the calibrated YuNet -> landmark box map, and model resolution."""

import numpy as np
import pytest

from shfan.runtime import detector as det
from shfan.runtime.detector import DetectorError, YuNetDetector, landmark_box_from_detection

from conftest import YUNET


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)



def test_detects_afw_faces_and_maps_to_landmark_boxes(yunet, afw_dir):
    from shfan.datasets import read_300w

    samples = read_300w(afw_dir)[:60]
    found, raw, mapped = 0, [], []
    for s in samples:
        dets = yunet.detect(s.load_image())
        if not dets:
            continue
        found += 1
        box = max((d[0] for d in dets), key=lambda b: iou(b, s.box))
        raw.append(iou(box, s.box))
        mapped.append(iou(landmark_box_from_detection(box), s.box))
    assert found >= 0.95 * len(samples)
    mapped = np.array(mapped)
    print(f"AFW[:60] IoU(mapped, GT landmark box): mean {mapped.mean():.3f} min {mapped.min():.3f}; "
          f"raw YuNet mean {np.mean(raw):.3f}")
    assert mapped.mean() > 0.82 and np.median(mapped) > 0.85 and mapped.min() > 0.5
    assert mapped.mean() > np.mean(raw) + 0.1  # the map is what makes detector crops match training crops


def test_box_map_is_a_shift_down_and_a_shorter_box():
    out = landmark_box_from_detection((100, 100, 200, 240))
    w, h = out[2] - out[0], out[3] - out[1]
    assert w == pytest.approx(100 * det.BOX_SCALE_W) and h == pytest.approx(140 * det.BOX_SCALE_H)
    assert (out[1] + out[3]) / 2 == pytest.approx(170 + det.BOX_OFFSET_Y * 140)


def test_downscaled_detection_lands_in_original_pixels(yunet):
    from shfan.runtime.sources import astronaut

    img = astronaut()
    small = YuNetDetector(YUNET, max_side=256)
    a, b = yunet.detect(img)[0][0], small.detect(img)[0][0]
    assert iou(a, b) > 0.85


def test_model_from_env_and_missing_paths(monkeypatch, tmp_path):
    monkeypatch.setenv(det.ENV_DETECTOR_MODEL, str(tmp_path / "nope.onnx"))
    with pytest.raises(DetectorError, match="SHFAN_DETECTOR_MODEL.*--detector-model"):
        det.resolve_detector_model()
    with pytest.raises(DetectorError, match="--detector-model"):
        det.resolve_detector_model(tmp_path / "also-nope.onnx")
    if YUNET.is_file():
        monkeypatch.setenv(det.ENV_DETECTOR_MODEL, str(YUNET))
        assert det.resolve_detector_model() == YUNET


def test_download_failure_is_one_line_naming_the_flag(monkeypatch, tmp_path):
    monkeypatch.delenv(det.ENV_DETECTOR_MODEL, raising=False)
    monkeypatch.setenv("SHFAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(det, "YUNET_URL", "http://127.0.0.1:9/face_detection_yunet_2023mar.onnx")
    monkeypatch.setattr(det.download_yunet, "__defaults__", (det.YUNET_URL, 5.0))
    with pytest.raises(DetectorError) as exc:
        det.resolve_detector_model()
    msg = str(exc.value)
    assert "--detector-model" in msg and "\n" not in msg
    assert not any((tmp_path / "cache").glob("*"))  # nothing half-downloaded left behind


def test_bad_checksum_is_rejected(monkeypatch, tmp_path):
    src = tmp_path / "fake.onnx"
    src.write_bytes(b"not yunet")
    with pytest.raises(DetectorError, match="sha256"):
        det.download_yunet(tmp_path / "cache" / det.YUNET_FILE, url=src.as_uri())
    assert not (tmp_path / "cache" / det.YUNET_FILE).exists()


def test_cached_copy_with_right_hash_is_used(monkeypatch, tmp_path):
    if not YUNET.is_file():
        pytest.skip("shared YuNet not present")
    monkeypatch.delenv(det.ENV_DETECTOR_MODEL, raising=False)
    monkeypatch.setenv("SHFAN_CACHE_DIR", str(tmp_path))
    got = det.download_yunet(tmp_path / det.YUNET_FILE, url=YUNET.as_uri())  # "download" from a file URL
    from shfan import io

    assert io.sha256_file(got) == det.YUNET_SHA256
    assert det.resolve_detector_model() == got == det.cached_yunet()


def test_a_cache_that_cannot_be_written_is_not_a_download_failure(tmp_path):
    if not YUNET.is_file():
        pytest.skip("shared YuNet not present")
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    with pytest.raises(DetectorError, match="cannot save it to.*SHFAN_CACHE_DIR") as exc:
        det.download_yunet(tmp_path / "cache" / det.YUNET_FILE, url=YUNET.as_uri())
    assert "cannot download" not in str(exc.value)
