"""PyTorch backend behind the same `infer(crops) -> (points, scores)` seam as the runtime's."""

from __future__ import annotations

import numpy as np

from shfan.runtime.backend import ModelInfo


class TorchBackend:
    name = "pytorch"

    def __init__(self, checkpoint, decoder: str = "subpixel", threads: int | None = None):
        import torch

        from shfan import codec_torch
        from shfan.model import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self._torch, self._codec = torch, codec_torch
        self.model = load_checkpoint(checkpoint).float().eval()
        self.info = ModelInfo.from_config(self.model.config.to_dict())
        self.decoder = decoder

    def infer(self, crops: np.ndarray):
        with self._torch.no_grad():
            hm = self.model(self._torch.from_numpy(np.ascontiguousarray(crops, np.float32)))
            pts, scores = self._codec.decode(hm, self.decoder, self.info.window, self.info.temperature)
        return (pts * (self.info.input_size / hm.shape[-1])).numpy(), scores.numpy()

    def close(self):
        self.model = None
