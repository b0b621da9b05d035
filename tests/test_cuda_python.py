"""runtime/cuda_host.CudaPythonHost through the real cuda-python (a dev dependency: it installs from
PyPI and imports without a GPU). Without a device the CUDA runtime answers every call with an error
code, which must reach the user as one line naming the call, the error and the fix; with a device
the same code must move bytes both ways."""

import numpy as np
import pytest

rt = pytest.importorskip("cuda.bindings.runtime", reason="needs cuda-python (pip install cuda-python)")

from shfan.errors import BackendError  # noqa: E402
from shfan.runtime import cuda_host  # noqa: E402


def device_count() -> int:
    err, count = rt.cudaGetDeviceCount()
    return count if err == rt.cudaError_t.cudaSuccess else 0


no_device = pytest.mark.skipif(device_count() > 0, reason="a CUDA device is usable here")
with_device = pytest.mark.skipif(device_count() == 0, reason="no CUDA device here")


def test_the_registry_finds_cuda_python_without_initialising_cuda():
    assert "cuda-python" in cuda_host.available_host_apis()
    assert cuda_host._cudart() is rt


@no_device
@pytest.mark.parametrize("open_host", [lambda: cuda_host.CudaPythonHost(0), lambda: cuda_host.open_cuda_host("cuda-python"),
                                       lambda: cuda_host.open_cuda_host()],
                         ids=["CudaPythonHost", "open_cuda_host(cuda-python)", "open_cuda_host()"])
def test_no_device_is_one_line_naming_the_call_the_error_and_the_fix(open_host):
    with pytest.raises(BackendError) as exc:
        open_host()
    msg = str(exc.value)
    err = rt.cudaGetErrorName(rt.cudaGetDeviceCount()[0])[1].decode()
    assert "\n" not in msg and msg.startswith("cudaSetDevice(0) failed with ") and err in msg
    assert "shfan-doctor" in msg
    if err == "cudaErrorInsufficientDriver":
        assert "cuda-python<13" in msg


@no_device
def test_each_host_call_checks_its_error_code():
    """The allocation and stream calls go through the same check (a host object made without
    cudaSetDevice, so each call meets the runtime's real error)."""
    host = object.__new__(cuda_host.CudaPythonHost)
    host.rt, host.device, host._closed, host._pinned = rt, 0, False, {}
    import threading

    host._lock = threading.Lock()
    for call, name in [(lambda: host.pinned((2, 3), np.float16), "cudaMallocHost"),
                       (lambda: host.device_alloc(64), "cudaMalloc"),
                       (host.stream, "cudaStreamCreate"),
                       (host.device_name_and_sm, "cudaGetDeviceProperties")]:
        with pytest.raises(BackendError, match=f"^{name} failed with cudaError"):
            call()


@no_device
def test_without_a_cuda_device_the_gpu_comes_from_nvidia_smi_or_the_jetson_model(monkeypatch):
    """CUDA refuses (no device): the platform's GPU is the first visible nvidia-smi row, else the
    Jetson's SoC from its model string, else nothing."""
    from shfan import platform_facts as pf

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    smi = pf.Probes.from_dicts(commands={" ".join(pf.NVIDIA_SMI_QUERY): "NVIDIA T4, 7.5\nNVIDIA A100, 8.0\n"})
    assert pf.gpu_device(smi) == ("NVIDIA T4", 75)
    orin = pf.Probes.from_dicts(files={pf.DEVICE_TREE_MODEL: "NVIDIA Jetson AGX Orin Developer Kit\x00"})
    assert pf.gpu_device(orin) == ("NVIDIA Jetson AGX Orin Developer Kit", 87)
    assert pf.gpu_device(pf.Probes.from_dicts()) == (None, None)


def test_doctor_reports_cuda_python():
    from shfan import doctor
    from shfan import platform_facts as pf

    check = doctor.check_cuda_host_api(pf.Probes())
    assert check.status == doctor.OK and "cuda-python" in check.detail


@with_device
def test_round_trip_through_pinned_and_device_memory():
    host = cuda_host.open_cuda_host("cuda-python")
    try:
        with host.activate():
            name, sm = host.device_name_and_sm()
            assert name and sm >= 50
            src = host.pinned((4, 68, 2), np.float16)
            dst = host.pinned((4, 68, 2), np.float16)
            src[...] = np.arange(src.size, dtype=np.float16).reshape(src.shape)
            buf, stream = host.device_alloc(src.nbytes), host.stream()
            host.h2d(buf, src, stream)
            host.d2h(dst, buf, stream)
            host.sync(stream)
            np.testing.assert_array_equal(dst, src)
            host.free([buf, src, dst], stream)
    finally:
        host.close()
