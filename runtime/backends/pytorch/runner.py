"""PyTorch backend behind the same `infer(crops) -> (points, scores)` seam as the others (its spec
is this package's __init__). It wraps a live model (`TorchBackend(model, device)`) so training
validation scores through the same seam, or opens a checkpoint (`from_checkpoint`) for
shfan-eval. torch is imported inside, so importing this module stays light."""

from __future__ import annotations

import numpy as np

from shfan.contracts import ModelInfo


class TorchBackend:
    name = "pytorch"
    outputs_heatmaps = True  # the network's heatmaps are decoded by codec_torch, so both halves can be timed

    def __init__(self, model, device="cpu", decoder: str = "subpixel"):
        """A live nn.Module on `device`, used as it is (its train/eval mode, dtype and weights
        untouched; close() only drops the reference)."""
        import torch

        from shfan import codec_torch

        self._torch, self._codec = torch, codec_torch
        self.model, self.device, self.decoder = model, device, decoder
        self.info = ModelInfo.from_config(model.config.to_dict())

    @classmethod
    def from_checkpoint(cls, checkpoint, decoder: str = "subpixel", threads: int | None = None) -> "TorchBackend":
        """A checkpoint's model: fp32, eval mode, on the CPU (`threads`: torch's intra-op threads)."""
        import torch

        from shfan.model import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        return cls(load_checkpoint(checkpoint).float().eval(), "cpu", decoder)

    def _heatmaps(self, crops: np.ndarray):
        """The network's heatmaps as a tensor on the model's device."""
        with self._torch.no_grad():
            return self.model(self._torch.from_numpy(np.ascontiguousarray(crops, np.float32)).to(self.device))

    def infer_heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """The network alone: heatmaps [N, K, H, W] float32 as a NumPy array (as the ONNX Runtime
        backend returns them, so a timing of this half includes the device sync and copy)."""
        return self._heatmaps(crops).float().cpu().numpy()

    def decode_heatmaps(self, heatmaps):
        """The decoder alone (codec_torch, on the heatmaps' device; NumPy heatmaps on the CPU):
        (points [N, K, 2] in input px, scores [N, K]) as NumPy arrays."""
        hm = heatmaps if isinstance(heatmaps, self._torch.Tensor) else self._torch.from_numpy(np.asarray(heatmaps))
        with self._torch.no_grad():
            pts, scores = self._codec.decode(hm, self.decoder, self.info.window, self.info.temperature)
            return (pts * (self.info.input_size / hm.shape[-1])).cpu().numpy(), scores.cpu().numpy()

    def infer(self, crops: np.ndarray):
        """Network then decoder, the heatmaps staying on the model's device."""
        return self.decode_heatmaps(self._heatmaps(crops))

    def close(self):
        self.model = None
