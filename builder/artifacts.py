"""The output folder: built in a hidden sibling and renamed into place, so a failed build
leaves nothing half-written and never destroys the previous good build."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from shfan.errors import BuildError
from shfan.contracts import MANIFEST

CALIBRATION = "calibration.json"
CALIBRATION_CACHE = "calibration.cache"  # int8 activation scales, TensorRT calibration-cache format
CACHE = "cache.json"  # build-input key and engine keys, for reuse on identical rebuilds


def check_out_dir(out: Path, marker: str = MANIFEST, what: str = "shfan-build folder", option: str = "--out") -> None:
    """Only a previous folder of ours (it holds `marker`), an empty one or nothing may be replaced."""
    if out.exists() and not (out.is_dir() and ((out / marker).is_file() or not any(out.iterdir()))):
        raise BuildError(f"{out} exists and is not a {what}; choose another {option} or remove it")


@contextlib.contextmanager
def staged_folder(out: Path, marker: str = MANIFEST, what: str = "shfan-build folder", option: str = "--out"):
    """Yield an empty folder beside `out`; on success it replaces `out`, on any error it is
    removed and `out` is untouched. `marker`, `what`, `option`: see check_out_dir (the Triton
    repository writer stages its folder the same way)."""
    out = Path(out)
    check_out_dir(out, marker, what, option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    except OSError as exc:
        raise BuildError(f"{out}: cannot write in {out.parent} ({exc.strerror}); choose another {option}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes it private; the output folder is not
    try:
        yield stage
    except OSError as exc:  # a full disk: name the file being written (a write error carries no name)
        where = writing(stage, out, exc)
        shutil.rmtree(stage, ignore_errors=True)
        what = f"cannot write ({exc.strerror or exc})" if out in where.parents or where == out else exc.strerror or exc
        raise BuildError(f"{where}: {what}; {out} was left as it was") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    try:
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        os.rename(stage, out)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old, out)
        raise BuildError(f"{out}: cannot be replaced ({exc.strerror}); the previous {what} was kept") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def writing(stage: Path, out: Path, exc: OSError) -> Path:
    """The file an OSError in the staged folder was about: its own filename when it has one, else
    the newest file in the stage (the one being written), under its final name in `out`."""
    if exc.filename:
        name = Path(exc.filename)
        return out / name.relative_to(stage) if name.is_relative_to(stage) else name
    files = [p for p in stage.rglob("*") if p.is_file()]
    if not files:
        return out
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    return out / newest.relative_to(stage)


def write_json(path: Path, data: dict) -> None:
    from shfan.atomic import write_text

    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def artifact_entry(onnx: str, onnx_decoded: str | None, engine: str | None, nme: float, drift: float | None,
                   excluded: list[str], size_bytes: int, latency_ms: float) -> dict:
    """One precision's record in manifest['artifacts'] (the runtime reads 'onnx')."""
    return {"onnx": onnx, "onnx_decoded": onnx_decoded, "engine": engine,
            "nme_inter_ocular": None if nme is None else round(float(nme), 4),
            "nme_drift": None if drift is None else round(float(drift), 4),
            "excluded_layers": list(excluded), "size_bytes": int(size_bytes),
            "ort_cpu_latency_ms": round(float(latency_ms), 2)}
