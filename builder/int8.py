"""The two int8 files, made the same way: ranges measured on the calibration faces (the
percentile of |x| that moves landmarks least on the tuning faces), quantized, then held to
--max-nme-drift by the accuracy guard (calibration.guard), which keeps the most sensitive convs
out of int8 until the held-out drift is within bound. TensorRT: ModelOpt's symmetric Q/DQ on
convs, fp16 elsewhere; CPU: ONNX Runtime's QDQ quantizer, fp32 elsewhere, fusion checked."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from shfan.builder import artifacts
from shfan.builder.metadata import get_metadata
from shfan.builder.options import SENSITIVITY_FACES
from shfan.builder.precision import to_int8, to_int8_cpu
from shfan.calibration import cpu_int8, ranges, sensitivity
from shfan.calibration.guard import guarded_quantize, mean_nme
from shfan.calibration.ort_tools import predict_landmarks

from shfan.errors import BuildError

if TYPE_CHECKING:
    from shfan.builder.steps import Context, Measured


class Tuning:
    """The calibration faces (never the held-out ones) that pick ranges and rank convs, with
    the fp32 file's landmarks on them."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.crops = ctx.calib.crops[:SENSITIVITY_FACES]
        self.fp32 = predict_landmarks(ctx.src, self.crops, ctx.model_config)

    def drift(self, path: Path) -> float:
        return mean_nme(predict_landmarks(path, self.crops, self.ctx.model_config), self.fp32)

    def best_percentile(self, quantize_at: Callable[[float], Path], log: dict) -> tuple[float, str]:
        """The percentile whose file drifts least from fp32 (recorded in `log`), and the scores
        as text for the stage line."""
        scores = {p: self.drift(quantize_at(p)) for p in ranges.PERCENTILES}
        best = min(scores, key=scores.get)
        log["percentile"] = best
        log["percentile_scores"] = {str(p): round(v, 4) for p, v in scores.items()}
        return best, ", ".join(f"{p}: {v:.2f}" for p, v in scores.items())

    def ranker(self, label: str):
        """The guard's `rank` step: each conv alone in int8, ranked by the landmark drift it
        causes on the tuning faces (one progress stage)."""
        ctx = self.ctx

        def rank(int8_path):
            with ctx.st.stage(label) as s:
                ranking = sensitivity.rank_convs(int8_path, self.crops, self.fp32, ctx.model_config,
                                                 progress=_bar("ranking convs", ctx.opts.progress))
                s["detail"] = "worst: " + ", ".join(f"{n} {d:+.2f}" for n, d in ranking[:3])
            return ranking

        return rank


def build_int8(ctx: Context) -> Measured:
    """model_int8.onnx for TensorRT."""
    opts, st, calib, src = ctx.opts, ctx.st, ctx.calib, ctx.src
    ctx.calibration["method"] = f"{opts.calib_method} ranges, ModelOpt ONNX PTQ (symmetric int8 Q/DQ on Conv), CPU"
    dst = ctx.stage_dir / "model_int8.onnx"
    tuning = Tuning(ctx)
    cache = None
    if opts.calib_method in ranges.RANGE_METHODS:
        with st.stage(f"int8 ranges ({opts.calib_method})") as s:
            sample = ranges.sample_conv_inputs(src, calib.crops)
            cache_path = ctx.stage_dir / artifacts.CALIBRATION_CACHE
            if opts.calib_method == "max":
                cache = ranges.write_trt_cache(sample.ranges("max"), cache_path)
                s["detail"] = f"max |x| of {len(sample.amax)} conv inputs over {len(calib)} faces"
            else:
                def at(p):  # every conv in int8 with this percentile's ranges
                    ranges.write_trt_cache(sample.ranges("percentile", p), cache_path)
                    to_int8(src, dst, calib.crops, [], calibration_cache=cache_path)
                    return dst

                best, scores = tuning.best_percentile(at, ctx.calibration)
                cache = ranges.write_trt_cache(sample.ranges("percentile", best), cache_path)
                s["detail"] = (f"{best}th percentile of |x| over {len(calib)} faces (drift vs fp32 on "
                               f"{len(tuning.crops)} of them: {scores})")

    def quantize(excluded):
        with st.stage(f"int8 PTQ ({len(calib)} faces)") as s:
            to_int8(src, dst, calib.crops, excluded, method=opts.calib_method, calibration_cache=cache)
            s["detail"] = f"{len(excluded)} convs kept in fp16" if excluded else "every conv in int8"
        return dst

    rank = tuning.ranker("int8 sensitivity per conv")
    guard = guarded_quantize(quantize, ctx.reference, rank, opts.max_nme_drift, st.note)
    ctx.calibration["guard"] = guard.to_dict()
    return ctx.guarded(dst, guard)


def build_int8_cpu(ctx: Context) -> Measured:
    """model_int8_cpu.onnx for ONNX Runtime's CPU provider (calibration.cpu_int8); the fusion is
    checked on the graph the CPU provider actually runs."""
    import onnx

    opts, st, calib, src = ctx.opts, ctx.st, ctx.calib, ctx.src
    dst = ctx.stage_dir / "model_int8_cpu.onnx"
    meta = get_metadata(onnx.load(str(src), load_external_data=False))
    tuning = Tuning(ctx)
    log = ctx.calibration.setdefault("cpu", {})
    with tempfile.TemporaryDirectory(prefix="shfan-cpu-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        with st.stage("CPU int8 ranges") as s:
            model = cpu_int8.prepare(onnx.load(str(src)))
            onnx.save(model, str(prepared))
            sample = ranges.sample_tensors(model, cpu_int8.tensors_to_quantize(model), calib.crops)
            if opts.calib_method == "max":
                chosen = None
                s["detail"] = f"max of {len(sample.amax)} tensors over {len(calib)} faces"
            else:  # entropy has no uint8 counterpart here: the percentile search stands in for it
                def at(p):
                    to_int8_cpu(prepared, dst, cpu_int8.asymmetric_ranges(sample, p), [], meta)
                    return dst

                chosen, scores = tuning.best_percentile(at, log)
                s["detail"] = (f"{chosen}th percentile of |x| for {len(sample.amax)} tensors over {len(calib)} "
                               f"faces (drift vs fp32: {scores})")
        tensor_ranges = cpu_int8.asymmetric_ranges(sample, chosen)

        def quantize(excluded):
            with st.stage(f"CPU int8 QDQ ({len(calib)} faces)") as s:
                to_int8_cpu(prepared, dst, tensor_ranges, excluded, meta)
                s["detail"] = f"{len(excluded)} convs kept in fp32" if excluded else "every op with an integer kernel"
            return dst

        rank = tuning.ranker("CPU int8 sensitivity per conv")
        guard = guarded_quantize(quantize, ctx.reference, rank, opts.max_nme_drift, lambda m: st.note("cpu: " + m))
    _check_fusion(ctx, dst, log, len(guard.accepted.excluded))
    log["guard"] = guard.to_dict()
    log["method"] = (f"{opts.calib_method} ranges, onnxruntime QDQ quantizer (uint8 activations, "
                     "7-bit symmetric per-channel int8 weights), BatchNorm as depthwise conv")
    if opts.target == "cpu":
        ctx.calibration["method"] = log["method"]
    return ctx.guarded(dst, guard)


def _check_fusion(ctx: Context, dst: Path, log: dict, excluded: int) -> None:
    """BuildError unless ONNX Runtime's CPU provider runs the file's convs as integer kernels."""
    import onnx

    with ctx.st.stage("CPU int8 fusion check") as s:
        report = cpu_int8.fusion_report(dst)
        fp16 = cpu_int8.fp16_tensors(onnx.load(str(dst)))
        log["fusion"] = {k: v for k, v in report.items() if k != "ops"}
        s["detail"] = (f"ONNX Runtime runs {report['integer_convs']} integer convs, {report['float_convs']} float, "
                       f"{report['transposes']} transposes")
    if fp16 or report["integer_convs"] == 0 or report["float_convs"] > excluded:
        raise BuildError(f"the CPU int8 file is not what ONNX Runtime fuses ({report['integer_convs']} integer convs, "
                         f"{report['float_convs']} float, {len(fp16)} fp16 tensors); use --target tensorrt or "
                         "a newer onnxruntime")


def _bar(desc: str, enabled: bool = True):
    """A transient tqdm bar for long loops inside one stage (the stage line stays the record);
    drawn only when asked (BuildOptions.progress) and stderr is a terminal (tqdm's disable=None),
    so logs and library callers get the stage lines only."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit="conv", leave=False, disable=None)
