"""The report as rows and lines: one row per backend/precision/batch (stage medians with
p10–p90), one per pipeline configuration (FPS, ratio to the baseline), and the summary lines
(speedup, calibration, skips). Plain strings and rich renderables; printing is the CLI's job."""

from __future__ import annotations

from shfan.bench.config import BATCH_STAGES, PIPELINE_STAGES
from shfan.bench.timing import speedup


def case_precision(precision: str, target: str | None) -> str:
    """'int8 (cpu file)' for the rows of the two int8 files, else the precision."""
    return f"{precision} ({target} file)" if target else precision


def _ms(stage: dict | None) -> str:
    if not stage or stage.get("median_ms") is None:
        return "—"
    return f"{stage['median_ms']:.2f} ({stage['p10_ms']:.1f}–{stage['p90_ms']:.1f})"


def _mean(stage: dict | None) -> str:
    return "—" if not stage or stage.get("mean_ms") is None else f"{stage['mean_ms']:.2f}"


def stage_rows(report: dict) -> list[list[str]]:
    """One row per backend/precision/batch: stage medians (p10–p90), ms per face, faces/s."""
    rows = []
    for r in report["results"]:
        for b, row in r["batches"].items():
            s = row["stages"]
            rows.append([r["backend"], case_precision(r["precision"], r.get("target")), r["decoder"], b,
                         *(_ms(s[k]) for k in BATCH_STAGES), f"{row['per_face_ms']:.2f}",
                         f"{row['faces_per_s'] or 0:.0f}"])
    return rows


def pipeline_rows(report: dict) -> list[list[str]]:
    """One row per configuration plus the baseline: FPS, stage medians, ratio to baseline."""
    base = report.get("baseline") or {}
    rows = []
    for r in report["results"]:
        p = r["pipeline"]
        ratio = speedup(p["fps"], base.get("fps"))
        rows.append([f"shfan {r['backend']} {case_precision(r['precision'], r.get('target'))} ({r['decoder']})",
                     f"{p['fps']:.1f}",
                     *(_mean(p["stages"][k]) for k in PIPELINE_STAGES), f"{p['faces']}/{p['detector_runs']}",
                     f"{ratio:.1f}x" if ratio else "—"])
    if base:
        rows.append([f"baseline {base.get('name', '')}".rstrip(), f"{base['fps']:.2f}",
                     *(_mean(base["stages"][k]) for k in PIPELINE_STAGES),
                     f"—/{base['frames']}", "1.0x"])
    return rows


def header_line(report: dict) -> str:
    """The machine in one (rich markup) line, above the tables."""
    m = report["machine"]
    return (f"[bold]shfan-bench[/] on {m['cpu']} ({m['cores']} cores, {m['ram_gib']} GiB), "
            f"{m['onnxruntime']}, torch {m['torch'] or '—'}, GPU {m['gpu'] or 'none'}, "
            f"TensorRT {m['tensorrt'] or 'none'}, load {m['load_average_1m']}")


def tables(report: dict) -> list:
    """The two rich tables (stages per batch, pipeline FPS), ready for a console to print."""
    from rich.table import Table

    stages = Table(title="Stages per batch: median ms (p10–p90)")
    for col in ("backend", "precision", "decoder", "batch", *BATCH_STAGES, "ms/face", "faces/s"):
        stages.add_column(col, justify="left" if col in ("backend", "precision", "decoder") else "right")
    for row in stage_rows(report):
        stages.add_row(*row)
    stages.caption = f"detect (YuNet, 640x480 frame): {_ms(report['detect'])} ms per frame"
    pipe = Table(title=f"Pipeline on {report['frames']['count']} demo frames (tracking on): mean ms per frame")
    for col in ("configuration", "FPS", *PIPELINE_STAGES, "faces/detections", "vs baseline"):
        pipe.add_column(col, justify="left" if col == "configuration" else "right")
    for row in pipeline_rows(report):
        pipe.add_row(*row)
    return [stages, pipe]


def summary_lines(report: dict) -> list[str]:
    lines = []
    sp = report["speedup"]
    for key in ("default", "fastest"):
        e = sp.get(key)
        if e and e["ratio"]:
            lines.append(f"speedup ({key}: {e['backend']} {e['precision']}): {e['fps']:.1f} FPS vs baseline "
                         f"{e['baseline_fps']:.2f} FPS = {e['ratio']:.1f}x (goal >= {sp['goal']:.0f}x)")
    for r in report["results"]:
        p = r["pipeline"]
        if p["faces"] == 0:
            lines.append(f"{r['backend']} {case_precision(r['precision'], r.get('target'))}: the tracker kept no "
                         "face (landmark scores below its min_score: an untrained model?), so the detector ran on "
                         "every frame: this FPS is the no-tracking worst case")
    for other in report.get("others") or []:
        st = other["stages"]
        lines.append(f"{other['description']}: {other['fps']:.1f} FPS on the same {other['frames']} frames "
                     f"(detect {st['detect']['median_ms']:.1f} ms, landmarks {st['landmarks']['median_ms']:.2f} ms per frame; "
                     f"{other['faces']} faces found)")
    cal = report["model"]["calibration"]
    if any(r["precision"] == "int8" for r in report["results"]):
        origin = "built-in fallback face" if cal.get("fallback") else cal.get("source")
        kept = report["model"].get("int8_kept_out") or []
        lines.append(f"int8 calibrated on {cal.get('faces')} faces from {origin} ({cal.get('method')}); "
                     f"kept out of int8 by the accuracy guard: {', '.join(kept) or 'nothing'}")
        if report["model"].get("int8_cpu_kept_out") is not None:
            kept = report["model"]["int8_cpu_kept_out"]
            lines.append(f"int8 (cpu file): ONNX Runtime's integer kernels; kept in fp32 by the accuracy guard: "
                         f"{', '.join(kept) or 'nothing'}")
    for s in report["skipped"]:
        what = " ".join(str(s[k]) for k in ("backend", "precision", "decoder") if s.get(k))
        lines.append(f"skipped {what}: {s['reason']}")
    return lines
