"""Precision lives in the ONNX file (DESIGN.md §5): fp16 via ModelOpt AutoCast, int8 via
ModelOpt ONNX PTQ (symmetric int8 Q/DQ). TensorRT then builds a strongly typed network from
it, and ONNX Runtime runs the very same file on CPU to measure its accuracy here."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from shfan.builder.metadata import get_metadata, set_metadata
from shfan.errors import BuildError
from shfan.contracts import PRECISIONS  # re-exported: the builder's precision table

CHOICES = PRECISIONS + ("best",)
# percentile (default) and max: ranges measured by calibration.ranges, given to ModelOpt as a
# TensorRT cache; entropy: ModelOpt's own KL calibration (clips too, ~10x slower on CPU).
CALIB_METHODS = ("percentile", "max", "entropy")


# The packages whose logging the quantization steps silence below ERROR (nothing else's).
NOISY_PACKAGES = ("modelopt", "onnx", "onnxruntime")


class _FromNoisyPackages(logging.Filter):
    """Drops records below ERROR that code inside NOISY_PACKAGES sends through the root logger
    (onnxruntime.quantization calls logging.info/warning directly: a note per tensor)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not set(Path(record.pathname).parts) & set(NOISY_PACKAGES)


@contextlib.contextmanager
def quiet(streams: bool = True):
    """Keep the builder's one line per stage while ModelOpt / ONNX Runtime quantize: their named
    loggers (ModelOpt gives each modelopt.onnx child its own level, so every one is lowered) and
    their root-logger records go quiet below ERROR; other loggers are untouched. With `streams`,
    stdout and stderr are redirected too, the only way to silence what no logger carries:
    ONNX Runtime's calibrators print() ("Collecting tensor data and making histogram ...",
    "Number of tensors : ...") and ModelOpt's ORT patches draw tqdm bars on stderr during int8
    calibration. Exceptions still propagate (and become one-line errors in the CLI)."""
    names = [n for n in logging.root.manager.loggerDict if any(n.startswith(p + ".") for p in NOISY_PACKAGES)]
    loggers = [logging.getLogger(n) for n in (*NOISY_PACKAGES, *names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    root_filter = _FromNoisyPackages()
    logging.root.addFilter(root_filter)
    sink = io.StringIO()
    try:
        with contextlib.ExitStack() as stack:
            if streams:
                stack.enter_context(contextlib.redirect_stdout(sink))
                stack.enter_context(contextlib.redirect_stderr(sink))
            yield sink
    finally:
        logging.root.removeFilter(root_filter)
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


@contextlib.contextmanager
def _one_line(step: str):
    """ModelOpt failures become one BuildError line (its own log was silenced above)."""
    try:
        yield
    except BuildError:
        raise
    except Exception as exc:  # ModelOpt/ORT raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BuildError(f"{step} failed in ModelOpt ({type(exc).__name__}: {first}); "
                         "try --precision fp16/fp32 or a newer nvidia-modelopt") from None


def _modelopt(what: str):
    try:
        if what == "autocast":
            import modelopt.onnx.autocast as mod
        else:
            import modelopt.onnx.quantization as mod
    except ImportError:
        raise BuildError("fp16/int8 need NVIDIA ModelOpt: pip install 'nvidia-modelopt[onnx]' "
                         "(or build --precision fp32)") from None
    return mod


def _restamp(path: Path, meta: dict, precision: str, extra: dict | None = None):
    """ModelOpt rewrites the graph; put our metadata back with the new precision."""
    import onnx

    model = onnx.load(str(path))
    set_metadata(model, {**meta, "precision": precision, **(extra or {})})
    onnx.save(model, str(path))


def to_fp16(src: Path, dst: Path) -> None:
    """AutoCast the whole graph to fp16, float32 I/O kept (Cast nodes at the edges)."""
    import onnx

    autocast = _modelopt("autocast")
    model = onnx.load(str(src))
    meta = get_metadata(model)
    with quiet(), _one_line("fp16 AutoCast"):
        converted = autocast.convert_to_f16(model, low_precision_type="fp16", keep_io_types=True)
    onnx.save(converted, str(dst))
    _restamp(dst, meta, "fp16")


# Only convolutions get Q/DQ. Quantizing ModelOpt's default op set (residual Adds, Concats,
# pooling, Resize) moved the default model's landmarks by 14.2 heatmap px; Conv-only by 1.0 px.
INT8_OP_TYPES = ("Conv",)


def to_int8(src: Path, dst: Path, calib_crops: np.ndarray, nodes_to_exclude: list[str] | None = None,
            method: str = "entropy", calibration_cache: Path | None = None) -> None:
    """Symmetric int8 Q/DQ on the CPU; the Conv nodes named in `nodes_to_exclude` stay in fp16.
    Activation ranges come from `calibration_cache` (TensorRT format, see calibration.ranges)
    when given, else from ModelOpt's `method` calibration over `calib_crops` [N,3,S,S]."""
    import re
    import shutil
    import tempfile

    import onnx

    quantization = _modelopt("quantization")
    meta = get_metadata(onnx.load(str(src), load_external_data=False))

    # ModelOpt writes intermediate files (_named, _opset19, _reconciled) beside its input:
    # quantize a copy in a scratch folder so the build folder only gets the result.
    with tempfile.TemporaryDirectory(prefix="shfan-ptq-") as scratch:
        work = Path(scratch) / Path(src).name
        shutil.copy2(src, work)
        if calibration_cache is not None:
            # ModelOpt still runs a max pass before the cache replaces its scales: keep it short
            calib_crops, method = calib_crops[:16], "max"
        patterns = [f"^{re.escape(name)}$" for name in nodes_to_exclude or []]
        with quiet(), _one_line("int8 quantization"):
            quantization.quantize(str(work), quantize_mode="int8",
                                  calibration_data={"image": calib_crops.astype(np.float32)},
                                  calibration_method=method, calibration_eps=["cpu"],
                                  calibration_cache_path=str(calibration_cache) if calibration_cache else None,
                                  nodes_to_exclude=patterns or None, output_path=str(dst),
                                  op_types_to_quantize=list(INT8_OP_TYPES),
                                  log_level="ERROR", use_zero_point=False)
    if not Path(dst).is_file():
        raise BuildError(f"ModelOpt did not write {dst}; rerun with --precision fp16 or check the log above")
    _restamp(dst, meta, "int8", {"excluded_layers": list(nodes_to_exclude or [])})


# Where an int8 file will run. tensorrt: symmetric int8 Q/DQ on convolutions, the rest fp16
# (above); cpu: ONNX Runtime's CPU provider (calibration.cpu_int8): uint8/int8 QDQ on every op
# with an integer kernel, float parts fp32; all: both files in one build folder.
TARGETS = ("tensorrt", "cpu", "all")


def to_int8_cpu(prepared: Path, dst: Path, ranges: dict, nodes_to_exclude: list[str] | None = None,
                meta: dict | None = None) -> None:
    """int8 for ONNX Runtime's CPU provider from the fp32 graph after calibration.cpu_int8.prepare
    (BatchNorms and pools as depthwise convs) and measured uint8 ranges {tensor: (lo, hi)}."""
    try:
        from shfan.calibration import cpu_int8
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise BuildError("--target cpu needs onnxruntime's quantization tools: pip install onnxruntime "
                         "(or onnxruntime-gpu)") from None
    try:
        with quiet(streams=False):  # the QDQ quantizer only logs (per-tensor notes); no calibrator runs
            cpu_int8.quantize(prepared, dst, ranges, nodes_to_exclude or [], reduce_range=cpu_int8.REDUCE_RANGE)
    except Exception as exc:  # onnxruntime.quantization raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BuildError(f"CPU int8 quantization failed in onnxruntime ({type(exc).__name__}: {first}); "
                         "try --target tensorrt or a newer onnxruntime") from None
    _restamp(Path(dst), meta or {}, "int8", {"target": "cpu", "excluded_layers": list(nodes_to_exclude or [])})
