"""The old import path of the TensorRT backend, kept while the builder and the self-test import
`trt_logger` / `EngineRunner` from here; the code is shfan.runtime.backends.tensorrt.runner."""

from shfan.runtime.backends.tensorrt.runner import EngineRunner, TensorRTBackend, trt_logger

__all__ = ["EngineRunner", "TensorRTBackend", "trt_logger"]
