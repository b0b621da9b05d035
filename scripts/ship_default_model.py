"""Maintainer step: copy a trained checkpoint into the package as the default model.

Writes shfan/weights/shfan_default.pt (fp16 weights + config, ~6 MB), shfan_default.onnx
(fp32, heatmap output, shfan metadata; what the torch-free runtime loads) and
default_model.json (provenance and measured accuracy).
Usage: python scripts/ship_default_model.py runs/default/best.pt [--notes JSON|FILE]
       python scripts/ship_default_model.py runs/accurate/best.pt --name accurate --to DIR
(then SHFAN_MODELS=DIR makes `--model accurate` find it).
       python scripts/ship_default_model.py runs/device/accurate/best.pt --name accurate --to DIR --no-onnx
(fp16 weights and provenance only, small enough to come back from a lent GPU; run it again on
the fp16 checkpoint, without --no-onnx, to add the ONNX file).
"""

import argparse
import json
from pathlib import Path

import torch

from shfan import atomic
from shfan import model as fan
from shfan.io import sha256_file
from shfan.weights import FILES, MODEL_NAMES


def read_notes(text: str, error) -> dict:
    """--notes as inline JSON or a file of it; `error` (argparse's) ends the run with one line."""
    source = "--notes"
    if not text.lstrip().startswith("{") and Path(text).is_file():
        source, text = text, Path(text).read_text()
    try:
        notes = json.loads(text)
    except json.JSONDecodeError as exc:
        error(f"{source} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): give an object, "
              'e.g. --notes \'{"recipe": "..."}\', or the path of a file holding one')
    if not isinstance(notes, dict):
        error(f"{source} must be a JSON object ({{...}}), not {type(notes).__name__}")
    return notes


def validation_nme(src: dict, config) -> float | None:
    """The trainer's best-epoch NME, or for a checkpoint whose decoder was tuned afterwards
    (scripts/average_checkpoints.py) the tuning table's entry for the chosen decoder."""
    if src.get("val_nme") is not None:
        return src["val_nme"]
    return (src.get("decoder_tuning") or {}).get(f"subpixel/w{config.window}/t{config.temperature}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("--notes", default="{}",
                    help="JSON object merged into the provenance file, or the path of a file holding one")
    ap.add_argument("--name", default="compact", choices=MODEL_NAMES)
    ap.add_argument("--to", type=Path, default=Path(__file__).resolve().parents[1] / "shfan" / "weights",
                    help="folder (default: the package's weights)")
    ap.add_argument("--no-onnx", dest="onnx", action="store_false",
                    help="write the fp16 checkpoint and provenance only (no onnx package needed)")
    args = ap.parse_args()
    notes = read_notes(args.notes, ap.error)  # before anything is written: a bad --notes leaves the package as it was
    args.to.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.to / (FILES[args.name] + ".pt")
    onnx_path = args.to / (FILES[args.name] + ".onnx")
    provenance = args.to / ("default_model.json" if args.name == "compact" else f"{FILES[args.name]}.json")

    src = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = fan.load_checkpoint(args.checkpoint)
    # fp16 storage halves the wheel; weights are promoted back to fp32 when loaded
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict(half)  # so the ONNX export uses exactly the shipped (rounded) weights
    with atomic.atomic_path(ckpt_path) as tmp:
        torch.save({"format": "shfan-checkpoint-v1", "config": model.config.to_dict(), "state_dict": half,
                    "epoch": src.get("epoch"), "val_nme": src.get("val_nme"),
                    "decoder_tuning": src.get("decoder_tuning")}, tmp)

    if args.onnx:
        import onnx

        from shfan.builder.export import export_onnx

        proto = export_onnx(model.eval())
        with atomic.atomic_path(onnx_path, suffix=".onnx") as tmp:
            onnx.save(proto, tmp)

    info = {"config": model.config.to_dict(), "source_checkpoint": str(args.checkpoint),
            "epoch": src.get("epoch"), "val_nme_inter_ocular": validation_nme(src, model.config),
            "checkpoint_sha256": sha256_file(ckpt_path),
            **({"onnx_sha256": sha256_file(onnx_path)} if args.onnx else {}), **notes}
    atomic.write_text(provenance, json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
