"""shfan.platform_facts: the parsers on real-format text, the TensorRT minimum, the GPU and
Jetson facts from fake probes, and the doctor, builder, benchmarks and self-test taking their
facts from here (and nowhere else probing)."""

import json
import re
from pathlib import Path

import pytest

from shfan import platform_facts as pf
from shfan.contracts import MIN_TENSORRT

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


@pytest.mark.parametrize("text, release, jetpack, supported", [
    (L4T_36_4_0, (36, 4, 0), "6.1", True),
    (L4T_36_4_3, (36, 4, 3), "6.2", True),
    (L4T_38_2_0, (38, 2, 0), "7.0", True),
    (L4T_35_4_1, (35, 4, 1), "5.1.2", False),
])
def test_l4t_release_maps_to_jetpack(text, release, jetpack, supported):
    assert pf.parse_l4t_release(text) == release
    assert pf.jetpack_for_l4t(release) == jetpack
    assert pf.l4t_supported(release) is supported


def test_unknown_l4t_revisions_fall_back_to_the_family():
    assert pf.jetpack_for_l4t((38, 4, 0)).startswith("7.")
    assert pf.jetpack_for_l4t((39, 2, 0)).startswith("7.")
    assert pf.jetpack_for_l4t((36, 4, 7)).startswith("6.2")
    assert pf.parse_l4t_release("Ubuntu 22.04.5 LTS") is None
    assert pf.parse_l4t_release(None) is None


@pytest.mark.parametrize("cap, sm", [("8.7", 87), ("11.0", 110), ("9.0", 90), ("7.2", 72),
                                     ("[N/A]", None), ("", None)])
def test_compute_cap_to_sm(cap, sm):
    assert pf.parse_compute_cap(cap) == sm


def test_nvidia_smi_rows():
    text = "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA Thor, 11.0\n\nOrin (nvgpu), [N/A]\n"
    assert pf.parse_nvidia_smi_gpus(text) == [
        ("NVIDIA H100 80GB HBM3", 90), ("NVIDIA Thor", 110), ("Orin (nvgpu)", None)]
    assert pf.parse_nvidia_smi_gpus(None) == []


def test_cuda_version_parsers():
    assert pf.parse_nvcc_release(NVCC_12_6) == "12.6"
    assert pf.parse_cuda_version_json(CUDA_VERSION_JSON) == "12.6.68"
    assert pf.parse_cuda_version_json("not json") is None


def test_versions_and_tensorrt_floor():
    assert pf.version_tuple("10.3.0.30-1+cuda12.5") == (10, 3, 0, 30)
    assert pf.tensorrt_supported("10.3.0") and pf.tensorrt_supported("11.0.0.1")
    assert not pf.tensorrt_supported("10.0.1") and not pf.tensorrt_supported("8.6.2")


def test_jetson_model_and_sm():
    assert pf.parse_device_tree_model("NVIDIA Jetson AGX Orin Developer Kit\x00") == \
        "NVIDIA Jetson AGX Orin Developer Kit"
    assert pf.sm_for_jetson_model("NVIDIA Jetson Orin Nano Engineering Reference "
                                  "Developer Kit Super") == 87
    assert pf.sm_for_jetson_model("NVIDIA Jetson AGX Thor Developer Kit") == 110
    assert pf.sm_for_jetson_model(None) is None


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
    ({}, {" ".join(pf.DPKG_LIBNVINFER): "libnvinfer10 10.3.0.30-1+cuda12.5\nlibnvinfer8 \n"}, ("10.3.0.30-1+cuda12.5", "dpkg")),
    ({"/usr/lib/aarch64-linux-gnu/libnvinfer.so.11": "", "/usr/lib/aarch64-linux-gnu/libnvinfer.so.11.1.0": ""}, {},
     ("11.1.0", "/usr/lib/aarch64-linux-gnu/libnvinfer.so.11.1.0")),  # TensorRT 11: other package names
    ({"/usr/include/aarch64-linux-gnu/NvInferVersion.h": NVINFER_VERSION_11}, {},
     ("11.1.0", "/usr/include/aarch64-linux-gnu/NvInferVersion.h")),
    ({"/usr/include/x86_64-linux-gnu/NvInferVersion.h": NVINFER_VERSION_10}, {},
     ("10.3.0", "/usr/include/x86_64-linux-gnu/NvInferVersion.h")),
    ({}, {}, None),
], ids=["dpkg", "lib-file", "header-11", "header-10", "none"])
def test_installed_tensorrt_by_file_and_version(files, commands, expected):
    assert pf.installed_tensorrt(pf.Probes.from_dicts(files=files, commands=commands)) == expected


def test_visible_gpu_follows_cuda_visible_devices(monkeypatch):
    rows = [("NVIDIA A100", 80), ("NVIDIA T4", 75)]
    assert pf.visible_gpu(rows, visible="1") == ("NVIDIA T4", 75)
    assert pf.visible_gpu(rows, visible="1,0") == ("NVIDIA T4", 75)
    assert pf.visible_gpu(rows, visible="0") == ("NVIDIA A100", 80)
    assert pf.visible_gpu(rows, visible="GPU-8f2a") == ("NVIDIA A100", 80)  # UUIDs cannot be mapped
    assert pf.visible_gpu(rows, visible="") is None and pf.visible_gpu(rows, visible="-1") is None
    assert pf.visible_gpu(rows, visible="5") is None and pf.visible_gpu([], visible="0") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert pf.visible_gpu(rows) == ("NVIDIA T4", 75)


# ---------------------------------------------------------------- TensorRT: the minimum, the version


@pytest.mark.parametrize("version, supported", [
    ("10.1.0", True), ("10.1", True), ("10.3.0.30-1+cuda12.5", True), ("10.13.3.9", True), ("11.0.0.114", True),
    ("10.0.1.6", False), ("8.6.2", False), ("", False), ("abc", False), (None, False),
])
def test_tensorrt_minimum_is_the_contracts_minimum(version, supported):
    assert pf.tensorrt_supported(version) is supported


def test_the_minimum_is_written_once():
    assert MIN_TENSORRT == (10, 1) and pf.MIN_TENSORRT_TEXT == "10.1"
    assert ">= 10.1" in pf.TENSORRT_UPGRADE and "\n" not in pf.TENSORRT_UPGRADE
    assert pf.l4t_supported((36, 4, 0)) and not pf.l4t_supported((36, 3, 0))


def test_tensorrt_version_says_why_it_does_not_import():
    assert pf.tensorrt_version(pf.Probes.from_dicts()) == (None, "ImportError: No module named 'tensorrt'")

    def broken(name):
        raise OSError("libnvinfer.so.10: cannot open shared object file\nmore detail")

    probes = pf.Probes(import_module=broken)
    assert pf.tensorrt_version(probes) == (None, "OSError: libnvinfer.so.10: cannot open shared object file")


def test_modules_and_distributions():
    assert pf.module_available("json") and not pf.module_available("shfan_no_such_module")
    assert not pf.module_available("json.no.such.child")  # a missing parent is absent, not an error
    probes = pf.Probes.from_dicts(versions={"onnxruntime-gpu": "1.24.4"})
    assert pf.first_version(probes, pf.ONNXRUNTIME_DISTS) == ("onnxruntime-gpu", "1.24.4")
    assert pf.first_version(probes, pf.OPENCV_DISTS) == (None, None)
    assert pf.installed_version("onnxruntime", pf.ONNXRUNTIME_DISTS, probes) == "1.24.4"
    import numpy  # imported, no distribution given: the module's own __version__

    assert pf.installed_version("numpy", (), pf.Probes.from_dicts()) == numpy.__version__
    assert pf.installed_version("shfan_no_such_module", ("shfan-no-such-dist",)) is None


def test_jetson_facts_from_the_device_tree_and_tegra_release():
    probes = pf.Probes.from_dicts(files={pf.DEVICE_TREE_MODEL: "NVIDIA Jetson AGX Thor Developer Kit\x00",
                                         pf.NV_TEGRA_RELEASE: L4T_38_2_0})
    assert pf.jetson_model(probes) == "NVIDIA Jetson AGX Thor Developer Kit"
    assert pf.l4t_release(probes) == (38, 2, 0)
    assert pf.gpus(probes, pf.jetson_model(probes)) == [("NVIDIA Jetson AGX Thor Developer Kit", 110)]
    not_jetson = pf.Probes.from_dicts(files={pf.DEVICE_TREE_MODEL: "Raspberry Pi 5 Model B\x00"})
    assert pf.jetson_model(not_jetson) is None and pf.l4t_release(not_jetson) is None


# ---------------------------------------------------------------- the consumers take their facts from here


def test_the_tensorrt_backend_is_available_exactly_when_the_platform_says(monkeypatch):
    from shfan.runtime import backends

    monkeypatch.setattr(pf, "module_available", lambda module: module == "tensorrt")
    assert pf.tensorrt_installed() and backends.get("tensorrt").available()
    assert backends.available() == ("tensorrt",)
    monkeypatch.setattr(pf, "module_available", lambda module: False)
    assert not pf.tensorrt_installed() and "tensorrt" not in backends.available()


def test_the_doctor_reports_the_platforms_tensorrt_version(monkeypatch):
    from shfan import doctor

    monkeypatch.setattr(pf, "tensorrt_version", lambda probes=None: ("10.0.1.6", None))
    check = doctor.check_tensorrt(pf.Probes.from_dicts(), on_jetson=False)
    assert check.status == doctor.WARN and check.detail == "10.0.1.6 is older than 10.1 (no IPluginV3)"
    assert check.fix == pf.TENSORRT_UPGRADE
    monkeypatch.setattr(pf, "tensorrt_version", lambda probes=None: ("10.3.0", None))
    assert doctor.check_tensorrt(pf.Probes.from_dicts(), on_jetson=False).ok


def test_the_engine_build_refuses_what_the_platform_calls_too_old(monkeypatch):
    from shfan.builder import engine_rules
    from shfan.errors import BuildError

    engine_rules.check_tensorrt_version("10.1.0")
    with pytest.raises(BuildError, match=r"^TensorRT 10\.0\.1 is too old: shfan needs >= 10\.1 \(JetPack 6\.1\+\)"):
        engine_rules.check_tensorrt_version("10.0.1")
    monkeypatch.setattr(pf, "tensorrt_supported", lambda version: False)
    with pytest.raises(BuildError, match="too old"):
        engine_rules.check_tensorrt_version("10.3.0")


def test_the_builder_records_the_platforms_tensorrt_and_gpu(monkeypatch):
    from shfan.builder import workflow

    monkeypatch.setattr(pf, "tensorrt_version", lambda probes=None: (None, "ImportError: no tensorrt"))
    assert workflow._tensorrt_info() is None
    monkeypatch.setattr(pf, "tensorrt_version", lambda probes=None: ("10.3.0", None))
    monkeypatch.setattr(pf, "gpu_device", lambda probes=None: ("Orin", 87))
    assert workflow._tensorrt_info() == {"version": "10.3.0", "device": "Orin", "sm": 87}


def test_the_selftest_asks_the_platform(monkeypatch):
    from shfan import selftest

    monkeypatch.setattr(pf, "tensorrt_installed", lambda: False)
    assert selftest.run(log=lambda line: pytest.fail(line)) is None


PROBES_ELSEWHERE = {  # the probes once written outside shfan.platform_facts, and where they live now
    r"find_spec\(": "whether a module is importable: platform_facts.module_available",
    r"\bMIN_TENSORRT\b": "the TensorRT minimum: platform_facts.tensorrt_supported / MIN_TENSORRT_TEXT",
    r">= ?10\.1\b": "the TensorRT minimum: platform_facts.tensorrt_supported / MIN_TENSORRT_TEXT",
    r"^\s*(from shfan import .*\bdoctor\b|from shfan\.doctor import|import shfan\.doctor)": "the doctor only reports",
    r"\bcuda_device\(": "the GPU's SM: platform_facts.gpu_device",
    r"\"onnxruntime-gpu\"|\"tensorrt-cu12\"|\"opencv-python-headless\"": "distribution lists: platform_facts",
}
NOT_PROBES = {  # (file, pattern) pairs that are something else
    ("shfan/bench/others.py", r"find_spec\("),  # where a baseline's data file lies, not whether it is here
    ("shfan/cli/doctor.py", r"^\s*(from shfan import .*\bdoctor\b|from shfan\.doctor import|import shfan\.doctor)"),
    ("shfan/contracts.py", r"\bMIN_TENSORRT\b"),  # where the number is declared
}


def test_no_platform_probe_outside_the_platform_module():
    found = []
    for folder in ("shfan", "builder", "runtime", "calibration"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "shfan/platform_facts.py":
                continue
            text = path.read_text()
            found += [f"{rel}: {why}" for pattern, why in PROBES_ELSEWHERE.items()
                      if (rel, pattern) not in NOT_PROBES and re.search(pattern, text, re.MULTILINE)]
    assert found == []
