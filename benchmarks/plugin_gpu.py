"""SubpixelDecode CUDA kernel on a GPU: correctness against NumPy, then timing.

Compiles plugins/src/subpixel_decode_kernel.cu (the exact kernel the TensorRT plugin launches)
with nvcc into a small shared library, runs it on CuPy arrays, checks it against
shfan.codec.decode on several shapes in fp32 and fp16, and times B=8, K=68, 64x64 against the
host build of the same math, the NumPy reference and the ONNX-ops decoder in ONNX Runtime.
Prints Markdown tables. Exits 0 with a message where there is no GPU or CuPy; 1 with
shfan.plugins' message when nvcc is missing or fails.

    python benchmarks/plugin_gpu.py [--iters 200]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shfan import codec, plugins

TOL_PX = 1e-3
SCALE = 4.0
SHAPES = [(1, 68, 64, 64), (8, 68, 64, 64), (4, 98, 64, 64), (2, 5, 24, 40), (1, 17, 128, 128), (16, 1, 1, 1)]


def bail(message: str) -> None:
    print(f"plugin_gpu: {message}; skipping.")
    sys.exit(0)


def build_kernel_library(arch: str, out_dir: Path) -> ctypes.CDLL:
    try:
        return plugins.build_kernel_library(arch, out_dir, "libshfan_kernel_bench.so")
    except plugins.PluginError as exc:
        sys.exit(f"plugin_gpu: {exc}")


def random_maps(rng, shape, dtype):
    b, k, h, w = shape
    pts = np.stack([rng.uniform(0, w, (b, k)), rng.uniform(0, h, (b, k))], -1)
    hm = codec.encode(pts, (h, w), 2.0) + rng.normal(0, 0.02, shape)
    return hm.astype(dtype)


class GpuDecoder:
    """Device buffers + launcher for one problem shape (allocated once, like TensorRT does)."""

    def __init__(self, cp, lib, hm: np.ndarray, window=5, tau=12.0, scale=SCALE):
        self.cp, self.lib, self.window, self.tau, self.scale = cp, lib, window, tau, scale
        self.hm = cp.asarray(hm)
        b, k = hm.shape[:2]
        self.landmarks = cp.empty((b, k, 2), cp.float32)
        self.scores = cp.empty((b, k), cp.float32)

    def launch(self):
        b, k, h, w = self.hm.shape
        status = self.lib.shfan_launch(
            self.hm.data.ptr, int(self.hm.dtype == self.cp.float16), b, k, h, w, self.window, self.tau, self.scale,
            self.landmarks.data.ptr, self.scores.data.ptr, self.cp.cuda.get_current_stream().ptr)
        if status != 0:
            raise RuntimeError(f"kernel launch failed with cudaError {status}")

    def result(self):
        self.launch()
        return self.cp.asnumpy(self.landmarks), self.cp.asnumpy(self.scores)


def check_correctness(cp, lib) -> bool:
    rng = np.random.default_rng(0)
    print("| shape | dtype | window | max abs diff (heatmap px) | scores equal |")
    print("|---|---|---|---|---|")
    ok = True
    for shape in SHAPES:
        for dtype in (np.float32, np.float16):
            for window, tau in ((5, 12.0), (3, 5.0), (7, 6.0)):
                hm = random_maps(rng, shape, dtype)
                points, scores = GpuDecoder(cp, lib, hm, window, tau).result()
                ref_points, ref_scores = codec.decode(hm.astype(np.float32), "subpixel", window, tau)
                err = float(np.abs(points / SCALE - ref_points).max())
                same = bool(np.array_equal(scores, ref_scores))
                ok &= err <= TOL_PX and same
                print(f"| {'x'.join(map(str, shape))} | {np.dtype(dtype).name} | {window} | {err:.2e} | {same} |")
    return ok


def time_call(fn, iters, warmup=10):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(samples))


def time_gpu(cp, decoder, iters):
    """Median kernel time from CUDA events (device time, no host overhead)."""
    for _ in range(10):
        decoder.launch()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    samples = []
    for _ in range(iters):
        start.record()
        decoder.launch()
        stop.record()
        stop.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, stop))
    return float(np.median(samples))


def ort_decoder_session(shape, tmp: Path):
    """The builder's ONNX-ops decoder (shfan.codec_onnx) in ONNX Runtime, or None if unavailable."""
    try:
        import onnx
        import onnxruntime as ort

        from shfan.codec_onnx import decoder_model
    except ImportError as exc:
        print(f"(ONNX Runtime timing skipped: {exc})")
        return None
    path = tmp / "decoder.onnx"
    onnx.save(decoder_model("subpixel", 5, 12.0, SCALE, landmarks=shape[1], heatmap_size=shape[2:]), str(path))
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    sessions = {p: ort.InferenceSession(str(path), providers=[p]) for p in providers}
    # A provider that failed to initialise silently falls back to CPU; keep only the real ones.
    return {p: s for p, s in sessions.items() if s.get_providers()[0] == p}


def benchmark(cp, lib, iters, tmp: Path):
    shape = (8, 68, 64, 64)
    hm = random_maps(np.random.default_rng(1), shape, np.float32)
    rows = []
    for dtype in (np.float32, np.float16):
        decoder = GpuDecoder(cp, lib, hm.astype(dtype))
        rows.append((f"CUDA kernel (plugin), {np.dtype(dtype).name}", time_gpu(cp, decoder, iters)))
    host = plugins.load_host_library(plugins.build_host_library(tmp))
    rows.append(("host build of the plugin math (1 CPU thread)", time_call(lambda: plugins.decode_host(host, hm, 5, 12.0, SCALE), iters)))
    rows.append(("NumPy reference (shfan.codec)", time_call(lambda: codec.decode(hm), max(iters // 10, 5))))
    for provider, session in (ort_decoder_session(shape, tmp) or {}).items():
        rows.append((f"ONNX-ops decoder, ORT {provider}", time_call(lambda s=session: s.run(None, {"heatmaps": hm}), iters)))
    print(f"\nB={shape[0]}, K={shape[1]}, {shape[2]}x{shape[3]}, median of {iters} runs\n")
    print("| decoder | ms |")
    print("|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.4f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    try:
        import cupy as cp

        if cp.cuda.runtime.getDeviceCount() == 0:
            bail("no CUDA GPU")
    except ImportError:
        bail("CuPy not installed (pip install cupy-cuda12x)")
    except Exception as exc:  # CUDARuntimeError when there is no driver / device
        bail(f"no usable CUDA GPU ({exc.__class__.__name__}: {exc})")
    device = cp.cuda.Device()
    arch = str(device.compute_capability)
    name = cp.cuda.runtime.getDeviceProperties(device.id)["name"].decode()
    print(f"GPU: {name} (sm_{arch})\n")
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_kernel_library(arch, Path(tmp))
        ok = check_correctness(cp, lib)
        benchmark(cp, lib, args.iters, Path(tmp))
    if not ok:
        sys.exit(f"plugin_gpu: kernel differs from the NumPy reference by more than {TOL_PX} px")


if __name__ == "__main__":
    main()
