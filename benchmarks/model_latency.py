"""Network latency of several models side by side (ONNX Runtime, CPU, batch 1 and 4), timed
interleaved in one run so machine noise hits every model alike; median ms per face.

    python benchmarks/model_latency.py old.onnx shfan/weights/shfan_default.onnx --repeats 200

Used for the model issue's rule that a new compact default must not be slower than the old.
"""

import argparse
import json
import platform
import time

import numpy as np

from shfan.runtime.backends import open_backend


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    backends = [open_backend(m, "onnxruntime") for m in args.models]
    try:
        times = {(m, b): [] for m in args.models for b in args.batch}
        rng = np.random.default_rng(0)
        for _ in range(args.repeats):
            for b in args.batch:
                for m, be in zip(args.models, backends):
                    x = rng.random((b, 3, be.info.input_size, be.info.input_size), dtype=np.float32)
                    t0 = time.perf_counter()
                    be.infer(x)
                    times[(m, b)].append(1000 * (time.perf_counter() - t0) / b)
    finally:
        for be in backends:
            be.close()
    rows = [{"model": m, "batch": b, "median_ms_per_face": round(float(np.median(t[5:])), 2),
             "p90_ms_per_face": round(float(np.percentile(t[5:], 90)), 2)} for (m, b), t in times.items()]
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
