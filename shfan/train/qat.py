"""Quantization-aware fine-tuning for ONNX Runtime's CPU int8 file (`shfan-train --qat cpu`).

The CPU int8 file (calibration.cpu_int8) rounds every activation to uint8 over a percentile
range of |x| (the tails clipped) and every convolution's weights to 7 bits per output channel.
Some weights lose more to that than others: fast's average of v2 and its fine-tune drifts
+0.17 NME in that file where v2 drifts +0.075 (BENCHMARKS.md §11), and no range choice or
conv exclusion brings it back. Training through the same rounding (straight-through gradients,
none for clipped values) lets the weights settle where the rounding costs little.

The rounding is put on the model in place, so checkpoints keep their keys:
- activations: forward hooks that fake-quantize every tensor the int8 file quantizes (`points`):
  each convolution's input, each bare convolution's output, each conv -> BN output that meets an
  Add, each pre-activation BatchNorm's input (a depthwise conv in that file). Ranges come once
  from training views (`calibrate`) at the build's percentile and stay fixed (saved in last.pt);
- weights: each convolution's forward uses its weight rounded per output channel (7-bit
  symmetric, ONNX Runtime's reduce_range). A BatchNorm after it scales each output channel, which
  per-channel rounding does not notice, so rounding the unfolded weight is rounding the folded one;
- BatchNorm statistics are frozen (eval mode) while training: the ranges are measured with them.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np
import torch
from torch import nn

from shfan.calibration.cpu_int8 import uint8_range as clipped_range

PERCENTILE = 99.9  # of |x|: what shfan-build's search picked for the CPU files of v8, accurate and fast v2
WEIGHT_LEVELS = 64  # int8 with reduce_range, symmetric: [-64, 64] (ONNX Runtime's), scale max|w| / 64
SAMPLES_PER_BATCH = 20_000  # |x| values kept per tensor and calibration batch for the percentile


def points(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, module, "in" | "out"): the tensors the CPU int8 file quantizes, as module inputs
    and outputs. Every Conv2d's input, and the output of a Conv2d not followed by a BatchNorm;
    a BatchNorm after a Conv2d (in one nn.Sequential: folded into it on export) has its output
    rounded unless a ReLU follows; any other BatchNorm (pre-activation: a depthwise conv in the
    CPU file) has its input rounded, its output being read through a ReLU by a Conv2d, which
    rounds it there, as the file does with the ReLU dropped into the quantization."""
    found, after, before = [], {}, {}
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for a, b in zip(children, children[1:]):
                after[id(a)], before[id(b)] = b, a
    for name, module in model.named_modules():
        nxt, prev = after.get(id(module)), before.get(id(module))
        if isinstance(module, nn.Conv2d):
            found.append((f"{name}:in", module, "in"))
            if not isinstance(nxt, nn.BatchNorm2d):
                found.append((f"{name}:out", module, "out"))
        elif isinstance(module, nn.BatchNorm2d):
            if not isinstance(prev, nn.Conv2d):
                found.append((f"{name}:in", module, "in"))
            elif not isinstance(nxt, nn.ReLU):
                found.append((f"{name}:out", module, "out"))
    return found


def uint8_range(absolute: np.ndarray, lo: float, hi: float, percentile: float = PERCENTILE) -> tuple[float, float]:
    """The CPU int8 file's range for one tensor (calibration.cpu_int8.uint8_range) from a sample
    of |x|: its percentile, clipped to the observed [lo, hi]."""
    return clipped_range(float(np.percentile(absolute, percentile)) if absolute.size else 0.0, lo, hi)


def fake_quant_uint8(x, lo: float, hi: float):
    """x rounded to the 256 steps of [lo, hi] (values outside clipped, their gradient zero)."""
    scale = max((hi - lo) / 255.0, 1e-8)
    zero_point = int(min(255, max(0, round(-lo / scale))))
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, 255).to(x.dtype)


def fake_quant_weight(w):
    """w rounded per output channel to [-64, 64] x max|w| / 64 (gradient straight through)."""
    scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))).float() / WEIGHT_LEVELS).clamp_min(1e-12)
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w.float(), scale, zero, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS).to(w.dtype)


def _rounded_conv_forward(self, x):
    return self._conv_forward(x, fake_quant_weight(self.weight), self.bias)


class FakeQuant:
    """The CPU int8 file's rounding on a model, in place: `calibrate` (the ranges), `attach`
    (hooks, rounded conv weights, frozen BatchNorm), `detach`, `suspended()` (fp32 for a while)."""

    def __init__(self, model: nn.Module, ranges: dict[str, tuple[float, float]] | None = None):
        self.model, self.points = model, points(model)
        self.ranges = dict(ranges or {})
        self._handles: list = []

    @torch.no_grad()
    def calibrate(self, batches, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Ranges from the model's fp32 activations on `batches` (image tensors), eval mode."""
        rng = np.random.default_rng(seed)
        seen: dict[str, list] = {name: [] for name, _, _ in self.points}
        lo = {name: np.inf for name in seen}
        hi = {name: -np.inf for name in seen}

        def observe(name):
            def record(x):
                v = x.detach().float().flatten().cpu().numpy()
                lo[name], hi[name] = min(lo[name], float(v.min())), max(hi[name], float(v.max()))
                pick = rng.integers(0, v.size, min(v.size, SAMPLES_PER_BATCH))
                seen[name].append(np.abs(v[pick]))
            return record

        handles = [self._hook(module, where, observe(name)) for name, module, where in self.points]
        was_training = self.model.training
        self.model.eval()
        try:
            for images in batches:
                self.model.forward_all(images)
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        self.ranges = {name: uint8_range(np.concatenate(v), lo[name], hi[name]) for name, v in seen.items() if v}
        return self.ranges

    def attach(self) -> "FakeQuant":
        if self._handles:
            return self
        missing = [name for name, _, _ in self.points if name not in self.ranges]
        if missing:
            raise ValueError(f"no int8 range for {len(missing)} tensors (first {missing[0]}): calibrate first")
        for name, module, where in self.points:
            lo, hi = self.ranges[name]
            self._handles.append(self._hook(module, where, lambda x, lo=lo, hi=hi: fake_quant_uint8(x, lo, hi)))
        for module in self.model.modules():
            if isinstance(module, nn.Conv2d):
                module.forward = types.MethodType(_rounded_conv_forward, module)
        self.freeze_batchnorm()
        return self

    def freeze_batchnorm(self):
        """BatchNorm in eval mode (running statistics, not updated); call after model.train()."""
        if self._handles:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def detach(self):
        for h in self._handles:
            h.remove()
        self._handles = []
        for module in self.model.modules():
            if isinstance(module, nn.Conv2d) and "forward" in vars(module):
                del module.forward

    @contextlib.contextmanager
    def suspended(self):
        """The model in fp32 inside the block (validation), the rounding back after it."""
        attached = bool(self._handles)
        self.detach()
        try:
            yield self.model
        finally:
            if attached:
                self.attach()

    @staticmethod
    def _hook(module, where, fn):
        """fn on the module's first input ("in") or its output ("out"); fn's result replaces it
        unless it returns None."""
        if where == "in":
            def pre(_, args):
                out = fn(args[0])
                return None if out is None else (out, *args[1:])
            return module.register_forward_pre_hook(pre)

        def post(_, __, output):
            return fn(output)
        return module.register_forward_hook(post)
