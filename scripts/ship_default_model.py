"""Maintainer step: copy a trained checkpoint into the package as the default model.

Writes shfan/weights/shfan_default.pt (fp16 weights + config, ~6 MB), shfan_default.onnx
(fp32, heatmap output, shfan metadata; what the torch-free runtime loads) and
default_model.json (provenance and measured accuracy).
Usage: python scripts/ship_default_model.py runs/default/best.pt [--afw-nme 4.2 ...]
"""

import argparse
import json
import os
from pathlib import Path

import onnx
import torch

from shfan import model as fan
from shfan.builder.export import export_onnx, file_sha256
from shfan.weights import DEFAULT_CHECKPOINT, DEFAULT_ONNX

PROVENANCE = DEFAULT_CHECKPOINT.with_name("default_model.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("--notes", default="{}", help="JSON object merged into default_model.json")
    args = ap.parse_args()

    src = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = fan.load_checkpoint(args.checkpoint)
    # fp16 storage halves the wheel; weights are promoted back to fp32 when loaded
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict(half)  # so the ONNX export uses exactly the shipped (rounded) weights
    tmp = DEFAULT_CHECKPOINT.with_name(DEFAULT_CHECKPOINT.name + ".tmp")
    torch.save({"format": "shfan-checkpoint-v1", "config": model.config.to_dict(), "state_dict": half,
                "epoch": src.get("epoch"), "val_nme": src.get("val_nme"),
                "decoder_tuning": src.get("decoder_tuning")}, tmp)
    os.replace(tmp, DEFAULT_CHECKPOINT)

    proto = export_onnx(model.eval())
    tmp = DEFAULT_ONNX.with_name(DEFAULT_ONNX.name + ".tmp")
    onnx.save(proto, tmp)
    os.replace(tmp, DEFAULT_ONNX)

    info = {"config": model.config.to_dict(), "source_checkpoint": str(args.checkpoint),
            "epoch": src.get("epoch"), "val_nme_inter_ocular": src.get("val_nme"),
            "checkpoint_sha256": file_sha256(DEFAULT_CHECKPOINT), "onnx_sha256": file_sha256(DEFAULT_ONNX),
            **json.loads(args.notes)}
    PROVENANCE.write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
