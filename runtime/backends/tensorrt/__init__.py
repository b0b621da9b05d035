"""The TensorRT backend: serialized engines (.engine/.plan) and the engines of shfan-build
folders, on the GPU they were built for; auto's first choice for both where TensorRT is here
(a build folder whose engine cannot run falls back to ONNX Runtime). The backend class is
`runner.TensorRTBackend`; tensorrt and the CUDA host API are imported only by `open`. Whether
TensorRT is here is shfan.platform_facts' fact, this spec's `available()`."""

from __future__ import annotations

from pathlib import Path

from shfan import platform_facts
from shfan.errors import BackendError
from shfan.runtime.backends import BackendSpec, is_engine, register

NOT_AVAILABLE = ("TensorRT is not available here (python -c 'import tensorrt' fails); "
                 "use the onnxruntime backend, or run shfan-doctor for the fix")


def accepts(path) -> bool:
    path = Path(path)
    return path.is_dir() or is_engine(path)


def open_model(model, *, precision: str | None = None, decoder: str = "subpixel", threads: int | None = None):
    """A shfan-build folder's engine (`precision`, default the selected one) or an engine file.
    `threads` is ignored: the GPU runs the network."""
    path = Path(model)
    if not accepts(path):
        raise BackendError(f"backend tensorrt runs a shfan-build folder or .engine, not {path.name}; build one "
                           "with shfan-build (on the Jetson), or use backend onnxruntime or auto")
    if not SPEC.available():
        raise BackendError(NOT_AVAILABLE)
    from shfan.runtime.backends.tensorrt.runner import TensorRTBackend

    return TensorRTBackend.open(path, precision=precision, decoder=decoder)


SPEC = register(BackendSpec(
    name="tensorrt", summary="TensorRT engines built by shfan-build for this GPU (Jetson, desktop)",
    module="shfan.runtime.backends.tensorrt.runner", open=open_model, accepts=accepts,
    library=platform_facts.TENSORRT_MODULE, dists=platform_facts.TENSORRT_DISTS, priority=30,
    title="TensorRT engine"))
