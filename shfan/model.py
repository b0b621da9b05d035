"""FAN / SH-FAN: stacked hourglass network as in face-alignment (Bulat & Tzimiropoulos).

Parameter names match face-alignment's 2DFAN4 state dict, so the official checkpoints
(`2DFAN4-11f355bf06.pth.tar`, TorchScript `2DFAN4-cd938726ad.zip`) load unchanged. SH-FAN
changes how heatmaps are encoded and decoded (shfan.codec), not the network.
Input: RGB in [0, 1], [B, 3, S, S]; output: heatmaps [B, K, S/4, S/4] of the last stack
(`forward_all` returns every stack, for intermediate supervision).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shfan.contracts import ModelConfig  # re-exported: shfan.model.ModelConfig
from shfan.errors import CheckpointError  # re-exported: shfan.model.CheckpointError

__all__ = ["ModelConfig", "FAN", "FastFAN", "build", "ConvBlock", "HourGlass", "conv3x3", "CheckpointError",
           "infer_config", "save_checkpoint", "load_checkpoint"]


def conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation block with three 3x3 branches (out/2, out/4, out/4) concatenated."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout // 2)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = conv3x3(cout // 2, cout // 4)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = conv3x3(cout // 4, cout // 4)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, kernel_size=1, bias=False))

    def forward(self, x):
        out1 = self.conv1(F.relu(self.bn1(x), True))
        out2 = self.conv2(F.relu(self.bn2(out1), True))
        out3 = self.conv3(F.relu(self.bn3(out2), True))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class ConvBNReLU(nn.Sequential):
    """conv -> BN -> ReLU: the BatchNorm folds into the convolution at export."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(True))


class ResBlock(nn.Module):
    """Post-activation residual block (two 3x3 conv -> BN, ReLU after the sum): every BatchNorm
    follows its convolution, so the exported graph is convolutions, adds and ReLUs only."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvBNReLU(cin, cout)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + x, True)


class HourGlass(nn.Module):
    def __init__(self, depth: int, features: int, block=ConvBlock):
        super().__init__()
        self.depth = depth
        self._build(depth, features, block)

    def _build(self, level, f, block):
        self.add_module(f"b1_{level}", block(f, f))
        self.add_module(f"b2_{level}", block(f, f))
        if level > 1:
            self._build(level - 1, f, block)
        else:
            self.add_module(f"b2_plus_{level}", block(f, f))
        self.add_module(f"b3_{level}", block(f, f))

    def _forward(self, level, x):
        up1 = self._modules[f"b1_{level}"](x)
        low1 = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        if level > 1:
            low2 = self._forward(level - 1, low1)
        else:
            low2 = self._modules[f"b2_plus_{level}"](low1)
        low3 = self._modules[f"b3_{level}"](low2)
        return up1 + F.interpolate(low3, scale_factor=2.0, mode="nearest")

    def forward(self, x):
        return self._forward(self.depth, x)


def add_stack_heads(model: nn.Module, config: ModelConfig) -> None:
    """Each stack's heatmap head l{i} and, between stacks, the 1x1 convs (bl{i} from the
    features, al{i} from the heatmaps) that feed the next stack (face-alignment's names)."""
    c, k = config.width, config.landmarks
    for i in range(config.stacks):
        model.add_module(f"l{i}", nn.Conv2d(c, k, kernel_size=1))
        if i < config.stacks - 1:
            model.add_module(f"bl{i}", nn.Conv2d(c, c, kernel_size=1))
            model.add_module(f"al{i}", nn.Conv2d(k, c, kernel_size=1))


def stacked_heatmaps(model: nn.Module, x) -> list:
    """Every stack's heatmaps (intermediate supervision): stack i reads the previous input plus
    its features and heatmaps mapped back to the feature width."""
    previous, outputs = x, []
    for i in range(model.config.stacks):
        ll = model.features(i, previous)
        heatmaps = model._modules[f"l{i}"](ll)
        outputs.append(heatmaps)
        if i < model.config.stacks - 1:
            previous = previous + model._modules[f"bl{i}"](ll) + model._modules[f"al{i}"](heatmaps)
    return outputs


class FAN(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        c, k = config.width, config.landmarks
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, c)
        for i in range(config.stacks):
            self.add_module(f"m{i}", HourGlass(4, c))
            self.add_module(f"top_m_{i}", ConvBlock(c, c))
            self.add_module(f"conv_last{i}", nn.Conv2d(c, c, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(c))
        add_stack_heads(self, config)

    def features(self, i, x):
        """Stack i's features before its heatmap head."""
        ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](x))
        return F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)), True)

    def forward_all(self, x):
        x = F.relu(self.bn1(self.conv1(x)), True)
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        return stacked_heatmaps(self, self.conv4(self.conv3(x)))

    def forward(self, x):
        return self.forward_all(x)[-1]


class FastFAN(nn.Module):
    """The `fast` model: a narrow hourglass of conv -> BN -> ReLU residual blocks behind a
    two-conv stride-4 stem (FAN's stem alone costs 0.34 GMAC at 128 px). 1 x 64 at 128 px:
    0.26 GMAC per face against the compact model's 1.24. Same inputs, outputs and stacking
    (intermediate supervision) as FAN."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, k = config.width, config.landmarks
        self.stem = nn.Sequential(ConvBNReLU(3, 32, 3, 2), ConvBNReLU(32, c, 3, 2))
        for i in range(config.stacks):
            self.add_module(f"m{i}", HourGlass(4, c, ResBlock))
            self.add_module(f"head{i}", ConvBNReLU(c, c, 1))
        add_stack_heads(self, config)

    def features(self, i, x):
        return self._modules[f"head{i}"](self._modules[f"m{i}"](x))

    def forward_all(self, x):
        return stacked_heatmaps(self, self.stem(x))

    def forward(self, x):
        return self.forward_all(x)[-1]


def build(config: ModelConfig) -> nn.Module:
    """The network a config describes (its `arch`)."""
    return FastFAN(config) if config.arch == "fast" else FAN(config)


def first_stacks(model: FAN, stacks: int) -> FAN:
    """A FAN of the first `stacks` hourglasses of `model`, with their weights: its output is
    `model`'s intermediate heatmaps after that stack (trained by the intermediate supervision),
    at the cost of that many stacks. v3's first stack alone: validation NME 3.96 vs 3.74 for
    0.71x the GMAC (BENCHMARKS.md §7), a start for fine-tuning a faster model."""
    if not 1 <= stacks <= model.config.stacks:
        raise ValueError(f"a {model.config.stacks}-stack model has no first {stacks} stacks "
                         f"(choose 1..{model.config.stacks})")
    smaller = build(dataclasses.replace(model.config, stacks=stacks))
    mine = smaller.state_dict()
    smaller.load_state_dict({k: v for k, v in model.state_dict().items() if k in mine}, strict=True)
    return smaller.train(model.training)


# --- checkpoints -------------------------------------------------------------------------


def infer_config(state_dict: dict, **overrides) -> ModelConfig:
    """Read stacks, width and landmarks off a FAN state dict (e.g. face-alignment's)."""
    try:
        stacks = 1 + max(int(k[len("l"):].split(".")[0]) for k in state_dict
                         if k.startswith("l") and k[1].isdigit())
        k_out, width = state_dict["l0.weight"].shape[:2]
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError("not a FAN state dict (no 'l0.weight' head)") from exc
    cfg = dict(stacks=stacks, width=int(width), landmarks=int(k_out))
    cfg.update(overrides)
    return ModelConfig.from_dict(cfg)


def save_checkpoint(model: FAN, path, **extra) -> None:
    """Our format: {'config', 'state_dict', ...extra}; written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from shfan.atomic import atomic_path

    with atomic_path(path) as tmp:  # removed on failure (disk full): no stray .tmp beside the run
        torch.save({"format": "shfan-checkpoint-v1", "config": model.config.to_dict(),
                    "state_dict": model.state_dict(), **extra}, tmp)


def _read_checkpoint(path: Path):
    """Plain or wrapped state dict, or TorchScript archive -> (state_dict, config dict or None)."""
    import zipfile

    if zipfile.is_zipfile(path):
        try:
            from shfan.io import library_path

            with library_path(path) as name:  # torch's C++ loader takes UTF-8 names only
                scripted = torch.jit.load(name, map_location="cpu")
            return {k: v for k, v in scripted.state_dict().items()}, None
        except RuntimeError:
            pass  # a regular torch.save zip archive
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({type(exc).__name__})") from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        return obj["state_dict"], obj.get("config")
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    raise CheckpointError(f"{path}: not a FAN checkpoint (expected a state dict)")


def load_checkpoint(path, **config_overrides) -> FAN:
    """Load our checkpoints, face-alignment's 2DFAN4 (.pth.tar state dict) or its TorchScript
    zip. Foreign checkpoints carry no config: architecture is read off the weights and input
    size defaults to 256 (override with config_overrides)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    state, cfg = _read_checkpoint(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    config = (ModelConfig.from_dict({**cfg, **config_overrides}) if cfg
              else infer_config(state, **config_overrides))
    model = build(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit a {config.stacks}-stack {config.arch} network "
                              f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    return model.eval()
