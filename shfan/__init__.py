"""shfan: SH-FAN subpixel facial landmarks, from PyTorch to TensorRT on Jetson.

Importing shfan is light (numpy only); torch, onnx, tensorrt and pycuda load only in the
modules that need them.
"""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it, `shfan --version` prints it


def __getattr__(name):
    # Lazy so that `import shfan` stays light; the pipeline pulls in OpenCV and a backend.
    if name in ("Pipeline", "PipelineOptions", "Result", "Face"):
        from shfan.runtime import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'shfan' has no attribute {name!r}")
