"""The only module that imports tensorrt: parse an ONNX file into a strongly typed network and
serialize an engine. Imported only when TensorRT is present and an engine is wanted."""

from __future__ import annotations

import os
from pathlib import Path

from shfan.builder import plan
from shfan.builder.metadata import BuildError


def available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def device() -> tuple[str | None, int | None]:
    """(GPU name, SM as int e.g. 87) via the doctor's probes (nvidia-smi or the Jetson model)."""
    from shfan import doctor

    probes = doctor.Probes()
    found = doctor.gpus(probes, doctor.jetson_model(probes))
    return found[0] if found else (None, None)


def build_engine(onnx_path: Path, engine_path: Path, input_size: int, max_batch: int, workspace_mb: int,
                 timing_cache: Path, plugin_lib=None, needs_plugin: bool = False, log=print) -> None:
    """Parse, build, and write `engine_path` atomically (tmp file + os.replace)."""
    import tensorrt as trt

    version = trt.__version__
    plan.check_tensorrt_version(version)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    if needs_plugin:
        from shfan.plugins import PluginError, load_plugin_library

        try:
            load_plugin_library(plugin_lib)
        except PluginError as exc:
            raise BuildError(str(exc)) from None
    builder = trt.Builder(logger)
    network = builder.create_network(plan.network_flags(version, trt.NetworkDefinitionCreationFlag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).strip().replace("\n", " ") for i in range(parser.num_errors)]
        raise BuildError(f"TensorRT cannot parse {onnx_path.name}: " + " | ".join(errors or ["unknown error"]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    shapes = plan.profile_shapes(input_size, max_batch)
    profile.set_shape(network.get_input(0).name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above); "
                         "try a larger --workspace-mb or --precision fp16")
    _write_atomic(timing_cache, memoryview(config.get_timing_cache().serialize()))
    _write_atomic(engine_path, memoryview(serialized))


def _write_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
