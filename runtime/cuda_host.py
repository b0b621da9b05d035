"""The one module that talks to the CUDA host API: pinned host memory, device memory, a stream,
async copies, synchronisation. Modeled on TensorRT's samples/python/common_runtime.py.

pycuda is the design card's choice; NVIDIA's cuda-python serves where pycuda cannot be built.
Both are imported only when a TensorRT backend is opened.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from shfan.errors import BackendError

INSTALL_HINT = ("install pycuda (pip install pycuda, needs the CUDA toolkit; on Jetson see jetson/install.sh) "
                "or cuda-python (pip install cuda-python)")


@dataclass
class DeviceBuffer:
    ptr: int  # device address, as TensorRT's set_tensor_address wants it
    nbytes: int
    handle: object = None  # the library's allocation object (keeps it alive / frees it)


class PyCudaHost:
    """pycuda on the device's primary context (the one the TensorRT runtime uses)."""

    name = "pycuda"

    def __init__(self, device: int = 0):
        import pycuda.driver as cuda

        self.cuda = cuda
        cuda.init()
        self.device = cuda.Device(device)
        self.context = self.device.retain_primary_context()
        self.context.push()

    def device_name_and_sm(self) -> tuple[str, int]:
        major, minor = self.device.compute_capability()
        return self.device.name(), major * 10 + minor

    def pinned(self, shape, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        alloc = self.cuda.mem_alloc(max(1, int(nbytes)))
        return DeviceBuffer(int(alloc), int(nbytes), alloc)

    def stream(self):
        return self.cuda.Stream()

    @staticmethod
    def stream_handle(stream) -> int:
        return int(stream.handle)

    def h2d(self, dst: DeviceBuffer, src: np.ndarray, stream):
        self.cuda.memcpy_htod_async(dst.ptr, src, stream)

    def d2h(self, dst: np.ndarray, src: DeviceBuffer, stream):
        self.cuda.memcpy_dtoh_async(dst, src.ptr, stream)

    def sync(self, stream):
        stream.synchronize()

    def free(self, buffers, stream=None):
        for b in buffers:
            if isinstance(b, DeviceBuffer) and b.handle is not None:
                b.handle.free()
                b.handle = None
        # pinned arrays from pagelocked_empty free themselves when garbage-collected

    def close(self):
        if self.context is not None:
            self.context.pop()
            self.context = None


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class CudaPythonHost:
    """cuda-python's runtime API (cudart), as in NVIDIA's current TensorRT samples."""

    name = "cuda-python"

    def __init__(self, device: int = 0):
        self.rt = _cudart()
        self.device = device
        self._check(self.rt.cudaSetDevice(device))
        self._pinned: dict[int, int] = {}  # id(array) -> host pointer, for cudaFreeHost

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            name = self.rt.cudaGetErrorName(err)[1]
            raise BackendError(f"CUDA call failed: {name.decode() if isinstance(name, bytes) else name}; "
                               "run shfan-doctor to check the driver and GPU")
        return rest[0] if len(rest) == 1 else (rest or None)

    def device_name_and_sm(self) -> tuple[str, int]:
        props = self._check(self.rt.cudaGetDeviceProperties(self.device))
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return name, props.major * 10 + props.minor

    def pinned(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if len(shape) else 1
        ptr = self._check(self.rt.cudaMallocHost(max(1, count * dtype.itemsize)))
        ctype = np.ctypeslib.as_ctypes_type(dtype)
        array = np.ctypeslib.as_array(ctypes.cast(int(ptr), ctypes.POINTER(ctype)), (count,)).reshape(shape)
        self._pinned[id(array)] = int(ptr)
        return array

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check(self.rt.cudaMalloc(max(1, int(nbytes))))
        return DeviceBuffer(int(ptr), int(nbytes), None)

    def stream(self):
        return self._check(self.rt.cudaStreamCreate())

    @staticmethod
    def stream_handle(stream) -> int:
        return int(stream)

    def h2d(self, dst: DeviceBuffer, src: np.ndarray, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, kind, stream))

    def d2h(self, dst: np.ndarray, src: DeviceBuffer, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, kind, stream))

    def sync(self, stream):
        self._check(self.rt.cudaStreamSynchronize(stream))

    def free(self, buffers, stream=None):
        for b in buffers:
            if isinstance(b, DeviceBuffer) and b.ptr:
                self.rt.cudaFree(b.ptr)
                b.ptr = 0
            elif isinstance(b, np.ndarray) and id(b) in self._pinned:
                self.rt.cudaFreeHost(self._pinned.pop(id(b)))
        if stream is not None:
            self.rt.cudaStreamDestroy(stream)

    def close(self):
        pass


def available_host_api() -> str | None:
    """'pycuda', 'cuda-python' or None, without initialising CUDA."""
    import importlib.util

    if importlib.util.find_spec("pycuda") is not None:
        return "pycuda"
    # `cuda` alone may be a namespace left by other NVIDIA wheels; look for the runtime bindings.
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            if importlib.util.find_spec(name) is not None:
                return "cuda-python"
        except (ImportError, ValueError):
            continue
    return None


def open_cuda_host(prefer: str | None = None, device: int = 0):
    """A host-API object (pycuda first, then cuda-python); BackendError naming the fix."""
    order = [prefer] if prefer else ["pycuda", "cuda-python"]
    reasons = []
    for name in order:
        try:
            return PyCudaHost(device) if name == "pycuda" else CudaPythonHost(device)
        except ImportError as exc:
            reasons.append(f"{name}: {exc}")
        except BackendError:
            raise
        except Exception as exc:  # pycuda.driver.Error (no GPU, driver mismatch)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BackendError(f"{name} cannot initialise CUDA device {device} ({first}); "
                               "run shfan-doctor for the fix") from None
    raise BackendError(f"no CUDA host API for the TensorRT backend ({'; '.join(reasons)}); {INSTALL_HINT}")
