"""Pure decisions of the TensorRT build (no tensorrt import, so they are tested anywhere):
which network flags a TensorRT version needs, the optimization profile and the engine cache key.
(Whether an engine recorded in a manifest fits the running system is
shfan.contracts.BuildManifest.engine_problems.)"""

from __future__ import annotations

import hashlib
import json

from shfan import platform_facts
from shfan.errors import BuildError
from shfan.io import version_tuple


def check_tensorrt_version(version: str) -> None:
    if not platform_facts.tensorrt_supported(version):
        raise BuildError(f"TensorRT {version} is too old: shfan needs >= {platform_facts.MIN_TENSORRT_TEXT} "
                         "(JetPack 6.1+); upgrade JetPack or build on a newer system")


def network_flag_names(version: str) -> list[str]:
    """Creation flags by name. TensorRT 10 takes precision from the ONNX file only with
    STRONGLY_TYPED; TensorRT 11 networks are always strongly typed (its STRONGLY_TYPED member
    still exists, deprecated and ignored, so it is not passed)."""
    check_tensorrt_version(version)
    return ["STRONGLY_TYPED"] if version_tuple(version)[0] == 10 else []


def network_flags(version: str, flag_enum) -> int:
    """Bitmask for create_network from the names above, tolerating an enum that lacks a name
    (a build without it yields no bit rather than a crash)."""
    bits = 0
    for name in network_flag_names(version):
        member = getattr(flag_enum, name, None)
        if member is not None:
            bits |= 1 << int(member)
    return bits


OPT_BATCH = 1  # the common case: one face in front of the camera (tactics are timed for it)


def profile_shapes(input_size: int, max_batch: int) -> dict[str, tuple[int, ...]]:
    """min batch 1, opt = the common case (OPT_BATCH faces), max = max_batch. The pipeline sends
    as many faces as it tracks, usually one or two; tuning for the maximum made the usual
    batch run kernels picked for a batch it rarely sees."""
    if max_batch < 1:
        raise BuildError(f"--max-batch must be >= 1, got {max_batch}")
    shape = (3, input_size, input_size)
    return {"min": (1, *shape), "opt": (min(OPT_BATCH, max_batch), *shape), "max": (max_batch, *shape)}


def engine_cache_key(tensorrt_version: str, sm: int | None, onnx_sha256: str, plugin_sha256: str | None,
                     max_batch: int, workspace_mb: int) -> str:
    """An engine is only valid for this TensorRT, this GPU architecture, this exact ONNX and
    plugin binary, and this profile; any change gives a different key."""
    fields = {"tensorrt": str(tensorrt_version), "sm": sm, "onnx_sha256": onnx_sha256,
              "plugin_sha256": plugin_sha256, "max_batch": int(max_batch), "workspace_mb": int(workspace_mb),
              "opt_batch": min(OPT_BATCH, int(max_batch))}  # engines tuned for another opt batch are rebuilt
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def build_inputs_key(**inputs) -> str:
    """Key of everything that shapes the ONNX artifacts (weights hash, precisions, decoder,
    calibration source and limits, shfan version): equal keys mean the ONNX files can be reused."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def engine_name(precision: str, decoder: str) -> str:
    return f"model_{precision}.engine" if decoder == "none" else f"model_{precision}_{decoder}.engine"


def jetson_command(onnx_name: str, precision: str, decoder: str, max_batch: int) -> str:
    """What to run where TensorRT lives, from an ONNX made here."""
    return (f"shfan-build --onnx {onnx_name} --precision {precision} --decoder {decoder} "
            f"--max-batch {max_batch} --out build")
