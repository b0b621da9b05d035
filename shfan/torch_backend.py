"""The old import path of the PyTorch backend, kept while training validation imports
`TorchBackend` from here; the code is shfan.runtime.backends.pytorch.runner."""

from shfan.runtime.backends.pytorch.runner import TorchBackend

__all__ = ["TorchBackend"]
