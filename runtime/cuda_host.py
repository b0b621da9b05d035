"""The one module that talks to the CUDA host API: pinned host memory, device memory, a stream,
async copies, synchronisation. Modeled on TensorRT's samples/python/common_runtime.py.

pycuda is the design card's choice; NVIDIA's cuda-python serves where pycuda cannot be built.
Both are imported only when a TensorRT backend is opened.

Threads: pycuda's context stack and cudart's current device are per thread, and pycuda aborts
the interpreter at exit when a context is still pushed. So nothing stays current between calls:
every CUDA call runs inside `host.activate()`, which makes the device current on the calling
thread (pycuda: push the primary context; cuda-python: cudaSetDevice) and undoes it afterwards.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from shfan.errors import BackendError

# What the two errors of a machine without a usable GPU mean (what shfan-doctor then checks).
CUDA_ERROR_HINTS = {
    "cudaErrorInsufficientDriver": " (no NVIDIA driver, or one older than this cuda-python's CUDA: cuda-python 13 "
                                   "needs a CUDA 13 driver; with CUDA 12, e.g. JetPack 6, pip install 'cuda-python<13')",
    "cudaErrorNoDevice": " (the driver sees no GPU; check CUDA_VISIBLE_DEVICES and nvidia-smi)",
}

INSTALL_HINT = ("install pycuda (pip install pycuda, needs the CUDA toolkit; on Jetson see jetson/install.sh) "
                "or cuda-python (pip install cuda-python; with a CUDA 12 driver, e.g. JetPack 6: 'cuda-python<13')")


@dataclass
class DeviceBuffer:
    ptr: int  # device address, as TensorRT's set_tensor_address wants it
    nbytes: int
    handle: object = None  # the library's allocation object (keeps it alive / frees it)


def pinned_array(alloc, shape, dtype) -> tuple[np.ndarray, int]:
    """(array, host address): `alloc(nbytes) -> address` memory seen as `dtype[shape]`.

    The memory is wrapped as bytes and then viewed as the dtype, as TensorRT's
    common_runtime.py does: np.ctypeslib.as_ctypes_type has no float16, so asking it for one
    (an fp16-I/O engine) raised NotImplementedError.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    ptr = int(alloc(max(1, nbytes)))
    raw = np.ctypeslib.as_array(ctypes.cast(ctypes.c_void_p(ptr), ctypes.POINTER(ctypes.c_ubyte)), (max(1, nbytes),))
    return raw[:nbytes].view(dtype).reshape(shape), ptr


class _Host:
    """What both host APIs share: the closed flag and the per-call activation."""

    name = "?"

    def _check_open(self):
        if self.closed:
            raise BackendError(f"the {self.name} CUDA host was closed; open the backend again")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        self._closed = True


class PyCudaHost(_Host):
    """pycuda on the device's primary context (the one the TensorRT runtime uses)."""

    name = "pycuda"

    def __init__(self, device: int = 0):
        import pycuda.driver as cuda

        self.cuda = cuda
        cuda.init()
        self.device = cuda.Device(device)
        self.context = self.device.retain_primary_context()  # not pushed: see activate()
        self._closed = False

    @contextmanager
    def activate(self):
        """The primary context is current on this thread for the block, and popped after it,
        so pycuda's per-thread context stack is empty between calls (and at exit)."""
        self._check_open()
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

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
                b.handle, b.ptr = None, 0
            elif isinstance(b, np.ndarray) and hasattr(b.base, "free"):
                b.base.free()  # pagelocked_empty's HostAllocation

    def close(self):
        self.context = None  # pycuda releases the retained primary context with the object
        super().close()


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class CudaPythonHost(_Host):
    """cuda-python's runtime API (cudart), as in NVIDIA's current TensorRT samples."""

    name = "cuda-python"

    def __init__(self, device: int = 0):
        self.rt = _cudart()
        self.device = device
        self._closed = False
        self._pinned: dict[int, int] = {}  # id(array) -> host pointer, for cudaFreeHost
        self._lock = threading.Lock()
        self._check(self.rt.cudaSetDevice(device), f"cudaSetDevice({device})")

    @contextmanager
    def activate(self):
        """cudaSetDevice is per thread: make this backend's device current on the calling one."""
        self._check_open()
        self._check(self.rt.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")
        yield

    def _check(self, result, call: str = "a CUDA call"):
        """The call's value, or BackendError naming the call, the CUDA error and its likely fix."""
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            name = self.rt.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            raise BackendError(f"{call} failed with {name}{CUDA_ERROR_HINTS.get(name, '')}; "
                               "run shfan-doctor to check the driver and GPU")
        return rest[0] if len(rest) == 1 else (rest or None)

    def device_name_and_sm(self) -> tuple[str, int]:
        props = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return name, props.major * 10 + props.minor

    def pinned(self, shape, dtype) -> np.ndarray:
        array, ptr = pinned_array(lambda n: int(self._check(self.rt.cudaMallocHost(n), "cudaMallocHost")), shape, dtype)
        with self._lock:
            self._pinned[id(array)] = ptr
        return array

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check(self.rt.cudaMalloc(max(1, int(nbytes))), "cudaMalloc")
        return DeviceBuffer(int(ptr), int(nbytes), None)

    def stream(self):
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    @staticmethod
    def stream_handle(stream) -> int:
        return int(stream)

    def h2d(self, dst: DeviceBuffer, src: np.ndarray, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync")

    def d2h(self, dst: np.ndarray, src: DeviceBuffer, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, kind, stream), "cudaMemcpyAsync")

    def sync(self, stream):
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def free(self, buffers, stream=None):
        for b in buffers:
            if isinstance(b, DeviceBuffer) and b.ptr:
                self.rt.cudaFree(b.ptr)
                b.ptr = 0
            elif isinstance(b, np.ndarray):
                with self._lock:
                    ptr = self._pinned.pop(id(b), None)
                if ptr is not None:
                    self.rt.cudaFreeHost(ptr)
        if stream is not None:
            self.rt.cudaStreamDestroy(stream)


def available_host_api() -> str | None:
    """'pycuda', 'cuda-python' or None, without initialising CUDA."""
    found = available_host_apis()
    return found[0] if found else None


def available_host_apis() -> list[str]:
    """Every importable host API, preferred first (checked without importing them)."""
    from shfan.platform_facts import module_available

    found = ["pycuda"] if module_available("pycuda") else []
    # `cuda` alone may be a namespace left by other NVIDIA wheels; look for the runtime bindings.
    if any(module_available(name) for name in ("cuda.bindings.runtime", "cuda.cudart")):
        found.append("cuda-python")
    return found


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
