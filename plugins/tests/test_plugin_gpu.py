"""The CUDA kernel itself on a GPU (no TensorRT): every shared test-vector case, NaN/inf included,
in fp32 and in fp16 bytes, through the plugin's launcher, judged by the self-test's comparison.
Needs nvcc, CuPy and a GPU; skips cleanly elsewhere."""

import shutil

import numpy as np
import pytest

from shfan import plugins, selftest

pytestmark = pytest.mark.gpu

@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    cp = pytest.importorskip("cupy")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    try:
        major, minor = cp.cuda.Device(0).compute_capability[:1], cp.cuda.Device(0).compute_capability[1:]
    except Exception as exc:  # no GPU / driver
        pytest.skip(f"no usable GPU: {exc}")
    handle = plugins.build_kernel_library(f"{major}{minor}", tmp_path_factory.mktemp("kernel"), "libkernel.so")
    return cp, handle


def launch(gpu, hm, window, tau, scale=selftest.SCALE):
    cp, lib = gpu
    d_hm = cp.asarray(np.ascontiguousarray(hm))
    b, k, h, w = hm.shape
    landmarks, scores = cp.full((b, k, 2), np.nan, cp.float32), cp.full((b, k), 7.0, cp.float32)
    status = lib.shfan_launch(d_hm.data.ptr, int(hm.dtype == np.float16), b, k, h, w, window, tau, scale,
                              landmarks.data.ptr, scores.data.ptr, cp.cuda.get_current_stream().ptr)
    cp.cuda.get_current_stream().synchronize()
    return status, cp.asnumpy(landmarks), cp.asnumpy(scores)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_kernel_matches_every_shared_vector(gpu, fp16):
    for case in selftest.load_cases():
        hm = case["heatmaps"].astype(np.float16 if fp16 else np.float32)
        status, points, scores = launch(gpu, hm, case["window"], case["temperature"])
        assert status == 0
        assert selftest.compare(case, points, scores, fp16) is None, case["name"]


def test_kernel_refuses_bad_temperature(gpu):
    status, points, _ = launch(gpu, np.zeros((1, 1, 4, 4), np.float32), 5, -200.0)
    assert status == 1 and np.isnan(points).all()  # cudaErrorInvalidValue, nothing launched
