"""The build as a table of artifact steps. Each row is one model file keyed by (precision,
target): when the build wants it, how to make it (and measure it: NME and drift on the held-out
faces against fp32, ONNX Runtime CPU latency), what failure means (the BuildError raised when
that precision was asked for and it exceeds --max-nme-drift) and what is said when it is
accepted. builder/workflow walks STEPS in order; a new file is a step here (or in its own module)
plus its line in STEPS."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shfan.builder.int8 import build_int8, build_int8_cpu
from shfan.builder.options import BuildOptions
from shfan.builder.precision import to_fp16
from shfan.builder.progress import Stages
from shfan.calibration import face_sets
from shfan.calibration.guard import Reference
from shfan.calibration.ort_tools import latency_ms
from shfan.contracts import ModelConfig


@dataclass
class Measured:
    """One made file, measured."""

    path: Path
    nme: float | None
    drift: float | None
    latency: float  # ms, ONNX Runtime CPU, batch 1
    excluded: tuple[str, ...] = ()  # convs kept out of int8
    within_bound: bool = True  # the guard's 95% bound (int8) or the drift (fp16) within --max-nme-drift
    drift_upper: float | None = None  # the guard's one-sided 95% upper bound on the drift


@dataclass
class Context:
    """What every step reads: the options, the staged folder, the fp32 source, the faces, the
    fp32 reference and the calibration log the steps add to (calibration.json)."""

    opts: BuildOptions
    stage_dir: Path
    st: Stages
    src: Path
    model_config: dict
    calib: object = None  # calibration FaceSet
    heldout: object = None  # held-out FaceSet (the guard's faces, never calibrated on)
    reference: object = None  # calibration.guard.Reference (None for a given fp16/int8 file)
    calibration: dict = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model_config)

    def latency(self, path: Path) -> float:
        return latency_ms(path, self.config.input_size)

    def measure(self, path: Path) -> Measured:
        """NME / drift against the reference, and latency."""
        m = self.reference.measure(path) if self.reference else None
        nme, drift = (m.nme, m.drift) if m else (None, None)
        return Measured(path, nme, drift, self.latency(path))

    def guarded(self, path: Path, guard) -> Measured:
        """The file the accuracy guard accepted (calibration.guard.guarded_quantize), measured by the guard."""
        a = guard.accepted
        return Measured(path, a.nme, a.drift, self.latency(path), tuple(a.excluded), guard.within_bound, a.drift_upper)


@dataclass(frozen=True)
class Step:
    precision: str
    target: str  # "tensorrt" (fp32/fp16: any runtime) or "cpu" (ONNX Runtime's CPU provider)
    wanted: Callable[[BuildOptions], bool]  # besides the precision being built (from an fp32 source)
    make: Callable[[Context], Measured]  # writes the file into ctx.stage_dir and measures it
    failure: Callable[[Measured, float], str] | None = None  # the error when asked for and out of bound
    note: Callable[[Measured], str] | None = None  # the note once made: accepted, or over the bound (--precision best)


def make_fp32(ctx: Context) -> Measured:
    """The source itself; its measurement is the reference the others drift from."""
    with ctx.st.stage("fp32 accuracy + latency") as s:
        ctx.reference = Reference.from_fp32(ctx.src, face_sets.with_jittered_views(ctx.heldout), ctx.model_config)
        ctx.calibration["reference"] = ctx.reference.kind
        m = ctx.measure(ctx.src)
        s["detail"] = (f"NME {m.nme:.3f} vs ground truth, ORT CPU {m.latency:.1f} ms"
                       if ctx.reference.kind == "ground truth"
                       else f"the reference (no ground truth: other precisions are scored against its "
                            f"landmarks), ORT CPU {m.latency:.1f} ms")
    return m


def make_fp16(ctx: Context) -> Measured:
    dst = ctx.stage_dir / "model_fp16.onnx"
    with ctx.st.stage("fp16 (AutoCast)") as s:
        to_fp16(ctx.src, dst)
        m = ctx.measure(dst)
        m.within_bound = m.drift is None or m.drift <= ctx.opts.max_nme_drift
        s["detail"] = f"NME {m.nme:.3f}, drift {m.drift:+.3f}, ORT CPU {m.latency:.1f} ms"
    return m


def fp16_failure(m: Measured, bound: float) -> str:
    return (f"fp16 drift {m.drift:+.3f} NME points exceeds --max-nme-drift {bound}; "
            "build --precision fp32 or raise the bound")


def int8_failure(words: str, kept_in: str):
    """The int8 error: the guard could not bring the drift within bound; `kept_in` is what the
    excluded convs run in, and the precision suggested instead."""
    def failure(m: Measured, bound: float) -> str:
        return (f"{words} drift {m.drift:+.3f} NME points (95% upper bound {m.drift_upper:+.3f}) exceeds "
                f"--max-nme-drift {bound} even with the {len(m.excluded)} most sensitive convs kept in {kept_in}; "
                f"use --precision {kept_in}, more/better --calib-data, or a larger bound")
    return failure


def verdict(m: Measured) -> str:
    """What the guard made of a file: accepted, or (under --precision best, which builds every
    precision and selects among those within the bound) written for inspection and not selected."""
    return "accepted" if m.within_bound else "over the bound even so (written, not selected)"


def int8_note(m: Measured) -> str:
    return (f"int8 {verdict(m)}: NME {m.nme:.3f}, drift {m.drift:+.3f}, {len(m.excluded)} convs kept out of int8"
            f"{': ' + ', '.join(m.excluded) if m.excluded else ''}")


def int8_cpu_note(m: Measured) -> str:
    return (f"CPU int8 {verdict(m)}: NME {m.nme:.3f}, drift {m.drift:+.3f}, {len(m.excluded)} convs kept in fp32, "
            f"ONNX Runtime CPU {m.latency:.1f} ms")


def always(opts: BuildOptions) -> bool:
    return True


def for_target(target: str) -> Callable[[BuildOptions], bool]:
    return lambda opts: opts.wants_target(target)


# precision, target, wanted, make (+ measure), failure, accepted
STEPS = (
    Step("fp32", "tensorrt", always, make_fp32),
    Step("fp16", "tensorrt", always, make_fp16, fp16_failure),
    Step("int8", "tensorrt", for_target("tensorrt"), build_int8, int8_failure("int8", "fp16"), int8_note),
    Step("int8", "cpu", for_target("cpu"), build_int8_cpu, int8_failure("CPU int8", "fp32"), int8_cpu_note),
)
