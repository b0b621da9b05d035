"""The PyTorch backend: training checkpoints, for evaluation where torch is installed (the
runtime never needs it: `runtime=False`, so the pipeline's auto refuses checkpoints with the
export command). The backend class is `runner.TorchBackend`; torch is imported only by `open`."""

from __future__ import annotations

from pathlib import Path

from shfan.errors import BackendError
from shfan.runtime.backends import CHECKPOINT_SUFFIXES, BackendSpec, is_checkpoint, register

REFUSAL = ("{path} is a PyTorch checkpoint; export it first: shfan-build --weights {path} --precision fp32, then "
           "use the build folder; or evaluate the checkpoint itself with the pytorch backend (shfan-eval "
           "--backend pytorch; needs torch)")


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
    from shfan.runtime.backends.pytorch.runner import TorchBackend

    return TorchBackend.from_checkpoint(path, decoder=decoder, threads=threads)


SPEC = register(BackendSpec(
    name="pytorch", summary="PyTorch checkpoints (evaluation and training; needs torch)",
    module="shfan.runtime.backends.pytorch.runner", open=open_model, accepts=accepts,
    library="torch", priority=10, runtime=False, title="PyTorch", refusal=REFUSAL))
