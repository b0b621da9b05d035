"""shfan-eval: landmark accuracy (NME, AUC, failure rate) of a model on a dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shfan.cli.common import (Parser, entry, existing_dir, existing_path, fail, positive_int,
                               writable_file)


PRECISIONS = ("fp32", "fp16", "int8")  # of a build folder


def build_parser():
    ap = Parser(prog="shfan-eval", description=__doc__)
    ap.add_argument("--data", required=True, type=existing_path,
                    help="dataset: a 300-W folder (300w), an annotation file (wflw), COFW_test_color.mat (cofw68) "
                         "or AFLWinfo_release.mat (aflw19)")
    ap.add_argument("--format", default="300w", choices=["300w", "wflw", "cofw68", "aflw19"])
    ap.add_argument("--image-root", type=existing_dir, help="image folder for wflw/aflw19 annotation files")
    ap.add_argument("--points-dir", type=existing_dir, help="COFW-68 points folder (needed by --format cofw68)")
    ap.add_argument("--box", default="gt", choices=["gt"], help="face box source (gt: from the annotation)")
    ap.add_argument("--model", help="compact (default) | accurate | a checkpoint (.pt/.pth.tar/.zip), .onnx file "
                                    "or shfan-build folder")
    ap.add_argument("--backend", choices=["pytorch", "onnxruntime", "tensorrt"],
                    help="default: pytorch for checkpoints, onnxruntime for ONNX and build folders")
    ap.add_argument("--precision", choices=PRECISIONS,
                    help="precision to use from a build folder (default: the selected one)")
    ap.add_argument("--decoder", default="subpixel", choices=["subpixel", "fan", "argmax"],
                    help="heatmap decoder (ignored by graphs with a built-in decoder)")
    ap.add_argument("--views", default="clean", choices=["clean", "hard"],
                    help="clean: the annotation-box crop; hard: the same faces under fixed, seeded in-the-wild "
                         "degradations (roll 30-50 deg, box error, occluder, blur, low light/noise, JPEG), as "
                         "shfan-train's hard validation")
    ap.add_argument("--flip", action="store_true",
                    help="test-time flip averaging: also run the mirrored crop and average (2x the network time)")
    ap.add_argument("--batch-size", type=positive_int, default=8)
    ap.add_argument("--limit", type=positive_int, help="evaluate only the first N faces")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--plot", type=writable_file, help="write the cumulative error curve (CED) to this PNG")
    return ap


def default_model(backend: str | None, name: str = "compact") -> Path:
    """A shipped model's checkpoint where PyTorch is installed (the pytorch backend), else its ONNX."""
    from shfan import weights

    if backend in (None, "pytorch"):
        try:
            import torch  # noqa: F401

            return weights.model_path(name, "checkpoint")
        except ImportError:
            pass
    return weights.model_path(name, "onnx")


def open_model(model: Path, backend: str | None, precision: str | None, decoder: str):
    from shfan.runtime.backend import open_backend

    is_checkpoint = model.suffix in (".pt", ".pth", ".tar", ".zip") and model.is_file()
    if backend is None and model.suffix in (".engine", ".plan"):
        backend = "tensorrt"
    if backend == "pytorch" or (backend is None and is_checkpoint):
        if not is_checkpoint:
            fail(f"{model}: the pytorch backend needs a checkpoint (.pt/.pth.tar/.zip)")
        from shfan.torch_backend import TorchBackend

        return TorchBackend(model, decoder=decoder)
    if is_checkpoint:
        fail(f"{model} is a PyTorch checkpoint; export it first: shfan-build --weights {model} --precision fp32")
    return open_backend(model, backend or "onnxruntime", precision=precision, decoder=decoder)


def check_args(ap, args) -> None:
    """Usage checks that span several options (each option's own value is checked by its type)."""
    if args.format == "cofw68" and not args.points_dir:
        ap.error("--format cofw68 needs --points-dir (the folder of <i>_points.mat files)")
    if args.format == "aflw19" and not args.image_root:
        ap.error("--format aflw19 needs --image-root (the AFLW image folder)")
    if args.format == "300w" and not Path(args.data).is_dir():
        ap.error(f"--data {args.data} is a file; --format 300w takes a folder of images with .pts files "
                 "(an annotation file: --format wflw, cofw68 or aflw19)")
    if args.format != "300w" and not Path(args.data).is_file():
        ap.error(f"--data {args.data} is a folder; --format {args.format} takes the annotation file")
    from shfan.weights import MODEL_NAMES

    if args.model and args.model not in MODEL_NAMES and not Path(args.model).exists():
        ap.error(f"--model {args.model}: no such model (give compact, accurate, a checkpoint, .onnx, "
                 "a shfan-build folder or .engine)")
    if args.precision and not (args.model and Path(args.model).is_dir()):
        ap.error("--precision picks a precision inside a shfan-build folder; give --model BUILD_FOLDER")


@entry
def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    check_args(ap, args)
    from shfan import evaluate, metrics
    from shfan.datasets import read_dataset
    from shfan.errors import ShfanError

    backend = None
    try:
        samples = read_dataset(args.data, args.format, image_root=args.image_root, points_dir=args.points_dir)
        if args.limit:
            samples = samples[:args.limit]
        if not samples:
            fail(f"{args.data}: no faces in this dataset")
        from shfan.weights import MODEL_NAMES

        named = args.model is None or args.model in MODEL_NAMES
        model = default_model(args.backend, args.model or "compact") if named else Path(args.model)
        backend = open_model(model, args.backend, args.precision, args.decoder)
        if backend.info.landmarks != samples[0].points.shape[0]:
            fail(f"model predicts {backend.info.landmarks} landmarks but {args.data} has "
                 f"{samples[0].points.shape[0]}")
        infer = evaluate.with_flip(backend.infer, backend.info.input_size) if args.flip else backend.infer
        summary, per_face = evaluate.score(infer, samples, backend.info.input_size, batch_size=args.batch_size,
                                           progress=sys.stderr.isatty(),
                                           hard=evaluate.HARD_SEED if args.views == "hard" else None)
        backend_name = backend.name
        precision = args.precision
        if model.is_dir() and precision is None:  # a build folder: say which precision was scored
            from shfan.runtime.backend import read_manifest

            precision = read_manifest(model)["selected_precision"]
    except ShfanError as exc:
        fail(str(exc))
    finally:
        # every path, errors included: a TensorRT backend frees its GPU buffers here, before exit
        if backend is not None:
            backend.close()
    import math

    bad = [k for k, v in summary.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        fail(f"the scores are not finite ({', '.join(bad)}): the model returned NaN/inf landmarks for some faces")
    report = {**summary, "decoder": args.decoder, "views": args.views, "flip": args.flip,
              "backend": backend_name, "model": str(model),
              "precision": precision, "data": str(args.data), "box": args.box}
    if args.plot:
        metrics.save_ced_plot({f"{model.name} ({args.decoder})": per_face}, args.plot)
        report["plot"] = args.plot
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"shfan-eval: {report['faces']} faces from {args.data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("nme_inter_ocular", "nme_box", "nme_diag"):
        table.add_row(f"{key} (%)", f"{report[key]:.3f}")
    for key in ("auc_inter_ocular_10", "fr_inter_ocular_10", "auc_box_7", "fr_box_7"):
        table.add_row(key, f"{report[key]:.4f}")
    table.caption = f"model {model} · backend {backend_name} · decoder {args.decoder}"
    Console().print(table)


if __name__ == "__main__":
    main()
