"""The last artifact: the TensorRT engine of the selected precision's file, built on this machine
(or copied from the previous folder when its key, which covers TensorRT, GPU, graph, plugin and
profile, is unchanged). Its failure is TensorRT's (builder/tensorrt_build)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from shfan.builder import engine_rules, tensorrt_build
from shfan.builder.cache import engine_key
from shfan.builder.options import BuildOptions
from shfan.builder.progress import Stages
from shfan.contracts import BuildManifest


def add_engine(stage_dir: Path, manifest: BuildManifest, opts: BuildOptions, trt_info: dict | None,
               plugin_sha: str | None, old_cache: dict, st: Stages) -> tuple[BuildManifest, dict]:
    """(manifest with the engine recorded, {precision: engine cache key}); no engine without
    TensorRT, or when the selected file is for ONNX Runtime's CPU provider."""
    selected = manifest.selected_precision
    art = manifest.artifact(selected)
    if trt_info is None:
        return manifest, {}
    if art.target == "cpu":
        st.note(f"no TensorRT engine: the selected {selected} file is for ONNX Runtime's CPU provider "
                "(build --target all or tensorrt for an engine)")
        return manifest, {}
    key = engine_key(stage_dir, art, opts, trt_info, plugin_sha)
    name = engine_rules.engine_name(selected, opts.decoder)
    old_engine = Path(opts.out) / name
    if not opts.force and old_cache.get("engines", {}).get(selected) == key and old_engine.is_file():
        shutil.copy2(old_engine, stage_dir / name)
        st.note(f"engine {name} reused (cache key {key[:12]})")
    else:
        cache_file = stage_dir / "timing.cache"
        if (Path(opts.out) / "timing.cache").is_file():
            shutil.copy2(Path(opts.out) / "timing.cache", cache_file)
        with st.stage(f"TensorRT {trt_info['version']} engine") as s:
            tensorrt_build.build_engine(stage_dir / art.engine_source, stage_dir / name, manifest.config.input_size,
                                        opts.max_batch, opts.workspace_mb, cache_file, opts.plugin_lib,
                                        opts.decoder == "plugin", log=st.warn)
            s["detail"] = f"{name}, batch 1..{opts.max_batch}, sm_{trt_info['sm']}"
    artifacts = {**manifest.artifacts, art.key: replace(art, engine=name)}
    return replace(manifest, artifacts=artifacts), {selected: key}
