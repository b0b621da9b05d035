"""Ghosts, recall, drop / re-acquisition delays, temporal jitter and FPS of the runtime on real
videos, against YuNet run at full resolution on every frame as the reference for "a face is
here" (needs no annotations).

    python benchmarks/real_video.py                       # every clip in ../shared/data/videos
    python benchmarks/real_video.py --clips no_face.mp4 face_noface.mov --max-faces 16 --json out.json

Definitions (per clip; BENCHMARKS.md §5):
- reference face: a YuNet (2023mar, score >= 0.6) detection on the full-resolution frame,
  mapped to its landmark box (shfan.runtime.detector.landmark_box_from_detection).
- a reported face *matches* a reference face when IoU(its landmark box, the reference landmark
  box) >= 0.3 (one-to-one, greedy by IoU).
- ghost share: reported faces that match no reference face / reported faces.
- recall: reference faces matched by a reported face / reference faces.
- drop delay: after the last frame of a run of reference faces (the face left), frames until the
  runtime reports no unmatched face; acquisition delay: from the first frame of a run of
  reference faces (>= 3 frames after >= 3 empty ones, or the clip's start), frames until a
  reported face matches.
- jitter: for a track seen in two consecutive frames, fit the least-squares similarity
  (Umeyama) that maps its 68 points at t-1 onto those at t; the residual (mean point distance
  after removing that fitted motion) in % of the inter-ocular distance (points 36-45) at t.
  The similarity takes away what the head as a whole did (translation, scale, roll) so the
  rest is landmark noise plus genuine non-rigid motion (speech, expressions): an upper bound of
  the noise, comparable between versions on the same clip. Reported: median over frame pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from shfan.geometry import iou  # shfan.geometry: outside shfan.runtime, which --runtime-dir swaps
from shfan.metrics import OUTER_EYE_CORNERS

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "videos"
YUNET = ROOT.parent / "shared" / "models" / "yunet_s_640_640.onnx"
REF_THRESHOLD = 0.6
MATCH_IOU = 0.3


# ------------------------------------------------------------------------------ pure metrics


def match(reported, reference, min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """One-to-one (reported index, reference index) pairs with IoU >= min_iou, greedy by IoU."""
    pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(reported) for j, b in enumerate(reference)),
                   reverse=True)
    used_i, used_j, out = set(), set(), []
    for v, i, j in pairs:
        if v < min_iou:
            break
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            out.append((i, j))
    return out


def similarity_residual(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Per-point distance between p1 and the least-squares similarity image of p0 (Umeyama)."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    m0, m1 = p0.mean(0), p1.mean(0)
    a, b = p0 - m0, p1 - m1
    # complex form of a 2-D similarity: b ~ z * a with z = (a* . b) / |a|^2
    za, zb = a[:, 0] + 1j * a[:, 1], b[:, 0] + 1j * b[:, 1]
    z = np.vdot(za, zb) / max(np.vdot(za, za).real, 1e-12)
    fit = z * za
    return np.abs(zb - fit)


def jitter_io(p0, p1, eyes=OUTER_EYE_CORNERS[68]) -> float:
    """Mean residual after removing the fitted similarity, in % of the inter-ocular distance."""
    io = float(np.linalg.norm(np.asarray(p1[eyes[0]]) - np.asarray(p1[eyes[1]])))
    return float(similarity_residual(p0, p1).mean() / max(io, 1e-6) * 100.0)


def runs(flags) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a boolean sequence."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def clip_metrics(reported: list[list[np.ndarray]], reference: list[list[np.ndarray]],
                 tracks: list[list[tuple[int, np.ndarray]]] | None = None, min_gap: int = 3) -> dict:
    """reported/reference: per frame, landmark boxes; tracks: per frame, (track id, points)."""
    n = len(reference)
    n_rep = n_ref = ghosts = hits = 0
    unmatched_rep = np.zeros(n, bool)
    matched_ref = np.zeros(n, bool)
    for t in range(n):
        rep, ref = reported[t], reference[t]
        m = match(rep, ref)
        n_rep += len(rep)
        n_ref += len(ref)
        hits += len(m)
        ghosts += len(rep) - len(m)
        unmatched_rep[t] = len(rep) > len(m)
        matched_ref[t] = len(m) > 0
    present = np.array([len(r) > 0 for r in reference])
    acq, drop = [], []
    face_runs = [r for r in runs(present) if r[1] - r[0] >= min_gap]
    for k, (s, e) in enumerate(face_runs):
        prev_end = face_runs[k - 1][1] if k else None
        if s == 0 or (prev_end is not None and s - prev_end >= min_gap) or (prev_end is None and s >= min_gap):
            found = np.flatnonzero(matched_ref[s:e])
            acq.append(int(found[0]) if len(found) else None)
        nxt = face_runs[k + 1][0] if k + 1 < len(face_runs) else n
        if nxt - e >= min_gap:  # the face left for a while
            gone = np.flatnonzero(~(np.array([len(r) > 0 for r in reported[e:nxt]]) & unmatched_rep[e:nxt]))
            drop.append(int(gone[0]) if len(gone) else nxt - e)
    jit = []
    if tracks is not None:
        for t in range(1, n):
            prev = dict(tracks[t - 1])
            for tid, pts in tracks[t]:
                if tid in prev:
                    jit.append(jitter_io(prev[tid], pts))
    return {"frames": n, "frames_with_reference_face": int(present.sum()),
            "frames_with_reported_face": int(sum(len(r) > 0 for r in reported)),
            "reported_faces": n_rep, "reference_faces": n_ref, "ghost_faces": ghosts,
            "ghost_share": ghosts / n_rep if n_rep else 0.0,
            "recall": hits / n_ref if n_ref else None,
            "frames_with_ghost": int(unmatched_rep.sum()),
            "acquisition_delay_frames": acq, "drop_delay_frames": drop,
            "jitter_median_io": float(np.median(jit)) if jit else None,
            "jitter_p90_io": float(np.percentile(jit, 90)) if jit else None}


# ------------------------------------------------------------------------------ measuring


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def reference_boxes(path: Path, detector_model: Path, limit: int | None = None, cache: Path | None = None):
    """Per frame: landmark boxes of the full-resolution YuNet detections (cached as .npz)."""
    from shfan.runtime.detector import YuNetDetector, landmark_box_from_detection

    key = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        st = path.stat()
        key = cache / f"{path.name}.{st.st_size}.{limit or 'all'}.thr{REF_THRESHOLD}.npz"
        if key.is_file():
            data = np.load(key)
            return [list(data["boxes"][data["frame"] == t]) for t in range(int(data["n"]))]
    det = YuNetDetector(detector_model, score_threshold=REF_THRESHOLD)
    out = []
    for img in read_frames(path, limit):
        out.append([landmark_box_from_detection(d.box) for d in det.detect_faces(img, max_side=1 << 20)])
    if key is not None:
        frame = np.array([t for t, b in enumerate(out) for _ in b], int)
        boxes = np.array([x for b in out for x in b], np.float64).reshape(-1, 4)
        np.savez(key, n=len(out), frame=frame, boxes=boxes)
    return out


def run_pipeline(path: Path, options: dict, limit: int | None = None, model=None):
    """Per frame: reported landmark boxes and (track id, points); FPS over the run."""
    from shfan import geometry
    from shfan.runtime.pipeline import Pipeline

    reported, tracks = [], []
    with Pipeline(model, "onnxruntime", **options) as p:
        t0 = time.perf_counter()
        for r in p.stream(str(path), max_frames=limit):
            reported.append([geometry.box_from_points(f.points) for f in r.faces])
            tracks.append([(f.track_id, f.points) for f in r.faces])
        wall = time.perf_counter() - t0
        summary = p.stats.summary()
    return reported, tracks, {"fps": len(reported) / wall if wall > 0 else 0.0,
                              "detector_runs": summary["detector_runs"]}


def measure_clip(path: Path, options: dict, limit=None, cache=None, model=None) -> dict:
    reference = reference_boxes(path, Path(options.get("detector_model") or YUNET), limit, cache)
    reported, tracks, run = run_pipeline(path, options, limit, model)
    n = min(len(reference), len(reported))
    m = clip_metrics(reported[:n], reference[:n], tracks[:n])
    m.update(clip=path.name, **run)
    return m


def markdown(rows: list[dict]) -> str:
    def delays(v):
        return ", ".join("never" if d is None else str(d) for d in v) or "-"

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = ("| clip | frames | with a face (ref / shfan) | ghost share | ghost faces | recall | "
            "drop delay (frames) | acquisition delay (frames) | jitter median % io | FPS |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['clip']} | {r['frames']} | {r['frames_with_reference_face']} / {r['frames_with_reported_face']} | "
        f"{100 * r['ghost_share']:.1f} % | {r['ghost_faces']} | "
        f"{num(r['recall'], '.3f')} | {delays(r['drop_delay_frames'])} | "
        f"{delays(r['acquisition_delay_frames'])} | "
        f"{num(r['jitter_median_io'], '.2f')} | {r['fps']:.1f} |\n"
        for r in rows)
    return head + body


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, default=VIDEOS)
    ap.add_argument("--clips", nargs="*", help="file names in --videos (default: all)")
    ap.add_argument("--limit", type=int, help="first N frames of each clip")
    ap.add_argument("--model", help="landmark model (default: the shipped one)")
    ap.add_argument("--detector-model", type=Path, default=YUNET)
    ap.add_argument("--max-faces", type=int)
    ap.add_argument("--min-face", type=int)
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="any other Pipeline keyword (value parsed as JSON)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/shfan_real_video_ref"),
                    help="where the reference detections are cached")
    ap.add_argument("--runtime-dir", type=Path,
                    help="measure another copy of the runtime package (e.g. `git archive REV runtime | tar -x`)")
    ap.add_argument("--json", type=Path, help="write the per-clip numbers here")
    args = ap.parse_args(argv)

    if args.runtime_dir:  # "before" numbers: load shfan.runtime from an older checkout
        import shfan.runtime

        shfan.runtime.__path__[:] = [str(args.runtime_dir.resolve())]
    if not args.videos.is_dir():
        sys.exit(f"error: {args.videos} does not exist; pass --videos DIR")
    clips = [args.videos / c for c in args.clips] if args.clips else sorted(
        p for p in args.videos.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".webm", ".avi", ".mkv"))
    options = {"detector_model": str(args.detector_model)}
    if args.max_faces is not None:
        options["max_faces"] = args.max_faces
    if args.min_face is not None:
        options["min_face"] = args.min_face
    for kv in args.option:
        k, v = kv.split("=", 1)
        options[k] = json.loads(v)
    rows = []
    for clip in clips:
        r = measure_clip(clip, options, args.limit, args.cache, args.model)
        rows.append(r)
        print(f"{clip.name}: ghosts {r['ghost_faces']} ({100 * r['ghost_share']:.1f} %), recall {r['recall']}, "
              f"drop {r['drop_delay_frames']}, acquisition {r['acquisition_delay_frames']}, "
              f"jitter {r['jitter_median_io']}, {r['fps']:.1f} FPS", file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"options": options, "clips": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
