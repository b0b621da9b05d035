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
    symbols = _run(["nm", "-D", "--defined-only", build / "libshfan_plugins.so"]).stdout
    assert "getCreators" in symbols and "setLoggerFinder" in symbols
