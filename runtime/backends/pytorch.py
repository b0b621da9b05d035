"""The PyTorch backend's registration: training checkpoints, for evaluation where torch is
installed (the runtime itself never needs it). The backend class is
shfan.torch_backend.TorchBackend; torch is imported only by `open`."""

from __future__ import annotations

from pathlib import Path

from shfan.errors import BackendError
from shfan.runtime.backends import CHECKPOINT_SUFFIXES, BackendSpec, is_checkpoint, register


def accepts(path) -> bool:
    return is_checkpoint(path)


def open_model(model, *, precision: str | None = None, decoder: str = "subpixel", threads: int | None = None):
    """A checkpoint (fp32 on the CPU); `precision` is ignored: a checkpoint has one."""
    path = Path(model)
    if not accepts(path):
        raise BackendError(f"{path}: the pytorch backend needs a checkpoint ({'/'.join(CHECKPOINT_SUFFIXES)})")
    if not SPEC.available():
        raise BackendError("PyTorch is not installed, so checkpoints cannot run here: pip install 'shfan[torch]', "
                           "or export the checkpoint with shfan-build and use the onnxruntime backend")
    from shfan.torch_backend import TorchBackend

    return TorchBackend.from_checkpoint(path, decoder=decoder, threads=threads)


SPEC = register(BackendSpec(
    name="pytorch", summary="PyTorch checkpoints (evaluation and training; needs torch)",
    module="shfan.torch_backend", open=open_model, accepts=accepts,
    library="torch"))
