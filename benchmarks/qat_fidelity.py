"""How closely `shfan-train --qat cpu`'s rounding (shfan.train.qat) imitates the CPU int8 file.

One checkpoint, four predictions on the same held-out crops: ONNX Runtime fp32, the CPU int8
file (`shfan-build --target cpu`'s recipe: 99.9th-percentile uint8 ranges, every op integer),
PyTorch fp32, PyTorch with the fake quantization on. Prints each one's NME against the ground
truth and the landmark disagreement (NME) between them. Ranges of both come from the same
calibration crops (helen_train), the scores from other faces (lfpw_train).

    python benchmarks/qat_fidelity.py shfan/weights/shfan_fast.pt [--calib DIR] [--faces DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--calib", default="../shared/data/faces68/helen_train")
    ap.add_argument("--faces", default="../shared/data/faces68/lfpw_train")
    ap.add_argument("--calib-faces", type=int, default=256)
    ap.add_argument("--test-faces", type=int, default=160)
    args = ap.parse_args(argv)

    import onnx
    import torch

    from shfan.builder.export import export_onnx, load_model
    from shfan.builder.precision import to_int8_cpu
    from shfan.calibration import cpu_int8, ranges
    from shfan.calibration.face_sets import load_faces
    from shfan.calibration.guard import nme_per_face
    from shfan.calibration.ort_tools import predict_landmarks
    from shfan.train.qat import PERCENTILE, FakeQuant
    from shfan.train.validation import torch_infer

    torch.set_num_threads(1)
    model = load_model(args.weights)
    cfg, size = model.config.to_dict(), model.config.input_size
    calib = load_faces(args.calib, size, args.calib_faces, seed=0)
    test = load_faces(args.faces, size, args.test_faces, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx.save(export_onnx(model), tmp / "fp32.onnx")
        prepared = cpu_int8.prepare(onnx.load(tmp / "fp32.onnx"))
        onnx.save(prepared, tmp / "prepared.onnx")
        sample = ranges.sample_tensors(prepared, cpu_int8.tensors_to_quantize(prepared), calib.crops)
        to_int8_cpu(tmp / "prepared.onnx", tmp / "int8.onnx", cpu_int8.asymmetric_ranges(sample, PERCENTILE), [], {})
        points = {"ORT fp32": predict_landmarks(str(tmp / "fp32.onnx"), test.crops, cfg),
                  "ORT int8 (CPU file)": predict_landmarks(str(tmp / "int8.onnx"), test.crops, cfg)}

    def torch_points():
        infer = torch_infer(model, torch.device("cpu"))
        return np.concatenate([infer(test.crops[i:i + 16])[0] for i in range(0, len(test.crops), 16)])

    points["torch fp32"] = torch_points()
    fq = FakeQuant(model)
    fq.calibrate([torch.from_numpy(calib.crops[i:i + 16]) for i in range(0, len(calib.crops), 16)])
    fq.attach()
    points["torch fake-quant"] = torch_points()
    fq.detach()

    def nme(a, b):
        return float(np.mean(nme_per_face(a, b)))

    print(f"{args.weights}: {len(test)} faces of {args.faces}, ranges from {len(calib)} of {args.calib}")
    for name, p in points.items():
        print(f"  {name:22s} NME {nme(p, test.points):.3f}")
    print(f"  disagreement: int8 vs fp32 {nme(points['ORT int8 (CPU file)'], points['ORT fp32']):.3f}, "
          f"fake-quant vs fp32 {nme(points['torch fake-quant'], points['torch fp32']):.3f}, "
          f"fake-quant vs int8 {nme(points['torch fake-quant'], points['ORT int8 (CPU file)']):.3f}")


if __name__ == "__main__":
    main()
