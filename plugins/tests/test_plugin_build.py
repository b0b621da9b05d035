"""Build checks for plugins/: the kernel compiles for Orin, CMake fails clearly without TensorRT,
the host-only CMake target builds, and (where TensorRT is installed) the full plugin builds."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from shfan import plugins

PLUGIN_DIR = plugins.PLUGIN_DIR
NVCC = shutil.which("nvcc")
CMAKE = shutil.which("cmake")
TRT_HEADER_DIRS = [Path(os.environ.get("TensorRT_ROOT", "/nonexistent")) / "include",
                   Path("/usr/include/aarch64-linux-gnu"), Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include")]
HAVE_TRT = any((d / "NvInferRuntime.h").is_file() for d in TRT_HEADER_DIRS)


def _run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
def test_kernel_compiles_for_sm87(tmp_path):
    proc = _run([NVCC, "-std=c++17", "-arch=sm_87", "-I", PLUGIN_DIR / "include", "-c",
                 PLUGIN_DIR / "src" / "subpixel_decode_kernel.cu", "-o", tmp_path / "kernel.o"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "kernel.o").stat().st_size > 0


@pytest.mark.skipif(CMAKE is None, reason="cmake not installed")
@pytest.mark.skipif(HAVE_TRT, reason="TensorRT headers are installed here")
def test_cmake_without_tensorrt_names_tensorrt_root(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TensorRT_ROOT"}
    proc = _run([CMAKE, "-S", PLUGIN_DIR, "-B", tmp_path / "build"], env=env)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "TensorRT not found" in line]
    assert len(errors) == 1 and "TensorRT_ROOT" in errors[0], proc.stderr


@pytest.mark.skipif(CMAKE is None, reason="cmake not installed")
def test_cmake_host_only_build(tmp_path):
    build = tmp_path / "build"
    assert _run([CMAKE, "-S", PLUGIN_DIR, "-B", build, "-DSHFAN_HOST_ONLY=ON"]).returncode == 0
    proc = _run([CMAKE, "--build", build])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lib = plugins.load_host_library(build / "libshfan_decode_host.so")
    hm = np.zeros((1, 1, 5, 5), np.float32)
    hm[0, 0, 1, 3] = 1.0
    points, scores = plugins.decode_host(lib, hm, 1, 12.0, 2.0)
    np.testing.assert_array_equal(points[0, 0], [7.0, 3.0])
    assert scores[0, 0] == 1.0


@pytest.mark.tensorrt
@pytest.mark.skipif(not (HAVE_TRT and NVCC and CMAKE), reason="needs TensorRT headers, nvcc and cmake")
def test_full_plugin_build(tmp_path):
    build = tmp_path / "build"
    proc = _run([CMAKE, "-S", PLUGIN_DIR, "-B", build])
    assert proc.returncode == 0, proc.stderr
    proc = _run([CMAKE, "--build", build, "-j"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lib = build / "libshfan_plugins.so"
    symbols = _run(["nm", "-D", "--defined-only", lib]).stdout
    assert "getCreators" in symbols and "setLoggerFinder" in symbols
    exported = [line.split()[-1] for line in symbols.splitlines() if " T " in line]
    assert not [s for s in exported if "shfan" in s], exported  # hidden visibility: only the entry points
    needed = _run(["readelf", "-d", lib]).stdout
    assert "libcudart.so" in needed and "NODELETE" in needed
    assert "cudaGetErrorString" not in _run(["nm", "--defined-only", lib]).stdout  # no cudart_static inside


ARCH_MODULE = PLUGIN_DIR / "cmake" / "ShfanCudaArchitectures.cmake"


def _default_archs(tmp_path, smi_output=None, cuda="12.6", tegra=False, cross=False):
    """(architectures, reason) the CMake module picks, with a stub nvidia-smi on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 9\n" if smi_output is None else f"#!/bin/sh\nprintf '{smi_output}'\n")
    smi.chmod(0o755)
    release = tmp_path / "nv_tegra_release"
    release.unlink(missing_ok=True)
    if tegra:
        release.write_text("# R36 (release), REVISION: 4.3\n")
    cmd = [CMAKE, f"-DSHFAN_CUDA_VERSION={cuda}", f"-DSHFAN_TEGRA_RELEASE={release}"]
    cmd += ["-DCMAKE_CROSSCOMPILING=ON"] if cross else []
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    proc = _run([*cmd, "-P", ARCH_MODULE], env=env)
    assert proc.returncode == 0, proc.stderr
    archs, reason = proc.stderr.strip().split("|")
    return archs, reason


@pytest.mark.skipif(CMAKE is None, reason="cmake not installed")
def test_default_architectures(tmp_path):
    """A T4/A100/RTX 30xx builder gets its own SM (not 87;110: 'no kernel image' at inference);
    Jetsons and cross builds keep the explicit lists."""
    archs, reason = _default_archs(tmp_path, "8.6\\n8.6\\n7.5\\n")
    assert archs in ("native", "86;75") and "sm_86, sm_75" in reason
    assert _default_archs(tmp_path, "8.6\\n", tegra=True)[0] == "72;87"
    assert _default_archs(tmp_path, "8.6\\n", cuda="13.0", tegra=True)[0] == "87;110"
    assert _default_archs(tmp_path, "8.6\\n", cuda="13.0", cross=True)[0] == "87;110"
    archs, reason = _default_archs(tmp_path, None)
    assert archs == "75-real;80-real;86-real;89-real;90" and "no GPU" in reason


@pytest.mark.skipif(CMAKE is None, reason="cmake not installed")
def test_cmake_links_one_cuda_runtime_and_hides_symbols():
    """Text checks of what the full build (TensorRT only) does; test_full_plugin_build checks the binary."""
    text = "\n".join(line.split("#")[0] for line in (PLUGIN_DIR / "CMakeLists.txt").read_text().splitlines())
    assert "CUDA_RUNTIME_LIBRARY Shared" in text and "CUDA::cudart" in text and "cudart_static" not in text
    assert "CXX_VISIBILITY_PRESET hidden" in text and "CUDA_VISIBILITY_PRESET hidden" in text
    assert "-z,nodelete" in text
