"""The ONNX Runtime backend: build folders and .onnx files, on the CPU (or the CUDA provider
where onnxruntime-gpu finds a GPU). The backend class is `runner.OnnxRuntimeBackend`;
onnxruntime is imported only by `open`."""

from __future__ import annotations

from pathlib import Path

from shfan import platform_facts
from shfan.contracts import BuildManifest
from shfan.errors import BackendError
from shfan.runtime.backends import BackendSpec, is_checkpoint, is_engine, register


def accepts(path) -> bool:
    """Build folders and any file but an engine or a checkpoint: ONNX Runtime tries every other
    file, and its load error says what is wrong with it."""
    path = Path(path)
    return path.is_dir() or not (is_engine(path) or is_checkpoint(path))


def open_model(model, *, precision: str | None = None, decoder: str = "subpixel", threads: int | None = None):
    """A shfan-build folder (its `precision` file) or an .onnx file. Any other file is handed to
    ONNX Runtime, whose load error names it; only engines are refused up front."""
    path = Path(model)
    if is_engine(path):
        raise BackendError(f"{path} is a TensorRT engine, which ONNX Runtime cannot run; use backend tensorrt "
                           "(on the machine it was built for), or the shfan-build folder / .onnx it came from")
    from shfan.runtime.backends.onnxruntime.runner import OnnxRuntimeBackend, cuda_device_present

    # the CPU int8 file where ONNX Runtime runs on the CPU; with a GPU its CUDA provider takes
    # the TensorRT-style file (it has no integer convolution kernels)
    if not path.is_dir():
        return OnnxRuntimeBackend(path, decoder=decoder, threads=threads)
    manifest = BuildManifest.read(path)
    backend = OnnxRuntimeBackend(manifest.onnx_for(path, precision, cpu=not cuda_device_present()), decoder=decoder,
                                 threads=threads)
    try:
        manifest.check_model(path, backend.info)
    except BackendError:
        backend.close()
        raise
    return backend


SPEC = register(BackendSpec(
    name="onnxruntime", summary="ONNX Runtime: CPU everywhere, CUDA provider with onnxruntime-gpu and a GPU",
    module="shfan.runtime.backends.onnxruntime.runner", open=open_model, accepts=accepts,
    library="onnxruntime", dists=platform_facts.ONNXRUNTIME_DISTS, priority=20, title="ONNX Runtime"))
