"""Reuse between builds: the key of a build's inputs, the files' hashes that prove a folder is
unchanged since it was built, the ONNX files copied when only the engine is (re)built, and the
engine's own key."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

from shfan.builder import artifacts, engine_rules
from shfan.builder.metadata import OPSET
from shfan.builder.options import BuildOptions
from shfan.builder.progress import Stages
from shfan.contracts import MANIFEST, Artifact, BuildManifest
from shfan.errors import BackendError
from shfan.io import sha256_file


def source_fingerprint(path) -> str:
    """Cheap identity of a calibration source (names, sizes, mtimes), for the cache key."""
    if path is None:
        return "builtin-fallback"
    path = Path(path)
    if not path.exists():
        return f"missing:{path}"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def inputs_key(opts: BuildOptions, source: Path, version: str) -> str:
    """Everything the ONNX files depend on: same key, same files."""
    return engine_rules.build_inputs_key(
        source=sha256_file(source), precision=opts.precision, decoder=opts.decoder,
        calib=source_fingerprint(opts.calib_data), max_calib=opts.max_calib, calib_method=opts.calib_method,
        max_nme_drift=opts.max_nme_drift, shfan=version, opset=OPSET,
        **({"target": opts.target} if opts.target != "tensorrt" else {}))


def file_hashes(folder: Path) -> dict:
    """sha256 of every file of a build folder (but cache.json, which holds them): a later build
    with the same inputs is skipped only while every one is still there, unchanged."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != artifacts.CACHE}


def damaged_files(folder: Path, cache: dict) -> list[str]:
    """Files recorded in cache.json that are missing or differ; all of them for a folder built
    before the hashes were recorded (["cache.json (no file hashes)"])."""
    recorded = cache.get("files")
    if not isinstance(recorded, dict) or not recorded:
        return [f"{artifacts.CACHE} (no file hashes)"]
    folder = Path(folder)
    return [name for name, sha in recorded.items()
            if not (folder / name).is_file() or sha256_file(folder / name) != sha]


def reuse_onnx(out: Path, stage_dir: Path, old: BuildManifest, st: Stages) -> tuple[BuildManifest, dict]:
    """Identical inputs: copy the ONNX files, only the engine is (re)built."""
    with st.stage("reuse ONNX files") as s:
        for art in old.artifacts.values():
            for name in (art.onnx, art.onnx_decoded):
                if name:
                    shutil.copy2(out / name, stage_dir / name)
        if (out / artifacts.CALIBRATION_CACHE).is_file():
            shutil.copy2(out / artifacts.CALIBRATION_CACHE, stage_dir / artifacts.CALIBRATION_CACHE)
        s["detail"] = f"from {out} (same inputs)"
    manifest = replace(old, artifacts={k: replace(a, engine=None) for k, a in old.artifacts.items()})
    return manifest, artifacts.read_json(out / artifacts.CALIBRATION) or old.calibration


def engine_key(folder: Path, art: Artifact, opts: BuildOptions, trt_info: dict, plugin_sha: str | None) -> str:
    return engine_rules.engine_cache_key(trt_info["version"], trt_info["sm"], sha256_file(folder / art.engine_source),
                                 plugin_sha if opts.decoder == "plugin" else None, opts.max_batch, opts.workspace_mb)


def engine_up_to_date(out: Path, manifest: BuildManifest, cache: dict, opts: BuildOptions, trt_info: dict,
                      plugin_sha: str | None) -> bool:
    selected = manifest.selected_precision
    art = manifest.artifact(selected) if selected else None
    if not art or not art.engine or not (out / art.engine).is_file():
        return False
    return cache.get("engines", {}).get(selected) == engine_key(out, art, opts, trt_info, plugin_sha)


def read_old(out: Path) -> tuple[BuildManifest | None, dict]:
    """The folder's previous manifest (None when missing or unreadable: nothing to reuse) and cache."""
    data = artifacts.read_json(out / MANIFEST)
    try:
        manifest = BuildManifest.from_json(data, str(out / MANIFEST)) if data else None
    except (BackendError, TypeError, ValueError):
        manifest = None
    return manifest, artifacts.read_json(out / artifacts.CACHE) or {}
