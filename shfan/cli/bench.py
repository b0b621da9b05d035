"""shfan-bench: per-stage latency and pipeline FPS for every backend and precision here
(ONNX Runtime fp32/fp16/int8; TensorRT fp16/int8 with plugin and ONNX-ops decoders where
TensorRT is installed), against a face-alignment-style FAN-4 PyTorch baseline on the same
demo frames (benchmarks/face_alignment_baseline.py: loaded from a source checkout, or from
$SHFAN_BASELINE_SCRIPT; an installed package without it reports the baseline as skipped)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from shfan.cli.common import (Parser, add_dataclass_options, entry, existing_file, existing_path, options_from,
                               writable_dir)

# The baseline lives beside the package in a source checkout, not in the wheel (it needs torch);
# an installed shfan-bench takes a checkout's copy from $SHFAN_BASELINE_SCRIPT.
BASELINE_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "face_alignment_baseline.py"
ENV_BASELINE_SCRIPT = "SHFAN_BASELINE_SCRIPT"


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas (e.g. 1,2,4,8), got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one batch size")
    return values


def name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def precision_list(text: str) -> tuple[str, ...]:
    from shfan.bench import ORT_PRECISIONS

    names = name_list(text)
    bad = [n for n in names if n not in ORT_PRECISIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown precision {', '.join(bad) or '(none)'}; "
                                         f"choose from {', '.join(ORT_PRECISIONS)}")
    return names


def compare_list(text: str) -> tuple[str, ...]:
    from shfan.bench.others import PIPELINES

    names = tuple(n for n in name_list(text) if n != "none")
    bad = [n for n in names if n not in PIPELINES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown pipeline {', '.join(bad)}; choose from {', '.join(PIPELINES)} or none")
    return names


def batch_list(text: str) -> tuple[int, ...]:
    values = int_list(text)
    if any(b < 1 or b > 64 for b in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be from 1 to 64, got {text!r}")
    return values


def build_parser():
    from shfan.bench import BenchConfig

    d = BenchConfig()
    ap = Parser(prog="shfan-bench", description=__doc__)
    ap.add_argument("--model", help="shfan-build folder (used as is), .onnx or checkpoint (fp16/int8 built once into "
                                    "the cache) (default: the shipped model)")
    ap.add_argument("--precisions", type=precision_list, default=d.precisions,
                    help=f"comma-separated (default {','.join(d.precisions)})")
    ap.add_argument("--batch-sizes", type=batch_list, default=d.batch_sizes,
                    help=f"comma-separated (default {','.join(map(str, d.batch_sizes))})")
    add_dataclass_options(ap, BenchConfig, ["warmup", "repeats", "frames", "baseline_frames"])
    ap.add_argument("--baseline-weights", type=lambda t: Path(existing_file(t)), help="FAN-4 checkpoint for the baseline (default: random weights; "
                                                          "speed does not depend on them)")
    add_dataclass_options(ap, BenchConfig, ["baseline"])
    ap.add_argument("--compare", type=compare_list, default=d.compare,
                    help="other pipelines timed on the same frames where installed: dlib (default; "
                         "pip install 'shfan[baselines]'), or none")
    add_dataclass_options(ap, BenchConfig, ["tensorrt"])
    ap.add_argument("--calib-data", type=existing_path, help="faces for int8 calibration (folder, 300-W folder or video; "
                                         "default: the builder's built-in fallback face)")
    add_dataclass_options(ap, BenchConfig, ["max_calib", "calib_method", "target"])
    ap.add_argument("--cache-dir", type=lambda t: Path(writable_dir(t)), help="where built fp16/int8 files are kept (default ~/.cache/shfan/bench)")
    ap.add_argument("--detector-model", type=existing_file, help="YuNet .onnx (default: $SHFAN_DETECTOR_MODEL or the cached download)")
    add_dataclass_options(ap, BenchConfig, ["threads"])
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 1-2, 3 repeats, 8 frames, 2 baseline frames")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress stays on stderr)")
    return ap


def config_from_args(args):
    from shfan.bench import BenchConfig, quick

    config = options_from(BenchConfig, args, model=Path(args.model) if args.model else None)
    return quick(config) if args.quick else config


def load_baseline(path: Path | None = None):
    """run_baseline of benchmarks/face_alignment_baseline.py: `path`, else $SHFAN_BASELINE_SCRIPT,
    else the checkout's beside this package; None when there is none (an installed package:
    shfan.bench.run then reports the baseline as skipped, with the reason)."""
    import os

    path = Path(path or os.environ.get(ENV_BASELINE_SCRIPT) or BASELINE_SCRIPT).expanduser()
    if not path.is_file():
        return None
    module = sys.modules.get("face_alignment_baseline")
    if module is None or getattr(module, "__file__", None) != str(path):
        spec = importlib.util.spec_from_file_location("face_alignment_baseline", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["face_alignment_baseline"] = module
        spec.loader.exec_module(module)
    return module.run_baseline


def print_tables(report: dict, console) -> None:
    """The report as the machine line, the two tables and the summary lines."""
    from shfan.bench import header_line, summary_lines, tables

    console.print(header_line(report))
    for table in tables(report):
        console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False)


def command(argv=None, baseline=None):
    """The work of shfan-bench; `baseline` (see shfan.bench.run) defaults to the checkout's."""
    args = build_parser().parse_args(argv)
    from shfan import bench

    if baseline is None and args.baseline:
        baseline = load_baseline()
    # progress: the shfan.bench log, on stderr through the Parser's logging (-q: none); errors and
    # Ctrl-C: entry() (main, and benchmarks/face_alignment_baseline.py's main)
    report = bench.run(config_from_args(args), baseline)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    from rich.console import Console

    print_tables(report, Console())


@entry
def main(argv=None):
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
