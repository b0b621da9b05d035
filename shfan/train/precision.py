"""The arithmetic a training step runs in: bf16 autocast (weights, AdamW state and the losses stay
fp32) or fp32. auto picks bf16 where the hardware does it natively: CUDA, and CPUs with AMX or
AVX512-BF16 (oneDNN's bf16 convolutions, with channels_last). Measured side by side on this
project's Xeon (amx_bf16) by benchmarks/train_precision.py: BENCHMARKS.md §12. Elsewhere bf16 is
emulated and slower than fp32, so auto stays fp32 there."""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")  # TrainConfig.precision (the first, the default)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def use_bf16(precision: str, device_type: str, flags: set[str] | None = None) -> bool:
    """Whether a step autocasts to bf16: as asked, or (auto) on CUDA and on a CPU with native bf16."""
    if precision != "auto":
        return precision == "bf16"
    if device_type == "cuda":
        return True
    return bool(set(NATIVE_BF16_FLAGS) & (cpu_flags() if flags is None else flags))
