"""Pure TensorRT build decisions (builder/engine_rules), per TensorRT version, without TensorRT."""

import enum
from pathlib import Path

import pytest

from shfan.builder import engine_rules
from shfan.errors import BuildError


class Flags10(enum.IntEnum):  # the members TensorRT 10 has (a stand-in enum, not a fake module)
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 5


class Flags11(enum.IntEnum):  # 11.x still has STRONGLY_TYPED (deprecated, ignored); we do not pass it
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 5


class FlagsWithout(enum.IntEnum):
    EXPLICIT_BATCH = 0


@pytest.mark.parametrize("version,names", [("10.3.0.30", ["STRONGLY_TYPED"]), ("10.13.3.9", ["STRONGLY_TYPED"]),
                                           ("11.0.0.114", []), ("11.2.1", [])])
def test_network_flags_per_version(version, names):
    assert engine_rules.network_flag_names(version) == names


def test_network_flag_bits():
    assert engine_rules.network_flags("10.3.0", Flags10) == 1 << 5
    assert engine_rules.network_flags("11.1.0", Flags11) == 0
    # a 10.x enum missing the member (should not happen) yields no bit rather than a crash
    assert engine_rules.network_flags("10.13.0", FlagsWithout) == 0


@pytest.mark.parametrize("version", ["8.6.2", "10.0.1", "", "abc"])
def test_too_old_tensorrt_is_refused(version):
    with pytest.raises(BuildError, match="10.1"):
        engine_rules.network_flag_names(version)


def test_profile_shapes():
    shapes = engine_rules.profile_shapes(256, 8)
    assert shapes == {"min": (1, 3, 256, 256), "opt": (1, 3, 256, 256), "max": (8, 3, 256, 256)}  # opt: 1 face
    assert engine_rules.profile_shapes(128, 1)["min"] == engine_rules.profile_shapes(128, 1)["max"]
    with pytest.raises(BuildError, match="max-batch"):
        engine_rules.profile_shapes(256, 0)


def test_engine_cache_key_changes_with_every_input():
    base = dict(tensorrt_version="10.3.0", sm=87, onnx_sha256="a" * 64, plugin_sha256="b" * 64, max_batch=4,
                workspace_mb=1024)
    key = engine_rules.engine_cache_key(**base)
    assert key == engine_rules.engine_cache_key(**base)
    for field, other in [("tensorrt_version", "10.13.0"), ("sm", 110), ("onnx_sha256", "c" * 64),
                         ("plugin_sha256", None), ("max_batch", 8), ("workspace_mb", 2048)]:
        assert engine_rules.engine_cache_key(**{**base, field: other}) != key, field


def test_engine_cache_key_changes_with_the_opt_batch(monkeypatch):
    base = dict(tensorrt_version="10.3.0", sm=87, onnx_sha256="a" * 64, plugin_sha256=None, max_batch=4,
                workspace_mb=1024)
    key = engine_rules.engine_cache_key(**base)
    monkeypatch.setattr(engine_rules, "OPT_BATCH", 4)  # an engine built when opt was the max batch
    assert engine_rules.engine_cache_key(**base) != key


def test_manifest_engine_match():
    """The runtime's question, BuildManifest.engine_problems (plan.manifest_engine_matches was
    its stale copy): empty when the recorded engine fits this system."""
    from shfan.contracts import BuildManifest

    manifest = BuildManifest.from_json({"tensorrt": {"version": "10.3.0", "device": "Orin", "sm": 87},
                                        "plugin_sha256": "p", "artifacts": {}})
    assert manifest.engine_problems("10.3.0", 87, plugin_sha256="p") == []
    assert manifest.engine_problems("10.13.0", 87, plugin_sha256="p")
    assert manifest.engine_problems("10.3.0", 110, plugin_sha256="p")
    assert manifest.engine_problems("10.3.0", 87, plugin_sha256="other")
    assert BuildManifest.from_json({"tensorrt": None, "artifacts": {}}).engine_problems("10.3.0", 87)
    # where engine_problems differs from the old helper: an unknown sm is not a mismatch, and
    # only --decoder plugin engines depend on the plugin library
    assert manifest.engine_problems("10.3.0", None, plugin_sha256="p") == []
    onnx_ops = BuildManifest.from_json({"tensorrt": {"version": "10.3.0", "sm": 87}, "decoder": "onnx",
                                        "plugin_sha256": "p", "artifacts": {}})
    assert onnx_ops.engine_problems("10.3.0", 87, plugin_sha256=None) == []


def test_names_and_jetson_command():
    assert engine_rules.engine_name("int8", "plugin") == "model_int8_plugin.engine"
    assert engine_rules.engine_name("fp16", "none") == "model_fp16.engine"
    cmd = engine_rules.jetson_command("model_int8.onnx", "int8", "plugin", 4)
    assert cmd.startswith("shfan-build --onnx model_int8.onnx --precision int8 --decoder plugin")


# ---------------------------------------------------------------- timing cache (stand-in builder config)


class StandInCache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return self.data


class StandInConfig:
    """create/set/get_timing_cache as IBuilderConfig documents them: create may return None,
    set returns False for a cache from another device or TensorRT version."""

    def __init__(self, readable=True, matching=True, fresh_ok=True, after_build=b"new-cache"):
        self.readable, self.matching, self.fresh_ok, self.after_build = readable, matching, fresh_ok, after_build
        self.set_calls = []

    def create_timing_cache(self, data):
        if data and not self.readable:
            return None
        if not data and not self.fresh_ok:
            return None
        return StandInCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        self.set_calls.append(cache.data)
        return self.matching or cache.data == b""

    def get_timing_cache(self):
        return None if self.after_build is None else StandInCache(self.after_build)


@pytest.mark.parametrize("config, data, sets, lines", [
    (StandInConfig(), b"old", [b"old"], []),
    (StandInConfig(), b"", [b""], []),
    (StandInConfig(matching=False), b"x86", [b"x86", b""], ["another GPU or TensorRT version"]),
    (StandInConfig(readable=False), b"junk", [b""], ["unreadable"]),
    (StandInConfig(readable=False, fresh_ok=False), b"junk", [], ["unreadable", "building without it"]),
], ids=["reuse", "fresh", "mismatch", "unreadable", "none"])
def test_timing_cache_fallback(config, data, sets, lines):
    from shfan.builder.tensorrt_build import use_timing_cache

    log = []
    cache = use_timing_cache(config, data, log.append)
    assert config.set_calls == sets
    assert len(log) == len(lines) and all(want in got and "\n" not in got for want, got in zip(lines, log))
    assert (cache is None) == (not sets)


def test_timing_cache_saved_only_when_there_is_one(tmp_path):
    from shfan.builder.tensorrt_build import save_timing_cache

    log = []
    assert save_timing_cache(StandInConfig(after_build=b"tuned"), tmp_path / "timing.cache", log.append)
    assert (tmp_path / "timing.cache").read_bytes() == b"tuned" and not log
    assert not save_timing_cache(StandInConfig(after_build=None), tmp_path / "none.cache", log.append)
    assert not (tmp_path / "none.cache").exists() and "not saved" in log[0]


# ---------------------------------------------------------------- which engines record the plugin


def test_manifest_records_the_plugin_only_for_plugin_engines(tmp_path, monkeypatch):
    from shfan import plugins
    from shfan.builder.workflow import plugin_record

    lib = tmp_path / "libshfan_plugins.so"
    lib.write_bytes(b"plugin")
    monkeypatch.delenv(plugins.ENV_PLUGIN_LIB, raising=False)
    for decoder in ("onnx", "none"):
        assert plugin_record(decoder, "ab" * 32, lib) == {"plugin_sha256": None, "plugin_lib": None}
    assert plugin_record("plugin", "ab" * 32, lib) == {"plugin_sha256": "ab" * 32, "plugin_lib": str(lib.resolve())}
    assert plugin_record("plugin", None, None) == {"plugin_sha256": None, "plugin_lib": None}


# ---------------------------------------------------------------- library output: logging, not prints


def test_stages_log_to_the_builder_logger_without_a_writer(caplog, monkeypatch):
    import builtins
    import logging

    from shfan.builder.progress import Stages

    def no_print(*args, **kwargs):
        raise AssertionError("library code printed")

    monkeypatch.setattr(builtins, "print", no_print)
    with caplog.at_level(logging.INFO, logger="shfan.builder"):
        st = Stages()
        with st.stage("export ONNX") as s:
            s["detail"] = "12 nodes"
        st.warn("few faces")
    assert [r.name for r in caplog.records] == ["shfan.builder", "shfan.builder"]
    assert "export ONNX" in caplog.records[0].getMessage() and "12 nodes" in caplog.records[0].getMessage()
    assert caplog.records[1].getMessage() == "! few faces"
    lines = []
    Stages(lines.append).note("kept")  # an explicit writer still gets the lines
    assert lines == ["  kept"]


def test_quantization_quiet_touches_only_the_noisy_packages(capsys):
    import logging

    from shfan.builder.precision import quiet

    mo, ours, root = logging.getLogger("modelopt.onnx.quiet_test"), logging.getLogger("shfan.quiet_test"), logging.root
    mo.setLevel(logging.INFO)
    before = (mo.level, ours.level, root.level, list(root.filters))
    with quiet() as sink:
        assert not mo.isEnabledFor(logging.WARNING) and mo.isEnabledFor(logging.ERROR)
        assert ours.level == before[1] and root.level == before[2]  # the root logger's level is not touched
        print("a calibrator's print")
    assert "calibrator" in sink.getvalue() and capsys.readouterr().out == ""
    assert (mo.level, ours.level, root.level, list(root.filters)) == before


def test_hand_made_manifest_has_the_contract_keys():
    """What tests and scripts write by hand (keyword fields) reads back as the same manifest."""
    from shfan.contracts import BuildManifest

    made = BuildManifest(shfan_version="0.1.0", model_config={"input_size": 64}, model_sha256="0" * 64,
                         decoder="onnx", opset=17, selected_precision="fp32", artifacts={"fp32": {}},
                         calibration={"x": 1})
    m = made.to_json()
    assert BuildManifest.from_json(m) == made
    assert m["calibration"] == {"x": 1} and m["plugin_sha256"] is None


def test_best_picks_the_fastest_file_within_the_bound_and_says_when_none_is():
    from shfan.builder.workflow import select
    from shfan.builder.steps import Measured

    def m(latency, drift, within=True):
        return Measured(Path("x.onnx"), 3.5, drift, latency, within_bound=within)

    measured = {("fp32", "tensorrt"): m(20.0, None), ("fp16", "tensorrt"): m(12.0, 0.01),
                ("int8", "tensorrt"): m(8.0, 0.3), ("int8", "cpu"): m(6.0, 0.05)}
    assert select("best", measured, 0.1) == "fp16"  # int8's TensorRT file drifts too far
    assert select("best", measured, 0.5) == "int8"  # ranked by its CPU file
    assert select("int8", measured, 0.1) == "int8"  # asked for by name: not the selection's call
    over = {("fp16", "tensorrt"): m(12.0, 0.4, within=False)}  # --onnx of an fp16 file over the bound
    with pytest.raises(BuildError, match=r"no file of this build stays within ±0.1 NME of fp32 \(fp16 \+0.400\)"):
        select("best", over, 0.1)
