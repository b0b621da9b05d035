"""The codec against the committed vectors and against itself: NumPy, PyTorch, ONNX Runtime."""

import numpy as np
import pytest
import torch

from shfan import codec, codec_torch

TOL = 1e-3  # heatmap px, DESIGN.md §3


def test_numpy_matches_vectors(vectors):
    for name, hm, pts, scores, w, t in vectors:
        got, got_s = codec.decode(hm, "subpixel", w, t)
        assert np.abs(got - pts).max() <= TOL, name
        np.testing.assert_allclose(got_s, scores, atol=1e-6, err_msg=name)


def test_torch_matches_vectors(vectors):
    for name, hm, pts, scores, w, t in vectors:
        got, got_s = codec_torch.decode(torch.from_numpy(hm), "subpixel", w, t)
        assert np.abs(got.numpy() - pts).max() <= TOL, name
        np.testing.assert_allclose(got_s.numpy(), scores, atol=1e-6, err_msg=name)


def test_onnxruntime_matches_vectors(vectors):
    ort = pytest.importorskip("onnxruntime")
    from shfan import codec_onnx

    for name, hm, pts, scores, w, t in vectors:
        b, k, h, wd = hm.shape
        model = codec_onnx.decoder_model("subpixel", w, t, scale=4.0, landmarks=k, heatmap_size=(h, wd))
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got, got_s = sess.run(None, {"heatmaps": hm})
        assert np.abs(got / 4.0 - pts).max() <= TOL, name
        np.testing.assert_allclose(got_s, scores, atol=1e-6, err_msg=name)


def test_nonfinite_vectors_give_finite_points(vectors):
    """The NaN/inf case is in the shared vectors, so all four implementations are held to it
    (NumPy, PyTorch and ONNX Runtime above, the plugin's host build in plugins/tests)."""
    case = next(v for v in vectors if v[0] == "nonfinite")
    _, hm, pts, scores, *_ = case
    assert np.isnan(hm).any() and np.isposinf(hm).any() and np.isneginf(hm).any()
    assert np.isfinite(pts).all() and not np.isfinite(scores).all()
    # the old rule (np.argmax lets a NaN at index 0 win) is caught by the tolerance
    assert np.abs(pts[0, 0] - [0.5, 0.5]).max() > TOL


def test_half_pixel_shift_is_caught(vectors):
    """The tolerance is tight enough that a classic off-by-half-pixel bug fails."""
    name, hm, pts, *_ , w, t = vectors[0]
    got, _ = codec.decode(hm, "subpixel", w, t)
    assert np.abs((got - 0.5) - pts).max() > TOL


@pytest.mark.parametrize("method", ["subpixel", "fan", "argmax"])
def test_torch_equals_numpy_all_methods(method):
    rng = np.random.default_rng(1)
    hm = rng.random((3, 7, 20, 20)).astype(np.float32)
    ref, ref_s = codec.decode(hm, method)
    got, got_s = codec_torch.decode(torch.from_numpy(hm), method)
    np.testing.assert_allclose(got.numpy(), ref, atol=TOL)
    np.testing.assert_allclose(got_s.numpy(), ref_s, atol=1e-6)


def test_known_values():
    hm = np.zeros((1, 1, 8, 8), np.float32)
    hm[0, 0, 3, 5] = 1.0
    hm[0, 0, 3, 6] = 0.5
    hm[0, 0, 4, 5] = 0.2
    assert codec.decode(hm, "argmax")[0].tolist() == [[[5.5, 3.5]]]
    assert codec.decode(hm, "fan")[0].tolist() == [[[5.75, 3.75]]]
    # hand-computed local soft-argmax, window 3, tau 2 (only 3 cells non-zero)
    e = {(0, 0): 1.0, (0, 1): np.exp(-1.0), (1, 0): np.exp(-1.6)}
    z = sum(e.values()) + 6 * np.exp(-2.0)
    u = 5.5 + (e[(0, 1)] - 3 * np.exp(-2.0) + 2 * np.exp(-2.0)) / z
    v = 3.5 + (e[(1, 0)] - 3 * np.exp(-2.0) + 2 * np.exp(-2.0)) / z
    got = codec.decode(hm, "subpixel", 3, 2.0)[0][0, 0]
    np.testing.assert_allclose(got, [u, v], atol=1e-5)


def test_roundtrip_subpixel_beats_fan():
    """DESIGN/issue bar: subpixel round-trip < 0.05 px mean where fan is ~0.19."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(8, 56, (1, 500, 2)).astype(np.float32)
    hm = codec.encode(pts, 64, codec.DEFAULT_SIGMA)
    err = {m: np.linalg.norm(codec.decode(hm, m)[0] - pts, axis=-1).mean() for m in codec.METHODS}
    assert err["subpixel"] < 0.05
    assert 0.15 < err["fan"] < 0.23
    assert err["argmax"] > err["fan"]


def test_encode_torch_matches_numpy():
    pts = np.array([[[3.2, 7.9], [0.1, 15.6]]], np.float32)
    np.testing.assert_allclose(codec_torch.encode(torch.from_numpy(pts), 16, 1.5).numpy(),
                               codec.encode(pts, 16, 1.5), atol=1e-6)
    hm = codec.encode(pts, 16, 1.5)
    assert hm.shape == (1, 2, 16, 16) and hm.max() <= 1.0


def test_subpixel_is_differentiable():
    hm = torch.from_numpy(codec.encode(np.array([[[5.3, 6.8]]], np.float32), 16, 2.0)).requires_grad_()
    pts, _ = codec_torch.decode(hm)
    pts.sum().backward()
    assert hm.grad is not None and hm.grad.abs().sum() > 0


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown decoder method"):
        codec.decode(np.zeros((1, 1, 4, 4)), "dark")
    with pytest.raises(ValueError, match="odd"):
        codec.decode(np.zeros((1, 1, 4, 4)), "subpixel", window=4)
    with pytest.raises(ValueError, match=r"\[B, K, H, W\]"):
        codec.decode(np.zeros((4, 4)))
    for tau in (-200.0, 0.0, float("nan"), float("inf")):  # -200 gave NaN landmarks
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            codec.decode(np.zeros((1, 1, 4, 4)), "subpixel", 5, tau)
        with pytest.raises(ValueError, match="temperature"):
            codec_torch.decode(torch.zeros(1, 1, 4, 4), "subpixel", 5, tau)
