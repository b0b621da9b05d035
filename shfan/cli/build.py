"""shfan-build: checkpoint (or shfan ONNX) -> fp32/fp16/int8 ONNX with the subpixel decoder ->
TensorRT engine when TensorRT is here; every precision's accuracy measured in ONNX Runtime."""

from __future__ import annotations

import sys

from shfan.builder.options import BuildOptions
from shfan.cli.common import INTERRUPTED, Parser, add_dataclass_options, checked_options, entry, fail, options_from


def build_parser():
    ap = Parser(prog="shfan-build", description=__doc__, check=check_args)
    src = ap.add_argument_group("model source (one of)")
    add_dataclass_options(src, BuildOptions, ["weights", "onnx"])
    add_dataclass_options(ap, BuildOptions, ["precision", "target", "calib_data", "max_calib", "calib_method",
                                             "max_nme_drift", "decoder", "plugin_lib", "max_batch", "workspace_mb",
                                             "out", "force", "triton_repo"])
    return ap


def check_args(ap, args) -> None:
    checked_options(ap, BuildOptions, args)  # BuildOptions' own checks (--weights with --onnx): exit 2


def _excluded(names: list[str]) -> str:
    """Short form for the table (calibration.json has the full list)."""
    if not names:
        return "—"
    short = ", ".join(n.strip("/") for n in names[:2])
    return short + (f" +{len(names) - 2} more" if len(names) > 2 else "")


def summary_table(result, total_s: float):
    from rich.table import Table

    m = result.manifest
    ref = (m.calibration or {}).get("reference") or "n/a"
    table = Table(title=f"shfan-build → {result.out}  ({total_s:.1f} s{', reused' if result.reused else ''})")
    for col, justify in (("precision", "left"), ("size", "right"), ("NME (%)", "right"), ("drift", "right"),
                         ("ORT CPU ms", "right"), ("engine", "left"), ("kept out of int8", "left")):
        table.add_column(col, justify=justify)
    for (p, target), a in m.artifacts.items():
        mark = " ★" if p == m.selected_precision else ""
        label = f"{p} (CPU)" if target == "cpu" else p
        nme = "—" if a.nme_inter_ocular is None else f"{a.nme_inter_ocular:.3f}"
        drift = "—" if a.nme_drift is None else f"{a.nme_drift:+.3f}"
        if p == "fp32" and ref == "fp32 predictions":  # no ground truth: fp32 is what the others are scored against
            nme, drift = "reference", "—"
        table.add_row(label + mark, f"{a.size_bytes / 1e6:.1f} MB", nme, drift, f"{a.ort_cpu_latency_ms:.1f}",
                      a.engine or "—", _excluded(a.excluded_layers))
    table.caption = (f"★ selected · NME on held-out faces vs {ref} · decoder {m.decoder} · "
                     "latency: ONNX Runtime on this CPU, batch 1 (a proxy, not the Jetson)")
    return table


@entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from shfan.builder.workflow import build
    from shfan.builder.progress import Stages

    err = Console(stderr=True, highlight=False)
    stages = Stages(lambda line: err.print(line, markup=False, soft_wrap=True))
    opts = options_from(BuildOptions, args, progress=not args.quiet)  # bars only on a terminal; build() takes --out as text
    try:  # Ctrl-C or SIGTERM (common.entry) unwind, so the staged folder is removed
        result = build(opts, stages)
    except KeyboardInterrupt:
        fail(f"interrupted; {args.out} was left as it was", code=INTERRUPTED)
    if args.triton_repo:
        err.print(f"Triton model repository: {args.triton_repo} (see its README.md)", markup=False)
    console = Console()
    console.print(summary_table(result, stages.total))
    if not result.tensorrt:
        console.print("TensorRT is not installed here, so no engine was built; "
                      "the ONNX files run in ONNX Runtime now.", highlight=False)
    console.print("next:", highlight=False)
    for cmd in result.next_commands:
        console.print(f"  {cmd}", highlight=False, markup=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
