import numpy as np
import pytest

from shfan import metrics


def _face():
    gt = np.zeros((1, 68, 2))
    gt[0, :, 0] = np.linspace(0, 100, 68)
    gt[0, :, 1] = np.linspace(0, 50, 68)
    gt[0, 36] = [20, 20]
    gt[0, 45] = [80, 20]
    return gt


def test_nme_inter_ocular_value():
    gt = _face()
    pred = gt + [3.0, 4.0]  # 5 px everywhere, inter-ocular distance 60
    assert metrics.nme_per_face(pred, gt)[0] == pytest.approx(100 * 5 / 60)


def test_nme_box_and_diag():
    gt = _face()
    pred = gt + [0.0, 1.0]
    assert metrics.nme_per_face(pred, gt, "box")[0] == pytest.approx(100 / np.sqrt(100 * 50))
    assert metrics.nme_per_face(pred, gt, "diag")[0] == pytest.approx(100 / np.hypot(100, 50))


def test_auc_and_failure_rate():
    errs = np.array([0.0, 5.0, 20.0])
    assert metrics.failure_rate(errs, 10) == pytest.approx(1 / 3)
    # CED: 1/3 at 0, 2/3 from 5 on -> area = 1/3*5 + 2/3*5 = 5 over 10
    assert metrics.auc(errs, 10) == pytest.approx(0.5, abs=2e-3)
    assert metrics.auc(np.zeros(4), 7) == pytest.approx(1.0)


def test_auc_without_np_trapezoid(monkeypatch):
    """NumPy < 2 (Jetson: numpy<2 for apt's OpenCV) has np.trapz only; AUC must use it there."""
    errs = np.array([0.0, 5.0, 20.0, 3.2, 7.7])
    expected = metrics.auc(errs, 10)
    calls = []

    def trapz_1x(y, x):  # NumPy 1.x's trapz, for NumPy versions that dropped it
        calls.append(len(y))
        return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)

    monkeypatch.delattr(np, "trapezoid", raising=False)
    monkeypatch.setattr(np, "trapz", trapz_1x, raising=False)
    assert metrics.auc(errs, 10) == pytest.approx(expected, abs=1e-12)
    assert calls == [1001]


def test_summary_fields_and_plot(tmp_path):
    gt = np.repeat(_face(), 3, 0)
    s = metrics.summary(gt + 1.0, gt)
    assert s["faces"] == 3 and {"nme_inter_ocular", "nme_box", "auc_inter_ocular_10", "fr_inter_ocular_10"} <= s.keys()
    out = tmp_path / "ced.png"
    metrics.save_ced_plot({"a": [1.0, 2.0]}, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_unknown_scheme_is_clear():
    with pytest.raises(ValueError, match="inter-ocular"):
        metrics.nme_per_face(np.zeros((1, 5, 2)), np.ones((1, 5, 2)))
