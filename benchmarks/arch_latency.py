"""CPU cost of the compact architecture's knobs (stacks, width, input size): GMAC per face and
ONNX Runtime fp32 latency, batch 1, the variants taking turns in one run (random weights: speed
does not depend on them). The accuracy axis of the trade-off needs a trained model per point; the
ones that exist are listed in BENCHMARKS.md §7 beside this table.

    python benchmarks/arch_latency.py [--rounds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# (arch, stacks, width, input size): the shipped compact model is (fan, 2, 128, 128), accurate (fan, 2, 128, 192),
# FAN-4 (fan, 4, 256, 256); fast candidates use the conv-BN-ReLU hourglass (shfan.model.FastFAN)
GRID = [("fan", 1, 64, 64), ("fan", 1, 128, 128), ("fan", 2, 64, 128), ("fan", 2, 96, 128), ("fan", 2, 128, 128),
        ("fan", 3, 128, 128), ("fan", 2, 128, 192), ("fan", 2, 192, 128), ("fan", 4, 128, 128), ("fan", 2, 256, 256),
        ("fan", 4, 256, 256), ("fast", 1, 48, 128), ("fast", 1, 64, 128), ("fast", 1, 96, 128), ("fast", 2, 64, 128)]


def macs_per_face(model, size: int) -> int:
    """Multiply-accumulates of every Conv2d for one face (hooks on a real forward pass)."""
    import torch

    total = [0]

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        total[0] += output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per model per round")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--only", nargs="+", help="the rows of these archs, and the shipped compact model",
                    choices=("fan", "fast"))
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from shfan.builder.export import export_onnx
    from shfan.model import ModelConfig, build
    from shfan.runtime.backends.onnxruntime.runner import create_session

    torch.manual_seed(0)
    cases = []
    grid = [g for g in GRID if not args.only or g[0] in args.only or g == ("fan", 2, 128, 128)]
    for arch, stacks, width, size in grid:
        model = build(ModelConfig(stacks=stacks, width=width, input_size=size, arch=arch)).eval()
        session = create_session(export_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        name = session.get_inputs()[0].name
        session.run(None, {name: x})  # warm-up
        cases.append({"arch": arch, "stacks": stacks, "width": width, "input_size": size,
                      "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                      "gmac": round(macs_per_face(model, size) / 1e9, 3), "session": session, "x": x,
                      "name": name, "ms": []})
    for _ in range(args.rounds):  # interleaved: a load change hits every variant alike
        for c in cases:
            for _ in range(args.runs):
                t0 = time.perf_counter()
                c["session"].run(None, {c["name"]: c["x"]})
                c["ms"].append(1000 * (time.perf_counter() - t0))
    rows = [{k: v for k, v in c.items() if k not in ("session", "x", "name", "ms")} |
            {"ms_median": round(float(np.median(c["ms"])), 2), "ms_p90": round(float(np.percentile(c["ms"], 90)), 2)}
            for c in cases]
    result = {"onnxruntime": ort.__version__, "threads": "session default (physical cores, <= 8)", "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
