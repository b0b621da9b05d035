"""Every TensorRT name the code uses exists in every TensorRT release shfan supports, checked
without TensorRT against the committed per-release API data (tests/tensorrt_releases/, made from the
real bindings wheels by scripts/tensorrt_api.py)."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shfan.builder import engine_rules
from shfan.contracts import MIN_TENSORRT

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "tensorrt_releases"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = load_script("tensorrt_check")
GLUE = ["runtime/backends/tensorrt/runner.py", "builder/tensorrt_build.py", "shfan/selftest.py", "builder/engine_rules.py"]


@pytest.fixture(scope="module")
def releases():
    return check.load_releases(DATA)


def planted(tmp_path, file, old, new):
    """A copy of the TensorRT glue with one edit in `file`; its problems."""
    for rel in GLUE:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    text = (tmp_path / file).read_text()
    assert text.count(old) == 1, old
    (tmp_path / file).write_text(text.replace(old, new))
    return check.problems(check.find_uses(tmp_path, ("runtime", "builder", "shfan")), check.load_releases(DATA))


def test_supported_releases_are_the_claimed_ones(releases):
    """10.3 (JetPack 6.1/6.2), the newest 10.x and the newest 11.x, none below MIN_TENSORRT."""
    versions = [check.version_tuple(v) for v in releases]
    assert (10, 3, 0) in versions
    assert any(v[0] == 10 and v > (10, 3) for v in versions) and any(v[0] == 11 for v in versions)
    assert all(v[:2] >= MIN_TENSORRT for v in versions)
    index = json.loads((DATA / "releases.json").read_text())["api"]
    for version, entry in index.items():
        platforms = {re.search(r"(x86_64|aarch64)\.whl$", w["file"]).group(1) for w in entry["wheels"]}
        assert "x86_64" in platforms, version
        assert version == "10.3.0" or "aarch64" in platforms, f"{version}: no aarch64 wheel read"
        assert all(not missing for missing in entry["source_names_not_in_wheel"].values()), version


def test_every_tensorrt_use_exists_in_every_supported_release(releases):
    uses = check.find_uses()
    assert check.problems(uses, releases) == []


def test_the_walker_sees_the_tensorrt_calls_it_must():
    """Guards the check itself: if typing were lost, it would pass by seeing nothing."""
    uses = check.find_uses()
    names = {u.name or u.path[-1] for u in uses}
    for name in ("execute_async_v3", "set_tensor_address", "set_input_shape", "create_execution_context",
                 "deserialize_cuda_engine", "get_tensor_profile_shape", "build_serialized_network", "parse_from_file",
                 "set_timing_cache", "set_memory_pool_limit", "add_plugin_v3", "mark_output", "get_creator",
                 "create_plugin", "load_library", "WORKSPACE", "TensorIOMode"):
        assert name in names, name
    assert {u.file for u in uses} >= {"runtime/backends/tensorrt/runner.py", "builder/tensorrt_build.py", "shfan/selftest.py"}


def test_a_misspelt_method_fails_in_every_release(tmp_path, releases):
    found = planted(tmp_path, "runtime/backends/tensorrt/runner.py", "ctx.execute_async_v3(", "ctx.execute_async_v4(")
    expected = f"IExecutionContext.execute_async_v4 is missing in TensorRT {', '.join(releases)};"
    assert len(found) == 1 and expected in found[0]


def test_a_name_removed_in_11_fails_there_unless_guarded(tmp_path):
    line = "config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)"
    found = planted(tmp_path, "builder/tensorrt_build.py", line, f"{line}; config.set_flag(trt.BuilderFlag.FP16)")
    lacking = re.search(r"BuilderFlag.FP16 is missing in TensorRT ([\d., ]+);", found[0]).group(1).split(", ")
    assert len(found) == 1 and lacking and all(v.startswith("11.") for v in lacking)
    guarded = planted(tmp_path, "builder/tensorrt_build.py", line,
                      f"{line}; config.set_flag(trt.BuilderFlag.FP16)  # tensorrt: <11")
    assert guarded == []


def test_a_misspelt_probe_fails(tmp_path):
    found = planted(tmp_path, "shfan/selftest.py", "return self.trt.get_plugin_registry().get_creator(*PLUGIN)",
                    'return getattr(self.trt.get_plugin_registry(), "get_creater", None)(*PLUGIN)')
    assert len(found) == 1 and "probed name 'get_creater' exists in no supported TensorRT" in found[0]


def test_a_wrong_enum_member_fails(tmp_path):
    found = planted(tmp_path, "runtime/backends/tensorrt/runner.py", "trt.Logger(trt.Logger.WARNING)", "trt.Logger(trt.Logger.WARN)")
    assert len(found) == 1 and "Logger.WARN is missing" in found[0]


def test_network_flags_exist_in_each_release(releases):
    """network_flags probes the flag enum by name: a misspelt name would silently drop the bit."""
    for version, api in releases.items():
        members = set(api["classes"]["NetworkDefinitionCreationFlag"])
        assert set(engine_rules.network_flag_names(version)) <= members, version
    assert all("EXPLICIT_BATCH" not in api["classes"]["NetworkDefinitionCreationFlag"]
               for version, api in releases.items() if version.startswith("11."))


def test_committed_names_are_in_the_real_10_3_wheel(tmp_path):
    """The data against the wheel itself (needs PyPI; skips offline). `mark_output` exists in 10.3
    only as the tail of `unmark_output`: found as a NUL-terminated tail, not as a whole string."""
    api = load_script("tensorrt_api")
    try:
        wheel = api.download("tensorrt-cu12-bindings", "10.3.0", "manylinux_2_17_x86_64", tmp_path)
    except (subprocess.CalledProcessError, SystemExit, OSError) as exc:
        pytest.skip(f"cannot download tensorrt-cu12-bindings 10.3.0 here: {str(exc).splitlines()[0]}")
    strings, init_text = api.wheel_strings(wheel)
    assert "mark_output" not in strings and "unmark_output" in strings
    data = json.loads((DATA / "api-10.3.0.json").read_text())
    tails: dict = {}
    names = {n for members in data["classes"].values() for n in members} | set(data["module"])
    py_module, py_members = api.python_names(init_text)  # defined in Python by the wheel's __init__.py
    python_level = py_module | set().union(*py_members.values()) | {"append", "extend", "insert", "pop", "clear", "count"}
    absent = sorted(n for n in names - python_level if not api.present(n, strings, tails))
    assert absent == []


def test_the_data_folder_does_not_shadow_tensorrt():
    """tests/ is on sys.path under pytest: a tests/tensorrt/ folder would import as `tensorrt`
    (a namespace package) and make every TensorRT path think TensorRT is installed."""
    spec = importlib.util.find_spec("tensorrt")
    assert spec is None or ROOT not in Path(spec.origin or next(iter(spec.submodule_search_locations))).parents
