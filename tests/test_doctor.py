"""shfan-doctor: the report on fake Jetson probes, --json and the table here, the self-test's
logic. (The facts it reports are tested in test_platform_facts.py.)"""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import shfan
from shfan import doctor
from shfan import platform_facts as pf
from shfan.cli import doctor as doctor_cli

from test_platform_facts import L4T_35_4_1, L4T_36_4_0, NVCC_12_6  # real-format texts

REPO = Path(__file__).resolve().parents[1]

OPENCV_BUILD_INFO = ("  Video I/O:\n    FFMPEG:                      NO\n"
                     "    GStreamer:                   YES (1.20.3)\n"
                     "    v4l/v4l2:                    YES (linux/videodev2.h)\n")
SMI_QUERY = " ".join(pf.NVIDIA_SMI_QUERY)


def test_opencv_gstreamer_line():
    assert doctor.opencv_gstreamer(OPENCV_BUILD_INFO) is True
    assert doctor.opencv_gstreamer(OPENCV_BUILD_INFO.replace("YES (1.20.3)", "NO")) is False
    assert doctor.opencv_gstreamer("no video section") is None


def fake_orin_probes(**overrides):
    """An Orin on JetPack 6.1 as the probes see it (no tensorrt module: it is never faked)."""
    cv2 = types.SimpleNamespace(__version__="4.8.0", getBuildInformation=lambda: OPENCV_BUILD_INFO)
    files = {pf.NV_TEGRA_RELEASE: L4T_36_4_0,
             pf.DEVICE_TREE_MODEL: "NVIDIA Jetson AGX Orin Developer Kit\x00"}
    commands = {"nvcc --version": NVCC_12_6, " ".join(pf.DPKG_JETPACK): "6.1+b123"}
    kwargs = dict(files=files, commands=commands, versions={"pycuda": "2025.1"},
                  modules={"numpy": types.SimpleNamespace(__version__="1.26.4"), "cv2": cv2})
    kwargs.update(overrides)
    return pf.Probes.from_dicts(**kwargs)


def test_report_on_a_fake_orin(tmp_path):
    model = tmp_path / "shfan_default.pt"
    model.write_bytes(b"weights")
    report = doctor.run_checks(fake_orin_probes(), model_path=model)
    checks = report.checks
    assert checks["jetson"].value == "NVIDIA Jetson AGX Orin Developer Kit"
    assert checks["jetpack"].ok and checks["jetpack"].value == "6.1"
    assert "nvidia-jetpack 6.1+b123" in checks["jetpack"].detail
    assert checks["gpu"].ok and checks["gpu"].value == "sm_87"  # from the model, no nvidia-smi
    assert checks["cuda"].value == "12.6"
    assert checks["opencv-gstreamer"].ok and "system package" in checks["opencv"].detail
    assert checks["tensorrt"].status == doctor.MISSING
    assert "--system-site-packages" in checks["tensorrt"].fix
    assert checks["onnxruntime"].status == doctor.MISSING
    assert not report.cpu_path_ok and not report.tensorrt_path_ok
    assert report.to_dict()["tensorrt_path"]["blocked_by"] == ["tensorrt"]


def test_apt_tensorrt_hidden_from_python_names_the_venv_fix():
    probes = fake_orin_probes(commands={" ".join(pf.DPKG_LIBNVINFER): "libnvinfer10 10.3.0.30-1+cuda12.5\n"})
    check = doctor.check_tensorrt(probes, on_jetson=True)
    assert check.status == doctor.MISSING and "10.3.0.30" in check.detail
    assert "--system-site-packages" in check.fix and "python3-libnvinfer" in check.fix


def test_tensorrt_11_without_python_bindings():
    probes = fake_orin_probes(files={"/usr/lib/aarch64-linux-gnu/libnvinfer.so.11.0.0": ""})
    check = doctor.check_tensorrt(probes, on_jetson=True)
    assert check.status == doctor.MISSING and "TensorRT 11.0.0 is installed" in check.detail


def test_nvidia_smi_wins_over_the_model_guess():
    probes = fake_orin_probes(commands={SMI_QUERY: "NVIDIA Thor, 11.0\n"})
    assert doctor.check_gpu(probes, "NVIDIA Jetson AGX Thor Developer Kit").value == "sm_110"


def test_old_jetpack_is_a_warning_with_a_fix():
    check = doctor.check_jetpack(pf.Probes.from_dicts(
        files={pf.NV_TEGRA_RELEASE: L4T_35_4_1}))
    assert check.status == doctor.WARN and "JetPack 6.1+" in check.fix


def test_missing_default_model_blocks_the_cpu_path(tmp_path):
    check = doctor.check_default_model(tmp_path / "absent.pt")
    assert check.status == doctor.MISSING and "reinstall shfan" in check.fix


def test_default_model_check_looks_at_the_onnx_shfan_run_loads(tmp_path, monkeypatch):
    """#15: with the shipped ONNX gone (the .pt still there) shfan-run cannot start: not OK."""
    from shfan import weights

    monkeypatch.setenv("SHFAN_MODELS", str(tmp_path))
    monkeypatch.setattr(weights, "_folders", lambda: [tmp_path])
    check = doctor.check_default_model()
    assert check.status == doctor.MISSING and ".onnx" in check.detail
    (tmp_path / (weights.FILES["compact"] + ".onnx")).write_bytes(b"x")
    assert doctor.check_default_model().status == doctor.OK


def test_detector_check_follows_what_shfan_run_needs(tmp_path, monkeypatch):
    """#15: offline without a detector, or $SHFAN_DETECTOR_MODEL pointing nowhere: the CPU path is
    not available, and the fix says how to give the file."""
    from shfan.runtime import detector

    check = doctor.check_detector({"SHFAN_DETECTOR_MODEL": str(tmp_path / "nowhere.onnx")})
    assert check.status == doctor.MISSING and "does not exist" in check.detail and "SHFAN_DETECTOR_MODEL" in check.fix
    check = doctor.check_detector({}, cached=tmp_path / detector.YUNET_FILE)
    assert check.status == doctor.MISSING and "not downloaded" in check.detail and "offline" in check.fix
    (tmp_path / detector.YUNET_FILE).write_bytes(b"not yunet")
    assert doctor.check_detector({}, cached=tmp_path / detector.YUNET_FILE).status == doctor.MISSING
    from conftest import YUNET

    if YUNET.is_file():
        assert doctor.check_detector({"SHFAN_DETECTOR_MODEL": str(YUNET)}).status == doctor.OK
    report = doctor.Report({"detector": check})
    assert "detector" in report.blockers(doctor.CPU_PATH)


def test_every_failing_check_names_a_fix():
    report = doctor.run_checks(pf.Probes.from_dicts(), model_path=Path("/nonexistent.pt"))
    for check in report.checks.values():
        assert check.status in (doctor.OK, doctor.WARN, doctor.MISSING)
        if not check.ok:
            assert check.fix and "\n" not in check.fix, check.name


@pytest.fixture
def detector_here(monkeypatch):
    """This machine's CPU path with the detector given ($SHFAN_DETECTOR_MODEL): numpy, OpenCV,
    onnxruntime and the shipped model are in the dev install, so every CPU check is pinned to OK."""
    from conftest import YUNET

    if not YUNET.is_file():
        pytest.skip("needs ../shared/models/yunet_s_640_640.onnx")
    monkeypatch.setenv("SHFAN_DETECTOR_MODEL", str(YUNET))


def test_json_on_this_machine(capsys, detector_here):
    """No GPU, no TensorRT, the CPU path complete: exit 0, and the JSON says exactly that."""
    code = doctor_cli.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    checks = report["checks"]
    assert checks["gpu"]["status"] == "missing" and "no GPU" in checks["gpu"]["detail"]
    assert checks["tensorrt"]["status"] == "missing"
    assert checks["jetson"]["status"] == "missing"
    assert report["tensorrt_path"]["ok"] is False and report["tensorrt_path"]["needs"] == ["tensorrt", "gpu", "cuda-host-api"]
    assert report["tensorrt_path"]["blocked_by"][:2] == ["tensorrt", "gpu"]  # + cuda-host-api without cuda-python
    for name in ("python", "shfan", "numpy", "opencv", "onnxruntime", "default-model"):
        assert set(checks[name]) == {"status", "detail", "fix", "value"}
    assert report["shfan_version"] == checks["shfan"]["value"] == shfan.__version__
    assert report["cpu_path"] == {"ok": True, "needs": ["numpy", "opencv", "onnxruntime", "default-model", "detector"],
                                  "blocked_by": []}
    assert checks["detector"]["status"] == "ok" and "SHFAN_DETECTOR_MODEL" in checks["detector"]["detail"]
    assert code == 0


def test_json_exit_1_names_what_blocks_the_cpu_path(capsys, monkeypatch, tmp_path):
    """The detector missing (offline, $SHFAN_DETECTOR_MODEL pointing nowhere): exit 1, the CPU
    path blocked by that check alone, and its fix printed."""
    monkeypatch.setenv("SHFAN_DETECTOR_MODEL", str(tmp_path / "nowhere.onnx"))
    code = doctor_cli.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["cpu_path"]["ok"] is False and report["cpu_path"]["blocked_by"] == ["detector"]
    assert "SHFAN_DETECTOR_MODEL" in report["checks"]["detector"]["fix"]
    assert code == 1


def test_table_renders(capsys, detector_here):
    assert doctor_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "CPU path" in out and "TensorRT path" in out and "default-model" in out
    assert "CPU path (ONNX Runtime): OK" in out
    assert "TensorRT path: not available (blocked by: tensorrt, gpu" in out


def test_table_exit_1_when_the_default_model_is_gone(capsys, detector_here, monkeypatch, tmp_path):
    from shfan import weights

    monkeypatch.setattr(weights, "_folders", lambda: [tmp_path])
    monkeypatch.setenv("SHFAN_MODELS", str(tmp_path))
    assert doctor_cli.main([]) == 1
    out = capsys.readouterr().out
    assert "CPU path (ONNX Runtime): not available (blocked by: default-model)" in out


def test_doctor_does_not_import_torch():
    script = ("import sys; from shfan import doctor; doctor.run_checks(); "
              "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _plugins_module(find, load):
    return types.SimpleNamespace(find_plugin_library=find, load_plugin_library=load)


def test_plugin_check_states():
    def refuse(path):
        raise OSError("libnvinfer.so.10: cannot open shared object file")

    def probes(module):
        return pf.Probes.from_dicts(modules={"shfan.plugins": module})

    built = "/opt/shfan/plugins/build/libshfan_plugins.so"
    assert doctor.check_plugin(probes(_plugins_module(lambda: None, refuse))).status == doctor.MISSING
    check = doctor.check_plugin(probes(_plugins_module(lambda: built, refuse)))
    assert check.status == doctor.WARN and "libnvinfer.so.10" in check.detail
    check = doctor.check_plugin(probes(_plugins_module(lambda: built, lambda path: object())))
    assert check.ok and check.value == built
    assert "unavailable" in doctor.check_plugin(pf.Probes.from_dicts()).detail


# ---------------------------------------------------------------- shfan-doctor --selftest


def test_selftest_without_tensorrt_is_one_line_and_exit_0(capsys, monkeypatch):
    """The self-test asks the platform module whether TensorRT is here (so this runs on any machine)."""
    monkeypatch.setattr(pf, "tensorrt_installed", lambda: False)
    assert doctor_cli.main(["--selftest"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "TensorRT is not installed" in out[0]
    from shfan import selftest

    assert f"test vectors: 9 cases in {selftest.VECTORS}" in out[0]  # package data: found by an installed wheel too


def test_selftest_without_its_vectors_fails_on_any_machine(capsys, monkeypatch, tmp_path):
    """A wheel that lost shfan/vectors/ is a broken install: FAIL, exit 1, even without TensorRT."""
    from shfan import selftest

    monkeypatch.setattr(pf, "tensorrt_installed", lambda: False)
    monkeypatch.setattr(selftest, "VECTORS", tmp_path)
    monkeypatch.setattr(selftest.load_cases, "__defaults__", (tmp_path,))
    assert doctor_cli.main(["--selftest"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("FAIL  test vectors: ") and "reinstall shfan" in out[0]
    assert out[-1] == "selftest: 0 passed, 1 failed"


def test_the_vectors_are_package_data():
    """One copy, inside the package (so the wheel carries it; tests/conftest reads the same files)."""
    import tomllib

    from shfan import selftest

    assert selftest.VECTORS == Path(shfan.__file__).resolve().parent / "vectors"
    assert (selftest.VECTORS / "subpixel_decode.npz").is_file()
    assert not (REPO / "tests" / "vectors" / "subpixel_decode.npz").exists()
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["shfan"]
    assert {"vectors/*.npz", "vectors/*.json"} <= set(data)


def test_selftest_logs_fail_lines_at_warning(caplog):
    """Without a logging setup INFO is dropped; a FAIL must still show."""
    from shfan import selftest

    with caplog.at_level("INFO", logger="shfan.selftest"):
        selftest.log_line(selftest.CheckResult("a", True, "fine").line())
        selftest.log_line(selftest.CheckResult("b", False, "broken", "fix it").line())
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]


def test_selftest_comparison_on_the_plugin_host_build():
    """The self-test's verdict logic, fed by the plugin's own math (host build) for every shared
    case, fp32 and fp16: all pass; a 2e-3 px shift, a wrong score or a NaN landmark fail."""
    from shfan import plugins, selftest

    if plugins.host_compiler() is None:
        pytest.skip("no C++ compiler for the plugin's host build")
    lib = plugins.load_host_library()
    cases = selftest.load_cases()
    assert {"nonfinite", "ties", "borders_corners"} <= {c["name"] for c in cases}
    for case in cases:
        for fp16 in (False, True):
            hm = case["heatmaps"].astype(np.float16 if fp16 else np.float32)
            points, scores = plugins.decode_host(lib, hm, case["window"], case["temperature"], selftest.SCALE)
            assert selftest.compare(case, points, scores, fp16) is None, (case["name"], fp16)
    case = cases[0]
    points, scores = plugins.decode_host(lib, case["heatmaps"], case["window"], case["temperature"], selftest.SCALE)
    assert "max |diff|" in selftest.compare(case, points + 2e-3 * selftest.SCALE, scores, False)
    assert "scores differ" in selftest.compare(case, points, scores + 1e-3, False)
    points[0, 0, 0] = np.nan
    assert "finite: False" in selftest.compare(case, points, scores, False)


def test_selftest_lines_name_their_fix():
    from shfan.selftest import CheckResult, build_fix

    assert CheckResult("run fp16 (pycuda)", True, "9 cases").line() == "PASS  run fp16 (pycuda): 9 cases"
    line = CheckResult("build fp32 network", False, "RuntimeError: x", build_fix(87)).line()
    assert line.startswith("FAIL  build fp32 network: RuntimeError: x; fix: ")
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in line and "\n" not in line


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_selftest_on_a_gpu(capsys):
    from shfan import plugins, selftest
    from shfan.runtime.cuda_host import available_host_api

    if not pf.tensorrt_installed() or available_host_api() is None or plugins.find_plugin_library() is None:
        pytest.skip("needs TensorRT, a CUDA host API and the built plugin")
    results = selftest.run()
    assert results and all(r.ok for r in results), [r.line() for r in results if not r.ok]


def test_backends_check_reads_the_registry():
    """The backends line lists what the registry holds, split by what can run here; a library the
    registry finds but that does not import (the onnxruntime check says MISSING) is not "ok"."""
    class Spec:
        def __init__(self, here, version):
            self.here, self._version = here, version

        def available(self):
            return self.here

        def version(self):
            return self._version

    class Registry:
        specs = {"onnxruntime": Spec(True, "1.24.4"), "tensorrt": Spec(False, None), "extra": Spec(True, None)}

        def names(self):
            return tuple(self.specs)

        def get(self, name):
            return self.specs[name]

        def available(self):
            return tuple(name for name, spec in self.specs.items() if spec.available())

    check = doctor.check_backends(Registry())
    assert check.status == doctor.OK and check.value == "onnxruntime,extra"
    assert check.detail == "onnxruntime 1.24.4, extra; not installed: tensorrt"
    check = doctor.check_backends(Registry(), broken={"onnxruntime": "ImportError: libfoo.so", "tensorrt": "x"})
    assert check.status == doctor.OK and check.value == "extra"
    assert check.detail == "extra; not installed: tensorrt; installed but not importable: onnxruntime (ImportError: libfoo.so)"
    Registry.specs = {"onnxruntime": Spec(True, "1.24.4")}
    check = doctor.check_backends(Registry(), broken={"onnxruntime": "ImportError: libfoo.so"})
    assert check.status == doctor.MISSING and "not importable: onnxruntime" in check.detail
    Registry.specs = {"tensorrt": Spec(False, None)}
    assert doctor.check_backends(Registry()).status == doctor.MISSING
    from shfan.runtime import backends

    assert doctor.check_backends().value.split(",") == list(backends.available())


def test_run_checks_backends_line_agrees_with_the_onnxruntime_check():
    """A broken onnxruntime (found, but its import fails) is MISSING on both lines."""
    report = doctor.run_checks(pf.Probes.from_dicts(modules={"numpy": object()}))
    assert report.checks["onnxruntime"].status == doctor.MISSING
    assert "onnxruntime" not in (report.checks["backends"].value or "").split(",")
