"""shfan-eval: landmark accuracy (NME, AUC, failure rate) of a model on a dataset."""

from __future__ import annotations

import json
import sys

from shfan.cli.common import (Parser, add_deprecated_alias, add_format_options, add_max_image_pixels, backend_choices, build_precisions,
                              check_format_args, check_model_args, entry, existing_path, positive_int, use_max_image_pixels,
                              writable_file)


def check_args(ap, args) -> None:
    """Usage checks that span several options (each option's own value is checked by its type)."""
    check_format_args(ap, args, [("--data", args.data)])
    check_model_args(ap, args, "a checkpoint, .onnx, a shfan-build folder or .engine")


def build_parser():
    from shfan.codec import METHODS
    from shfan.evaluate import VIEWS

    ap = Parser(prog="shfan-eval", description=__doc__, check=check_args)
    ap.add_argument("--data", required=True, type=existing_path,
                    help="dataset: a 300-W folder (300w), an annotation file (wflw), COFW_test_color.mat (cofw68) "
                         "or AFLWinfo_release.mat (aflw19)")
    add_format_options(ap)
    ap.add_argument("--box", default="gt", choices=["gt"], help="face box source (gt: from the annotation)")
    ap.add_argument("--model", help="compact (default) | accurate | fast | a checkpoint (.pt/.pth.tar/.zip), .onnx file "
                                    "or shfan-build folder")
    ap.add_argument("--backend", choices=backend_choices(auto=False),
                    help="default: the registry's pick (pytorch for checkpoints, tensorrt for engines and, where it "
                         "runs, build folders; onnxruntime otherwise)")
    ap.add_argument("--precision", choices=build_precisions(),
                    help="precision to use from a build folder (default: the selected one)")
    ap.add_argument("--method", default="subpixel", choices=METHODS,
                    help="how heatmaps become points: subpixel (SH-FAN's), fan (quarter-pixel shift) or argmax "
                         "(ignored by graphs with a built-in decoder)")
    add_deprecated_alias(ap, "--decoder", "--method", choices=METHODS)
    ap.add_argument("--views", default="clean", choices=VIEWS,
                    help="clean: the annotation-box crop; hard: the same faces under fixed, seeded in-the-wild "
                         "degradations (roll 30-50 deg, box error, occluder, blur, low light/noise, JPEG), as "
                         "shfan-train's hard validation")
    ap.add_argument("--flip", action="store_true",
                    help="test-time flip averaging: also run the mirrored crop and average (2x the network time)")
    ap.add_argument("--batch-size", type=positive_int, default=8)
    ap.add_argument("--limit", type=positive_int, help="evaluate only the first N faces")
    add_max_image_pixels(ap)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--plot", type=writable_file, help="write the cumulative error curve (CED) to this PNG")
    return ap


def print_table(report: dict, data) -> None:
    from rich.console import Console
    from rich.table import Table

    from shfan.io import shown

    table = Table(title=f"shfan-eval: {report['faces']} faces from {shown(data)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("nme_inter_ocular", "nme_box", "nme_diag"):
        table.add_row(f"{key} (%)", f"{report[key]:.3f}")
    for key in ("auc_inter_ocular_10", "fr_inter_ocular_10", "auc_box_7", "fr_box_7"):
        table.add_row(key, f"{report[key]:.4f}")
    table.caption = f"model {shown(report['model'])} · backend {report['backend']} · method {report['method']}"
    Console().print(table)


@entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    use_max_image_pixels(args.max_image_pixels)
    from pathlib import Path

    from shfan import evaluate, io, metrics

    samples = evaluate.load_samples(args.data, args.format, args.limit, image_root=args.image_root,
                                    points_dir=args.points_dir)
    report, per_face = evaluate.evaluate(samples, model=args.model, backend=args.backend, precision=args.precision,
                                         method=args.method, views=args.views, flip=args.flip,
                                         batch_size=args.batch_size, progress=sys.stderr.isatty(),
                                         data_name=str(args.data))
    report.update(data=str(args.data), box=args.box)
    if args.plot:
        metrics.save_ced_plot({f"{io.shown(Path(report['model']).name)} ({args.method})": per_face}, args.plot)
        report["plot"] = args.plot
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return
    print_table(report, args.data)


if __name__ == "__main__":
    main()
