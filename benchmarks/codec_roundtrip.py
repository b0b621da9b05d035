"""Round-trip error of the heatmap codec: encode random subpixel points, decode, measure.

Writes a Markdown table (mean / max Euclidean error in heatmap px) used to pick the codec
defaults recorded in BENCHMARKS.md. Usage: python benchmarks/codec_roundtrip.py [--n 2000]
"""

import argparse

import numpy as np

from shfan import codec

SIGMAS = (1.0, 1.5, 2.0, 3.0)
WINDOWS = (3, 5, 7)
TEMPERATURES = (3.0, 6.0, 9.0, 12.0, 16.0, 20.0, 30.0)


def roundtrip_error(points, size, sigma, method, window=5, temperature=1.0):
    hm = codec.encode(points, size, sigma)
    pred, _ = codec.decode(hm, method, window, temperature)
    err = np.linalg.norm(pred - points, axis=-1)
    return float(err.mean()), float(err.max())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="random points per setting")
    ap.add_argument("--size", type=int, default=64, help="heatmap size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pts = rng.uniform(8, args.size - 8, size=(1, args.n, 2)).astype(np.float32)

    print(f"Mean round-trip error (heatmap px) over {args.n} random subpixel points, {args.size}x{args.size} maps.\n")
    print("| sigma | argmax | fan | window | " + " | ".join(f"tau={t:g}" for t in TEMPERATURES) + " |")
    print("|" + "---|" * (4 + len(TEMPERATURES)))
    for s in SIGMAS:
        base = [f"{roundtrip_error(pts, args.size, s, m)[0]:.3f}" for m in ("argmax", "fan")]
        for d in WINDOWS:
            errs = [roundtrip_error(pts, args.size, s, "subpixel", d, t)[0] for t in TEMPERATURES]
            best = min(errs)
            cells = [f"**{e:.3f}**" if e == best else f"{e:.3f}" for e in errs]
            print(f"| {s:g} | " + " | ".join(base) + f" | {d} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
