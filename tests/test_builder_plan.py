"""Pure TensorRT build decisions, per TensorRT version, without TensorRT."""

import enum

import pytest

from shfan.builder import plan
from shfan.builder.metadata import BuildError


class Flags10(enum.IntEnum):  # the members TensorRT 10 has (a stand-in enum, not a fake module)
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 5


class Flags11(enum.IntEnum):
    EXPLICIT_BATCH = 0


@pytest.mark.parametrize("version,names", [("10.3.0.30", ["STRONGLY_TYPED"]), ("10.13.3.9", ["STRONGLY_TYPED"]),
                                           ("11.0.0.114", []), ("11.2.1", [])])
def test_network_flags_per_version(version, names):
    assert plan.network_flag_names(version) == names


def test_network_flag_bits():
    assert plan.network_flags("10.3.0", Flags10) == 1 << 5
    assert plan.network_flags("11.1.0", Flags11) == 0
    # a 10.x enum missing the member (should not happen) yields no bit rather than a crash
    assert plan.network_flags("10.13.0", Flags11) == 0


@pytest.mark.parametrize("version", ["8.6.2", "10.0.1", "", "abc"])
def test_too_old_tensorrt_is_refused(version):
    with pytest.raises(BuildError, match="10.1"):
        plan.network_flag_names(version)


def test_profile_shapes():
    shapes = plan.profile_shapes(256, 8)
    assert shapes == {"min": (1, 3, 256, 256), "opt": (8, 3, 256, 256), "max": (8, 3, 256, 256)}
    assert plan.profile_shapes(128, 1)["min"] == plan.profile_shapes(128, 1)["max"]
    with pytest.raises(BuildError, match="max-batch"):
        plan.profile_shapes(256, 0)


def test_engine_cache_key_changes_with_every_input():
    base = dict(tensorrt_version="10.3.0", sm=87, onnx_sha256="a" * 64, plugin_sha256="b" * 64, max_batch=4,
                workspace_mb=1024)
    key = plan.engine_cache_key(**base)
    assert key == plan.engine_cache_key(**base)
    for field, other in [("tensorrt_version", "10.13.0"), ("sm", 110), ("onnx_sha256", "c" * 64),
                         ("plugin_sha256", None), ("max_batch", 8), ("workspace_mb", 2048)]:
        assert plan.engine_cache_key(**{**base, field: other}) != key, field


def test_manifest_engine_match():
    manifest = {"tensorrt": {"version": "10.3.0", "device": "Orin", "sm": 87}, "plugin_sha256": "p"}
    assert plan.manifest_engine_matches(manifest, "10.3.0", 87, "p")
    assert not plan.manifest_engine_matches(manifest, "10.13.0", 87, "p")
    assert not plan.manifest_engine_matches(manifest, "10.3.0", 110, "p")
    assert not plan.manifest_engine_matches(manifest, "10.3.0", 87, "other")
    assert not plan.manifest_engine_matches({"tensorrt": None}, "10.3.0", 87, None)


def test_names_and_jetson_command():
    assert plan.engine_name("int8", "plugin") == "model_int8_plugin.engine"
    assert plan.engine_name("fp16", "none") == "model_fp16.engine"
    cmd = plan.jetson_command("model_int8.onnx", "int8", "plugin", 4)
    assert cmd.startswith("shfan-build --onnx model_int8.onnx --precision int8 --decoder plugin")
