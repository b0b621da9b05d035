"""Load test of shfan-serve (Triton via PyTriton) on loopback: throughput and p50/p95 latency at
1/4/16 concurrent clients, Triton's dynamic batching on vs off (max_batch_size 1), and the queue
delay at the highest client count.

Each point is a closed loop: N client threads (tritonclient HTTP, one connection each) send the
next request as soon as the previous one is answered, for --seconds after a warm-up of N
requests, at most --max-requests in all. Two payloads: `faces` (a 512x512 JPEG with one face:
decode + YuNet + landmarks) and `points` (a 256x256 RGB crop + a detector box: landmarks only).
The mean batch the model saw is Triton's own counters: nv_inference_count / nv_inference_exec_count.

    python benchmarks/triton_load.py --detector-model ../shared/models/yunet_s_640_640.onnx \\
        --json triton_load.json

Needs the serve extra (make serve-install; run with .venv-serve/bin/python). Servers listen on
127.0.0.1 only and are stopped (SIGTERM, then whatever is left is killed) after each mode.
Clients and server share this machine's cores: on a 2-core VM the clients' own CPU is part of
what is measured."""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import urllib.request

import numpy as np


def payloads():
    import cv2
    from skimage import data

    a = data.astronaut()
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(a, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    crop = np.ascontiguousarray(a[10:266, 100:356])  # the face, 256x256
    box = [[70.0, 30.0, 190.0, 190.0]]
    return {"faces": lambda c: c.faces(jpeg), "points": lambda c: c.points(crop, box)}


def counters(metrics_port: int, model: str) -> tuple[int, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()

    def value(name):
        m = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
        return int(float(m.group(1))) if m else 0

    return value("nv_inference_count"), value("nv_inference_exec_count")


def closed_loop(url: str, call, clients: int, seconds: float, max_requests: int) -> dict:
    from shfan.serve.client import ShfanClient

    latencies, errors = [], []
    lock = threading.Lock()
    stop_at = [0.0]

    def clock_starts():  # run once, when every warm-up is done, before anyone is released
        stop_at[0] = time.perf_counter() + seconds

    start = threading.Barrier(clients + 1, action=clock_starts)
    sent = [0]

    def worker():
        with ShfanClient(url, timeout_s=300) as c:
            call(c)  # warm-up: connection, lanes, first batch
            start.wait()
            while time.perf_counter() < stop_at[0]:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                t0 = time.perf_counter()
                try:
                    call(c)
                except Exception as exc:
                    errors.append(str(exc)[:200])
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = stop_at[0] - seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000.0
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "seconds": round(elapsed, 2),
            "throughput_rps": round(len(latencies) / elapsed, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
            "first_error": errors[0] if errors else None, "lat": lat}


def measure(servers: dict, calls: dict, points: list[tuple[str, int, list[str]]], args) -> list[dict]:
    """Every (payload, clients) point on each of its servers, in rounds that alternate the order
    (A B, B A, ...) so that background load drifts hit every server alike. Per server: all rounds
    pooled; the gain is the median over rounds of throughput / the reference server's."""
    from shfan.serve.server import FACES, POINTS

    rows = []
    for payload, n, labels in points:
        model = {"faces": FACES, "points": POINTS}[payload]
        runs = {label: [] for label in labels}
        for r in range(args.rounds):
            for label in (labels if r % 2 == 0 else labels[::-1]):
                server = servers[label]
                before = counters(server.metrics, model)
                row = closed_loop(server.url, calls[payload], n, args.seconds, args.max_requests)
                after = counters(server.metrics, model)
                row["inferences"], row["executions"] = after[0] - before[0], after[1] - before[1]
                runs[label].append(row)
        ref = runs[labels[-1]]  # the last label is the reference (batching off)
        for label in labels:
            rr = runs[label]
            lat = np.concatenate([r.pop("lat") for r in rr]) if rr else np.array([])
            ratios = [a["throughput_rps"] / b["throughput_rps"] for a, b in zip(rr, ref) if b["throughput_rps"]]
            total_s = sum(r["seconds"] for r in rr)
            row = {"mode": label, "payload": payload, "clients": n, "rounds": len(rr),
                   "requests": sum(r["requests"] for r in rr), "errors": sum(r["errors"] for r in rr),
                   "throughput_rps": round(sum(r["requests"] for r in rr) / total_s, 2),
                   "round_rps": [r["throughput_rps"] for r in rr],
                   "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
                   "mean_batch": round(sum(r["inferences"] for r in rr) / max(1, sum(r["executions"] for r in rr)), 2),
                   "gain_vs_off_median": round(float(np.median(ratios)), 3) if label != labels[-1] else None}
            rows.append(row)
            print(f"{label:>20} {payload:>6} {n:>3} clients: {row['throughput_rps']:6.2f} req/s "
                  f"(rounds {row['round_rps']}), p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
                  f"mean batch {row['mean_batch']}, gain {row['gain_vs_off_median']}, {row['errors']} errors", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector-model", help="YuNet .onnx (default: shfan's download)")
    ap.add_argument("--model", help="as for shfan-serve (default: the shipped compact model)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=8.0, help="per run, after warm-up (default 8)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per point (default 3)")
    ap.add_argument("--max-requests", type=int, default=1000, help="per run (default 1000)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--delays", default="0,8000", help="other queue delays (us) compared at the highest client "
                                                      "count, faces payload ('' for none)")
    ap.add_argument("--payloads", default="faces,points")
    ap.add_argument("--threads", type=int, default=None, help="server backend threads")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args(argv)
    from shfan.serve.process import ServeProcess

    clients = [int(c) for c in args.clients.split(",")]
    calls = {k: v for k, v in payloads().items() if k in args.payloads.split(",")}
    common = (["--detector-model", args.detector_model] if args.detector_model else []) + \
             (["--model", args.model] if args.model else []) + \
             (["--threads", str(args.threads)] if args.threads else []) + ["--max-faces", "4"]
    on = f"batching {args.queue_delay_us} us"
    configs = {on: ["--max-batch", args.max_batch, "--queue-delay-us", args.queue_delay_us]}
    delays = [int(d) for d in args.delays.split(",") if d.strip()]
    configs.update({f"batching {d} us": ["--max-batch", args.max_batch, "--queue-delay-us", d] for d in delays})
    configs["batching off"] = ["--no-batching"]
    points = [(p, n, [on, "batching off"]) for p in calls for n in clients]
    if delays and "faces" in calls:
        points.append(("faces", max(clients), [f"batching {d} us" for d in delays] + [on, "batching off"]))
    servers = {}
    try:
        for label, extra in configs.items():  # all up at once, idle while another one is measured
            servers[label] = ServeProcess(common + extra, log=f"/tmp/shfan-triton-load-{len(servers)}.log").start()
        rows = measure(servers, calls, points, args)
    finally:
        for server in servers.values():
            code = server.stop()
            if code != 0:
                print(f"warning: shfan-serve exited with {code}; log: {server.log}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "args": vars(args)}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
