"""shfan-doctor: parsers on real-format text, the report on fake Jetson probes, --json here."""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from shfan import doctor
from shfan.cli import doctor as doctor_cli

REPO = Path(__file__).resolve().parents[1]

# /etc/nv_tegra_release as shipped (first lines).
L4T_36_4_0 = ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
              "DATE: Fri Sep 13 04:36:44 UTC 2024\n# KERNEL_VARIANT: oot\n"
              "TARGET_USERSPACE_LIB_DIR=nvidia\n"
              "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n")
L4T_36_4_3 = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
              "DATE: Wed Jan  8 01:49:37 UTC 2025\n")
L4T_38_2_0 = ("# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, "
              "DATE: Fri Aug 22 00:55:42 UTC 2025\n")
L4T_35_4_1 = ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
              "DATE: Tue Aug  1 19:57:35 UTC 2023\n")
NVCC_12_6 = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2024 NVIDIA Corporation\n"
             "Built on Wed_Aug_14_10:14:07_PDT_2024\n"
             "Cuda compilation tools, release 12.6, V12.6.68\n"
             "Build cuda_12.6.r12.6/compiler.34714021_0\n")
CUDA_VERSION_JSON = json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.6.68"},
                                "cuda_cudart": {"name": "CUDA Runtime (cudart)",
                                                "version": "12.6.68"}})
OPENCV_BUILD_INFO = ("  Video I/O:\n    FFMPEG:                      NO\n"
                     "    GStreamer:                   YES (1.20.3)\n"
                     "    v4l/v4l2:                    YES (linux/videodev2.h)\n")
SMI_QUERY = " ".join(doctor.NVIDIA_SMI_QUERY)


@pytest.mark.parametrize("text, release, jetpack, supported", [
    (L4T_36_4_0, (36, 4, 0), "6.1", True),
    (L4T_36_4_3, (36, 4, 3), "6.2", True),
    (L4T_38_2_0, (38, 2, 0), "7.0", True),
    (L4T_35_4_1, (35, 4, 1), "5.1.2", False),
])
def test_l4t_release_maps_to_jetpack(text, release, jetpack, supported):
    assert doctor.parse_l4t_release(text) == release
    assert doctor.jetpack_for_l4t(release) == jetpack
    assert doctor.l4t_supported(release) is supported


def test_unknown_l4t_revisions_fall_back_to_the_family():
    assert doctor.jetpack_for_l4t((38, 4, 0)).startswith("7.")
    assert doctor.jetpack_for_l4t((39, 2, 0)).startswith("7.")
    assert doctor.jetpack_for_l4t((36, 4, 7)).startswith("6.2")
    assert doctor.parse_l4t_release("Ubuntu 22.04.5 LTS") is None
    assert doctor.parse_l4t_release(None) is None


@pytest.mark.parametrize("cap, sm", [("8.7", 87), ("11.0", 110), ("9.0", 90), ("7.2", 72),
                                     ("[N/A]", None), ("", None)])
def test_compute_cap_to_sm(cap, sm):
    assert doctor.parse_compute_cap(cap) == sm


def test_nvidia_smi_rows():
    text = "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA Thor, 11.0\n\nOrin (nvgpu), [N/A]\n"
    assert doctor.parse_nvidia_smi_gpus(text) == [
        ("NVIDIA H100 80GB HBM3", 90), ("NVIDIA Thor", 110), ("Orin (nvgpu)", None)]
    assert doctor.parse_nvidia_smi_gpus(None) == []


def test_cuda_version_parsers():
    assert doctor.parse_nvcc_release(NVCC_12_6) == "12.6"
    assert doctor.parse_cuda_version_json(CUDA_VERSION_JSON) == "12.6.68"
    assert doctor.parse_cuda_version_json("not json") is None


def test_versions_and_tensorrt_floor():
    assert doctor.version_tuple("10.3.0.30-1+cuda12.5") == (10, 3, 0, 30)
    assert doctor.tensorrt_supported("10.3.0") and doctor.tensorrt_supported("11.0.0.1")
    assert not doctor.tensorrt_supported("10.0.1") and not doctor.tensorrt_supported("8.6.2")


def test_jetson_model_and_sm():
    assert doctor.parse_device_tree_model("NVIDIA Jetson AGX Orin Developer Kit\x00") == \
        "NVIDIA Jetson AGX Orin Developer Kit"
    assert doctor.sm_for_jetson_model("NVIDIA Jetson Orin Nano Engineering Reference "
                                      "Developer Kit Super") == 87
    assert doctor.sm_for_jetson_model("NVIDIA Jetson AGX Thor Developer Kit") == 110
    assert doctor.sm_for_jetson_model(None) is None


def test_opencv_gstreamer_line():
    assert doctor.opencv_gstreamer(OPENCV_BUILD_INFO) is True
    assert doctor.opencv_gstreamer(OPENCV_BUILD_INFO.replace("YES (1.20.3)", "NO")) is False
    assert doctor.opencv_gstreamer("no video section") is None


def fake_orin_probes(**overrides):
    """An Orin on JetPack 6.1 as the probes see it (no tensorrt module: it is never faked)."""
    cv2 = types.SimpleNamespace(__version__="4.8.0", getBuildInformation=lambda: OPENCV_BUILD_INFO)
    files = {doctor.NV_TEGRA_RELEASE: L4T_36_4_0,
             doctor.DEVICE_TREE_MODEL: "NVIDIA Jetson AGX Orin Developer Kit\x00"}
    commands = {"nvcc --version": NVCC_12_6, " ".join(doctor.DPKG_JETPACK): "6.1+b123"}
    kwargs = dict(files=files, commands=commands, versions={"pycuda": "2025.1"},
                  modules={"numpy": types.SimpleNamespace(__version__="1.26.4"), "cv2": cv2})
    kwargs.update(overrides)
    return doctor.Probes.from_dicts(**kwargs)


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
    probes = fake_orin_probes(commands={" ".join(doctor.DPKG_LIBNVINFER): "libnvinfer10 10.3.0.30-1+cuda12.5\n"})
    check = doctor.check_tensorrt(probes, on_jetson=True)
    assert check.status == doctor.MISSING and "10.3.0.30" in check.detail
    assert "--system-site-packages" in check.fix and "python3-libnvinfer" in check.fix


# NvInferVersion.h as TensorRT 11 writes it (10.x defines the numbers directly).
NVINFER_VERSION_11 = ("#define NV_INFER_VERSION_H\n#define TRT_MAJOR_ENTERPRISE 11\n#define TRT_MINOR_ENTERPRISE 1\n"
                      "#define TRT_PATCH_ENTERPRISE 0\n#define TRT_BUILD_ENTERPRISE 106\n"
                      "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< TensorRT major version.\n"
                      "#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE //!< TensorRT minor version.\n"
                      "#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE //!< TensorRT patch version.\n")
NVINFER_VERSION_10 = ("#define NV_TENSORRT_MAJOR 10 //!< TensorRT major version.\n"
                      "#define NV_TENSORRT_MINOR 3 //!< TensorRT minor version.\n"
                      "#define NV_TENSORRT_PATCH 0 //!< TensorRT patch version.\n")


@pytest.mark.parametrize("files, commands, expected", [
    ({}, {" ".join(doctor.DPKG_LIBNVINFER): "libnvinfer10 10.3.0.30-1+cuda12.5\nlibnvinfer8 \n"}, ("10.3.0.30-1+cuda12.5", "dpkg")),
    ({"/usr/lib/aarch64-linux-gnu/libnvinfer.so.11": "", "/usr/lib/aarch64-linux-gnu/libnvinfer.so.11.1.0": ""}, {},
     ("11.1.0", "/usr/lib/aarch64-linux-gnu/libnvinfer.so.11.1.0")),  # TensorRT 11: other package names
    ({"/usr/include/aarch64-linux-gnu/NvInferVersion.h": NVINFER_VERSION_11}, {},
     ("11.1.0", "/usr/include/aarch64-linux-gnu/NvInferVersion.h")),
    ({"/usr/include/x86_64-linux-gnu/NvInferVersion.h": NVINFER_VERSION_10}, {},
     ("10.3.0", "/usr/include/x86_64-linux-gnu/NvInferVersion.h")),
    ({}, {}, None),
], ids=["dpkg", "lib-file", "header-11", "header-10", "none"])
def test_installed_tensorrt_by_file_and_version(files, commands, expected):
    assert doctor.installed_tensorrt(doctor.Probes.from_dicts(files=files, commands=commands)) == expected


def test_tensorrt_11_without_python_bindings():
    probes = fake_orin_probes(files={"/usr/lib/aarch64-linux-gnu/libnvinfer.so.11.0.0": ""})
    check = doctor.check_tensorrt(probes, on_jetson=True)
    assert check.status == doctor.MISSING and "TensorRT 11.0.0 is installed" in check.detail


def test_nvidia_smi_wins_over_the_model_guess():
    probes = fake_orin_probes(commands={SMI_QUERY: "NVIDIA Thor, 11.0\n"})
    assert doctor.check_gpu(probes, "NVIDIA Jetson AGX Thor Developer Kit").value == "sm_110"


def test_old_jetpack_is_a_warning_with_a_fix():
    check = doctor.check_jetpack(doctor.Probes.from_dicts(
        files={doctor.NV_TEGRA_RELEASE: L4T_35_4_1}))
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
    report = doctor.run_checks(doctor.Probes.from_dicts(), model_path=Path("/nonexistent.pt"))
    for check in report.checks.values():
        assert check.status in (doctor.OK, doctor.WARN, doctor.MISSING)
        if not check.ok:
            assert check.fix and "\n" not in check.fix, check.name


def test_json_on_this_machine(capsys):
    code = doctor_cli.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    checks = report["checks"]
    assert checks["gpu"]["status"] == "missing" and "no GPU" in checks["gpu"]["detail"]
    assert checks["tensorrt"]["status"] == "missing"
    assert checks["jetson"]["status"] == "missing"
    assert report["tensorrt_path"]["ok"] is False
    for name in ("python", "shfan", "numpy", "opencv", "onnxruntime", "default-model"):
        assert set(checks[name]) == {"status", "detail", "fix", "value"}
    assert report["shfan_version"] == checks["shfan"]["value"]
    assert set(report["cpu_path"]["needs"]) == {"numpy", "opencv", "onnxruntime", "default-model", "detector"}
    assert code == (0 if report["cpu_path"]["ok"] else 1)


def test_table_renders(capsys):
    code = doctor_cli.main([])
    out = capsys.readouterr().out
    assert "CPU path" in out and "TensorRT path" in out and "default-model" in out
    assert code in (0, 1)


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
        return doctor.Probes.from_dicts(modules={"shfan.plugins": module})

    built = "/opt/shfan/plugins/build/libshfan_plugins.so"
    assert doctor.check_plugin(probes(_plugins_module(lambda: None, refuse))).status == doctor.MISSING
    check = doctor.check_plugin(probes(_plugins_module(lambda: built, refuse)))
    assert check.status == doctor.WARN and "libnvinfer.so.10" in check.detail
    check = doctor.check_plugin(probes(_plugins_module(lambda: built, lambda path: object())))
    assert check.ok and check.value == built
    assert "unavailable" in doctor.check_plugin(doctor.Probes.from_dicts()).detail


def test_visible_gpu_follows_cuda_visible_devices(monkeypatch):
    rows = [("NVIDIA A100", 80), ("NVIDIA T4", 75)]
    assert doctor.visible_gpu(rows, visible="1") == ("NVIDIA T4", 75)
    assert doctor.visible_gpu(rows, visible="1,0") == ("NVIDIA T4", 75)
    assert doctor.visible_gpu(rows, visible="0") == ("NVIDIA A100", 80)
    assert doctor.visible_gpu(rows, visible="GPU-8f2a") == ("NVIDIA A100", 80)  # UUIDs cannot be mapped
    assert doctor.visible_gpu(rows, visible="") is None and doctor.visible_gpu(rows, visible="-1") is None
    assert doctor.visible_gpu(rows, visible="5") is None and doctor.visible_gpu([], visible="0") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert doctor.visible_gpu(rows) == ("NVIDIA T4", 75)


# ---------------------------------------------------------------- shfan-doctor --selftest


def test_selftest_without_tensorrt_is_one_line_and_exit_0(capsys):
    from shfan import selftest

    if selftest.tensorrt_missing() is None:
        pytest.skip("TensorRT is installed here: the full self-test runs in test_selftest_on_a_gpu")
    assert doctor_cli.main(["--selftest"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "TensorRT is not installed" in out[0]


def test_selftest_logs_fail_lines_at_warning(caplog):
    """Without a logging setup INFO is dropped; a FAIL must still show."""
    from shfan import selftest

    with caplog.at_level("INFO", logger="shfan.selftest"):
        selftest.log_line(selftest.Result("a", True, "fine").line())
        selftest.log_line(selftest.Result("b", False, "broken", "fix it").line())
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
    from shfan.selftest import Result, build_fix

    assert Result("run fp16 (pycuda)", True, "9 cases").line() == "PASS  run fp16 (pycuda): 9 cases"
    line = Result("build fp32 network", False, "RuntimeError: x", build_fix(87)).line()
    assert line.startswith("FAIL  build fp32 network: RuntimeError: x; fix: ")
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in line and "\n" not in line


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_selftest_on_a_gpu(capsys):
    from shfan import plugins, selftest
    from shfan.runtime.cuda_host import available_host_api

    if selftest.tensorrt_missing() or available_host_api() is None or plugins.find_plugin_library() is None:
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
    report = doctor.run_checks(doctor.Probes.from_dicts(modules={"numpy": object()}))
    assert report.checks["onnxruntime"].status == doctor.MISSING
    assert "onnxruntime" not in (report.checks["backends"].value or "").split(",")
