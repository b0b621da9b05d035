"""The old import path of the inference seam, kept for callers and user code that use it; the
seam, the registry and `open_backend` live in shfan.runtime.backends."""

from shfan.contracts import ModelInfo
from shfan.errors import BackendError
from shfan.runtime.backends import Backend, decode_heatmaps, open_backend

__all__ = ["ModelInfo", "BackendError", "Backend", "decode_heatmaps", "open_backend"]
