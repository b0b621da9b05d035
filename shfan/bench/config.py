"""What shfan-bench measures and how often (BenchConfig), its names and its one error type.
No numpy here, but importing it runs shfan/bench/__init__, which loads numpy (through cases)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from shfan.builder.precision import CALIB_METHODS, TARGETS
from shfan.contracts import PRECISIONS
from shfan.errors import ShfanError
from shfan.options import check_fields, option

ORT_PRECISIONS = PRECISIONS  # every precision of a build folder runs in ONNX Runtime
TRT_PRECISIONS = ("fp16", "int8")
TRT_DECODERS = ("plugin", "onnx")
BATCH_STAGES = ("preprocess", "infer", "decode", "postprocess")
PIPELINE_STAGES = ("detect", "preprocess", "infer", "postprocess", "total")
FRAME_SIZE = (640, 480)
FPS = 30.0


class BenchError(ShfanError, RuntimeError):
    """A benchmark that cannot run as asked (missing model, bad option)."""


@dataclass
class BenchConfig:
    """What to measure and how often. Defaults keep the full run under 5 minutes on 2 cores."""

    model: Path | None = None
    precisions: tuple[str, ...] = ORT_PRECISIONS
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    warmup: int = option(3, "untimed runs first (default 3)", "nonneg")
    repeats: int = option(20, "timed runs per batch size (default 20)", "positive")
    frames: int = option(90, "demo frames for pipeline FPS (default 90)", "positive")
    baseline_frames: int = option(10, "demo frames for the FAN-4 baseline (default 10; ~0.6 s each on 2 cores)",
                                  "positive")
    baseline: bool = option(True, "skip the PyTorch baseline")  # the switch is --no-baseline
    baseline_weights: Path | None = None
    calib_data: str | None = None
    max_calib: int = option(128, "calibration faces (default 128: speed, not accuracy, is measured here)",
                            "positive")
    calib_method: str = option("percentile", "int8 activation ranges (default percentile)", choices=CALIB_METHODS)
    cache_dir: Path | None = None
    detector_model: str | None = None
    threads: int | None = option(None, "ONNX Runtime intra-op threads (default: cores, at most 8)", "positive")
    tensorrt: bool = option(True, "skip TensorRT even where it is installed")  # the switch is --no-tensorrt
    compare: tuple[str, ...] = ("dlib",)  # other pipelines timed on the same frames when installed (bench.others)
    target: str = option("all", "int8 files built for a .onnx/checkpoint model (default all: the CPU file and the "
                                "TensorRT-style file, each timed in ONNX Runtime)", choices=TARGETS)

    def __post_init__(self):
        check_fields(self, BenchError)  # the declared ranges and choices, as shfan-bench's options check them

    def validate(self) -> "BenchConfig":
        """BenchError naming the first bad option: the declared fields (check_fields), then the lists
        and the paths the declarations cannot say."""
        check_fields(self, BenchError)
        bad = [p for p in self.precisions if p not in ORT_PRECISIONS]
        if bad or not self.precisions:
            raise BenchError(f"unknown precision {', '.join(bad) or '(none)'}; choose from {', '.join(ORT_PRECISIONS)}")
        if not self.batch_sizes or any(b < 1 or b > 64 for b in self.batch_sizes):
            raise BenchError("--batch-sizes must be integers from 1 to 64, e.g. 1,2,4,8")
        from shfan.bench.others import PIPELINES

        unknown = [name for name in self.compare if name not in PIPELINES]
        if unknown:
            raise BenchError(f"unknown pipeline to compare {', '.join(unknown)}; choose from {', '.join(PIPELINES)} "
                             "(or none)")
        if self.baseline_weights and not Path(self.baseline_weights).is_file():
            raise BenchError(f"--baseline-weights {self.baseline_weights}: no such checkpoint")
        return self


def quick(config: BenchConfig) -> BenchConfig:
    """A smoke run: every code path once, minimal repeats."""
    return replace(config, batch_sizes=tuple(b for b in config.batch_sizes if b <= 2) or (1,), warmup=1, repeats=3,
                   frames=8, baseline_frames=2)


def validate(config: BenchConfig) -> None:
    config.validate()
