"""The only module that imports tensorrt: parse an ONNX file into a strongly typed network and
serialize an engine. Imported only when TensorRT is present and an engine is wanted."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from shfan.builder import engine_rules
from shfan.errors import BuildError
from shfan.io import write_bytes

if TYPE_CHECKING:  # annotations only (scripts/tensorrt_check.py reads them)
    import tensorrt as trt

_log = logging.getLogger("shfan.builder")


def use_timing_cache(config: trt.IBuilderConfig, data: bytes, log=_log.warning):
    """Give `config` a timing cache from `data` (a previous build's), or a fresh one.

    A cache from another GPU or TensorRT version (a build folder copied from x86 to a Jetson)
    is refused by set_timing_cache(..., ignore_mismatch=False) or not created at all; then the
    build starts a fresh cache and says so in one line. Returns the cache set (None: none)."""
    cache: trt.ITimingCache | None = config.create_timing_cache(data) if data else None
    if data and cache is None:
        log("timing cache: the saved cache is unreadable (other TensorRT version?); starting a fresh one")
    if cache is not None and not config.set_timing_cache(cache, ignore_mismatch=False):
        log("timing cache: the saved cache is from another GPU or TensorRT version; starting a fresh one")
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log("timing cache: TensorRT could not create one; building without it (slower builds)")
            return None
    return cache


def save_timing_cache(config: trt.IBuilderConfig, path: Path, log=_log.warning) -> bool:
    """Write the build's timing cache atomically; False (and one line) when there is none."""
    cache: trt.ITimingCache | None = config.get_timing_cache()
    data = memoryview(cache.serialize()) if cache is not None else None
    if data is None or data.nbytes == 0:
        log("timing cache: TensorRT returned none after the build; not saved")
        return False
    write_bytes(path, data)
    return True


def build_engine(onnx_path: Path, engine_path: Path, input_size: int, max_batch: int, workspace_mb: int,
                 timing_cache: Path, plugin_lib=None, needs_plugin: bool = False, log=_log.warning) -> None:
    """Parse, build, and write `engine_path` atomically (shfan.io.write_bytes). `log` gets the
    one-line timing-cache notes (the builder passes Stages.warn)."""
    import tensorrt as trt

    version = trt.__version__
    engine_rules.check_tensorrt_version(version)
    from shfan.runtime.backends.tensorrt.runner import trt_logger

    logger = trt_logger(trt)
    if needs_plugin:
        from shfan.plugins import load_plugin_library

        load_plugin_library(plugin_lib)  # PluginError (a ShfanError): one line from the CLI
    builder = trt.Builder(logger)
    network: trt.INetworkDefinition = builder.create_network(engine_rules.network_flags(version, trt.NetworkDefinitionCreationFlag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).strip().replace("\n", " ") for i in range(parser.num_errors)]
        raise BuildError(f"TensorRT cannot parse {onnx_path.name}: " + " | ".join(errors or ["unknown error"]))
    config: trt.IBuilderConfig = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    use_timing_cache(config, timing_cache.read_bytes() if timing_cache.is_file() else b"", log)
    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    shapes = engine_rules.profile_shapes(input_size, max_batch)
    profile.set_shape(network.get_input(0).name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above); "
                         "try a larger --workspace-mb or --precision fp16")
    save_timing_cache(config, timing_cache, log)
    write_bytes(engine_path, memoryview(serialized))
