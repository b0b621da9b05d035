"""The plugin's per-landmark math (plugins/include/shfan/subpixel_decode.h), built for the CPU,
against the shared decoder vectors and the NumPy reference (DESIGN.md §3: <= 1e-3 heatmap px)."""

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from shfan import codec, plugins
from shfan.selftest import VECTORS  # shfan/vectors/ (package data)

TOL_PX = 1e-3  # heatmap px, the cross-implementation contract
SCALE = 4.0  # heatmap -> network input (256 / 64), exercised everywhere


def assert_points_close(actual, expected, scale=SCALE, tol=TOL_PX):
    """actual: scaled landmarks from the plugin math; expected: reference in heatmap px."""
    err = np.abs(np.asarray(actual, np.float64) / scale - np.asarray(expected, np.float64)).max()
    assert err <= tol, f"max |diff| {err:.3g} heatmap px > {tol}"
    return err


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory):
    if plugins.host_compiler() is None:
        pytest.skip("no C++ compiler (g++) for the host decoder build")
    return plugins.load_host_library(plugins.build_host_library(tmp_path_factory.mktemp("host")))


def _cases():
    meta = json.loads((VECTORS / "subpixel_decode.json").read_text())
    return meta["cases"]


@pytest.fixture(scope="session")
def vectors():
    with np.load(VECTORS / "subpixel_decode.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_matches_shared_vectors(host_lib, vectors, case):
    name = case["name"]
    points, scores = plugins.decode_host(host_lib, vectors[f"{name}/heatmaps"], case["window"], case["temperature"], SCALE)
    assert points.shape == vectors[f"{name}/points"].shape and points.dtype == np.float32
    assert_points_close(points, vectors[f"{name}/points"])
    np.testing.assert_allclose(scores, vectors[f"{name}/scores"], rtol=0, atol=1e-6)


def _random_maps(rng, shape):
    b, k, h, w = shape
    pts = np.stack([rng.uniform(0, w, (b, k)), rng.uniform(0, h, (b, k))], -1)
    sigma = rng.uniform(1.0, 3.0)
    hm = codec.encode(pts, (h, w), sigma) * rng.uniform(0.3, 1.2, (b, k, 1, 1))
    return (hm + rng.normal(0, 0.03, hm.shape)).astype(np.float32)


SHAPES = [(1, 1, 1, 1), (2, 68, 64, 64), (1, 98, 32, 32), (3, 5, 24, 40), (1, 4, 128, 128), (1, 3, 7, 130)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("window,tau", [(5, 12.0), (3, 5.0), (7, 6.0), (1, 12.0), (9, 30.0)])
def test_random_fp32_matches_reference(host_lib, shape, window, tau):
    hm = _random_maps(np.random.default_rng(hash((shape, window)) % 2**32), shape)
    points, scores = plugins.decode_host(host_lib, hm, window, tau, SCALE)
    ref_points, ref_scores = codec.decode(hm, "subpixel", window, tau)
    assert_points_close(points, ref_points)
    np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_random_fp16_input_matches_reference_on_rounded_values(host_lib, shape):
    hm16 = _random_maps(np.random.default_rng(7), shape).astype(np.float16)
    points, scores = plugins.decode_host(host_lib, hm16, 5, 12.0, SCALE)  # real fp16 bytes in
    ref_points, ref_scores = codec.decode(hm16.astype(np.float32), "subpixel", 5, 12.0)
    assert_points_close(points, ref_points)
    np.testing.assert_array_equal(scores, ref_scores)


def test_fp16_conversion_is_exact_for_every_bit_pattern(host_lib):
    # 1x1 maps: the score is the converted input value itself.
    hm16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(1, -1, 1, 1)
    _, scores = plugins.decode_host(host_lib, hm16, 1, 12.0)
    np.testing.assert_array_equal(scores.ravel(), hm16.astype(np.float32).ravel())  # NaN == NaN here


def test_asserts_are_tight(host_lib, vectors):
    """A reference shifted by half a pixel (or by 2e-3 px) must fail the comparison."""
    points, _ = plugins.decode_host(host_lib, vectors["random_gaussians/heatmaps"], 5, 12.0, SCALE)
    expected = vectors["random_gaussians/points"]
    assert assert_points_close(points, expected) < 1e-4
    for shift in (0.5, 2e-3):
        with pytest.raises(AssertionError):
            assert_points_close(points, expected + shift)


def test_ties_pick_lowest_row_major_index(host_lib):
    hm = np.zeros((1, 1, 9, 9), np.float32)
    hm[0, 0, 6, 1] = hm[0, 0, 2, 5] = hm[0, 0, 2, 7] = 1.0
    points, _ = plugins.decode_host(host_lib, hm, 1, 12.0)
    np.testing.assert_array_equal(points[0, 0], [5.5, 2.5])


def test_invalid_window_is_rejected(host_lib):
    with pytest.raises(ValueError, match="window"):
        plugins.decode_host(host_lib, np.zeros((1, 1, 4, 4), np.float32), 4, 12.0)


def test_plugin_library_lookup_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(plugins.ENV_PLUGIN_LIB, raising=False)
    monkeypatch.setattr(plugins, "DEFAULT_PLUGIN_LIB", tmp_path / "absent.so")
    assert plugins.find_plugin_library() is None
    with pytest.raises(plugins.PluginError, match=re.escape(plugins.BUILD_COMMAND)):
        plugins.load_plugin_library()
    with pytest.raises(plugins.PluginError, match="does not exist"):
        plugins.find_plugin_library(tmp_path / "nope.so")
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not an ELF file")
    monkeypatch.setenv(plugins.ENV_PLUGIN_LIB, str(fake))
    assert plugins.find_plugin_library() == fake.resolve()
    with pytest.raises(plugins.PluginError, match="cannot load"):
        plugins.load_plugin_library()
    assert plugins.plugin_sha256(fake) == hashlib.sha256(b"not an ELF file").hexdigest()


def test_plugin_error_is_a_shfan_error():
    """One line on a CLI without re-wrapping: entry() prints every ShfanError."""
    from shfan.errors import ShfanError

    assert issubclass(plugins.PluginError, ShfanError) and issubclass(plugins.PluginError, RuntimeError)


def test_build_command_follows_where_the_sources_are(monkeypatch, tmp_path):
    """A checkout builds plugins/ into plugins/build (README, jetson/install.sh); an installed wheel
    builds its packaged sources (shfan/plugin_src/) into the user cache."""
    if not plugins.INSTALLED:
        assert plugins.build_command(87) == ("cmake -S plugins -B plugins/build -DCMAKE_CUDA_ARCHITECTURES=87 "
                                             "&& cmake --build plugins/build -j")
    monkeypatch.setattr(plugins, "INSTALLED", True)
    monkeypatch.setattr(plugins, "PLUGIN_DIR", tmp_path / "shfan" / "plugin_src")
    monkeypatch.setattr(plugins, "PLUGIN_BUILD_DIR", tmp_path / "cache" / "build")
    assert plugins.build_command() == (f"cmake -S {tmp_path}/shfan/plugin_src -B {tmp_path}/cache/build "
                                       f"&& cmake --build {tmp_path}/cache/build -j")
    for name in ("CMakeLists.txt", "include/shfan/subpixel_decode.h", "src/subpixel_decode_plugin.cpp"):
        assert (plugins._CHECKOUT_SOURCES / name).is_file() or (plugins._PACKAGED_SOURCES / name).is_file(), name


def test_a_compiler_that_cannot_run_is_a_plugin_error(tmp_path, monkeypatch):
    """Not 'cannot write' (the OSError used to come out of io.atomic_path as an OutputError)."""
    cxx = tmp_path / "g++"
    cxx.write_bytes(b"\x00not a program")
    cxx.chmod(0o755)
    monkeypatch.setenv("CXX", str(cxx))
    with pytest.raises(plugins.PluginError, match="cannot run the compiler .*g\\+\\+.*set CXX"):
        plugins.build_host_library(tmp_path / "cache", force=True)
    assert not any((tmp_path / "cache").iterdir())  # no half-written library left behind


def test_module_stays_light():
    code = "import sys, shfan.plugins; print(sorted({'torch', 'tensorrt', 'pycuda', 'cupy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugin_library_recorded_in_the_manifest_is_tried(tmp_path, monkeypatch):
    """A build made with --plugin-lib X records X; the runtime finds it without $SHFAN_PLUGIN_LIB."""
    monkeypatch.delenv(plugins.ENV_PLUGIN_LIB, raising=False)
    monkeypatch.setattr(plugins, "DEFAULT_PLUGIN_LIB", tmp_path / "absent.so")
    recorded = tmp_path / "custom" / "libshfan_plugins.so"
    recorded.parent.mkdir()
    recorded.write_bytes(b"x")
    assert plugins.find_plugin_library(recorded=recorded) == recorded.resolve()
    assert plugins.find_plugin_library(recorded=tmp_path / "moved.so") is None  # gone: the default, absent here
    env_lib = tmp_path / "env.so"
    env_lib.write_bytes(b"y")
    monkeypatch.setenv(plugins.ENV_PLUGIN_LIB, str(env_lib))
    assert plugins.find_plugin_library(recorded=recorded) == env_lib.resolve()  # the environment wins


def test_nonfinite_fp16_input_follows_the_rule(host_lib, vectors):
    """NaN/inf in real fp16 bytes: same peaks, weights and scores as the fp32 reference."""
    hm16 = vectors["nonfinite/heatmaps"].astype(np.float16)
    points, scores = plugins.decode_host(host_lib, hm16, 5, 12.0, SCALE)
    assert np.isfinite(points).all()
    assert_points_close(points, vectors["nonfinite/points"])
    np.testing.assert_array_equal(scores, vectors["nonfinite/scores"])  # NaN == NaN, inf == inf here


def test_nan_at_index_zero_never_wins(host_lib):
    hm = np.zeros((1, 1, 4, 4), np.float32)
    hm[0, 0, 0, 0] = np.nan
    hm[0, 0, 2, 3] = 0.5
    points, scores = plugins.decode_host(host_lib, hm, 1, 12.0)
    np.testing.assert_array_equal(points[0, 0], [3.5, 2.5])
    assert scores[0, 0] == 0.5


I32, I64, F16, F32, F64 = np.int32, np.int64, np.float16, np.float32, np.float64


@pytest.mark.parametrize("fields, expected", [
    ({"window": I32(7), "temperature": F32(6.0), "scale": F32(4.0)}, (7, 6.0, 4.0)),
    ({"window": I64(3), "temperature": F64(2.5), "scale": F16(2.0)}, (3, 2.5, 2.0)),  # ONNX parser widths
    ({"window": np.int8(1), "temperature": F16(12.0), "scale": F64(8.0), "other": F32(1.0)}, (1, 12.0, 8.0)),
    ({}, (5, 12.0, 1.0)),  # defaults
])
def test_plugin_creator_accepts(host_lib, fields, expected):
    assert plugins.parse_fields_host(host_lib, fields) == pytest.approx(expected)


@pytest.mark.parametrize("fields, message", [
    ({"temperature": F32(-200.0)}, "temperature must be a finite number > 0"),  # gave NaN landmarks
    ({"temperature": F32(0.0)}, "temperature must be a finite number > 0"),
    ({"temperature": F32(np.nan)}, "temperature must be a finite number > 0"),
    ({"temperature": F64(1e39)}, "temperature must be a finite number > 0"),  # inf as float32
    ({"scale": F32(0.0)}, "scale must be a finite number > 0"),
    ({"scale": F32(-np.inf)}, "scale must be a finite number > 0"),
    ({"window": I64(2**32 + 5)}, "does not fit in 32 bits"),  # was truncated to 5
    ({"window": I64(-(2**31) - 1)}, "does not fit in 32 bits"),
    ({"window": I32(4)}, "positive odd number"),
    ({"window": I32(-3)}, "positive odd number"),
    ({"window": F32(5.0)}, "window must be an integer attribute"),
    ({"temperature": I32(12)}, "temperature must be a float attribute"),
    ({"scale": np.zeros(0, F32)}, "has no value"),
], ids=lambda v: str(v)[:40])
def test_plugin_creator_refuses_bad_attributes(host_lib, fields, message):
    with pytest.raises(ValueError, match=message) as exc:
        plugins.parse_fields_host(host_lib, fields)
    assert str(exc.value).startswith("shfan::SubpixelDecode: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize("tau, scale", [(-200.0, 4.0), (0.0, 4.0), (np.inf, 4.0), (12.0, 0.0), (12.0, np.nan)])
def test_host_decoder_refuses_bad_temperature_and_scale(host_lib, tau, scale):
    with pytest.raises(ValueError, match="temperature"):
        plugins.decode_host(host_lib, np.zeros((1, 1, 4, 4), np.float32), 5, tau, scale)


def test_huge_window_costs_only_the_map(host_lib):
    """The window loops are clipped to the map: window 2^31-1 decodes like a whole-map window."""
    hm = np.random.default_rng(3).random((1, 2, 6, 5)).astype(np.float32)
    got, _ = plugins.decode_host(host_lib, hm, 2**31 - 1, 3.0)
    ref, _ = codec.decode(hm, "subpixel", 13, 3.0)  # 13 already covers every cell
    assert_points_close(got, ref, scale=1.0)
