"""Locate, load and fingerprint the SubpixelDecode TensorRT plugin; build its CPU twin.

The plugin (plugins/, CMake) is a CUDA shared library that TensorRT needs registered before it
parses an ONNX file with a `SubpixelDecode` node or deserializes an engine that contains one.
Its per-landmark math is a header that also compiles with g++; `build_host_library()` turns it
into a small C library so the exact plugin math is tested on machines without a GPU.

Imports only the standard library and NumPy: no torch, tensorrt or pycuda here.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from shfan import io
from shfan.errors import PluginError  # noqa: F401  (raised here; plugins.PluginError stays its name)

# The plugin's sources (CMakeLists.txt, cmake/, include/, src/): package data in a wheel
# (shfan/plugin_src/, mapped from plugins/ by pyproject.toml), plugins/ in a source checkout.
_PACKAGED_SOURCES = Path(__file__).resolve().parent / "plugin_src"
_CHECKOUT_SOURCES = Path(__file__).resolve().parent.parent / "plugins"
INSTALLED = (_PACKAGED_SOURCES / "CMakeLists.txt").is_file()
PLUGIN_DIR = _PACKAGED_SOURCES if INSTALLED else _CHECKOUT_SOURCES
# Where the CMake build goes: plugins/build in a checkout; for a wheel (its site-packages may be
# read-only) the user cache, $SHFAN_CACHE_DIR/plugins/build or ~/.cache/shfan/plugins/build.
PLUGIN_BUILD_DIR = io.cache_dir("plugins") / "build" if INSTALLED else PLUGIN_DIR / "build"
DEFAULT_PLUGIN_LIB = PLUGIN_BUILD_DIR / "libshfan_plugins.so"
ENV_PLUGIN_LIB = "SHFAN_PLUGIN_LIB"


def build_command(cuda_arch: int | str | None = None) -> str:
    """The shell command that builds DEFAULT_PLUGIN_LIB (relative paths from a checkout's root,
    absolute ones for an installed wheel)."""
    src, out = ("plugins", "plugins/build") if not INSTALLED else (str(PLUGIN_DIR), str(PLUGIN_BUILD_DIR))
    arch = f" -DCMAKE_CUDA_ARCHITECTURES={cuda_arch}" if cuda_arch else ""
    return f"cmake -S {src} -B {out}{arch} && cmake --build {out} -j"


BUILD_COMMAND = build_command()

_HOST_SOURCES = (PLUGIN_DIR / "src" / "subpixel_decode_host.cpp", PLUGIN_DIR / "include" / "shfan" / "subpixel_decode.h",
                 PLUGIN_DIR / "include" / "shfan" / "decode_fields.h")
_HOST_SYMBOL = "shfan_subpixel_decode_host"
_FIELDS_SYMBOL = "shfan_decode_params_from_fields"
# nvinfer1::PluginFieldType values (TensorRT 10.x / 11.x) by NumPy dtype, for parse_fields_host
FIELD_TYPES = {"float16": 0, "float32": 1, "float64": 2, "int8": 3, "int16": 4, "int32": 5, "int64": 10}


# ---------------------------------------------------------------- TensorRT plugin library


def find_plugin_library(path: str | os.PathLike | None = None, recorded: str | os.PathLike | None = None) -> Path | None:
    """The plugin .so: `path`, else $SHFAN_PLUGIN_LIB, else `recorded` (the library an engine was
    built with, from its manifest) when that file still exists, else DEFAULT_PLUGIN_LIB
    (plugins/build/libshfan_plugins.so in a checkout, the user cache's build for a wheel).

    Returns None when nothing is configured and the default build is absent; raises PluginError
    when an explicitly named file (argument or environment) does not exist.
    """
    for origin, candidate in (("path", path), (ENV_PLUGIN_LIB, os.environ.get(ENV_PLUGIN_LIB))):
        if candidate:
            lib = Path(candidate).expanduser()
            if not lib.is_file():
                raise PluginError(f"plugin library {lib} (from {origin}) does not exist; build it with: {BUILD_COMMAND}")
            return lib.resolve()
    if recorded and Path(recorded).expanduser().is_file():
        return Path(recorded).expanduser().resolve()
    return DEFAULT_PLUGIN_LIB if DEFAULT_PLUGIN_LIB.is_file() else None


def load_plugin_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """dlopen the plugin so its static registrar adds `shfan::SubpixelDecode` v1 to TensorRT's
    plugin registry (load TensorRT's Python module first so both share libnvinfer)."""
    lib = find_plugin_library(path)
    if lib is None:
        raise PluginError(
            f"SubpixelDecode plugin library not found (looked at ${ENV_PLUGIN_LIB} and {DEFAULT_PLUGIN_LIB}); "
            f"build it with: {BUILD_COMMAND}"
        )
    try:
        return ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise PluginError(
            f"cannot load plugin library {lib}: {exc}; rebuild it against this TensorRT/CUDA with: {BUILD_COMMAND}"
        ) from None


def plugin_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a plugin library (recorded in engine manifests)."""
    return io.sha256_file(path)


# ---------------------------------------------------------------- CPU build of the plugin math


def host_compiler() -> str | None:
    """The C++ compiler used for the host build: $CXX, else g++, else None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def build_host_library(cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Compile plugins/src/subpixel_decode_host.cpp into a cached shared library and return it.

    The file name carries a hash of the sources, so an edited header is rebuilt automatically.
    """
    missing = [str(p) for p in _HOST_SOURCES if not p.is_file()]
    if missing:
        raise PluginError(f"plugin sources not found ({missing[0]}); reinstall shfan (its wheel ships them in shfan/plugin_src/)")
    cxx = host_compiler()
    if cxx is None:
        raise PluginError("no C++ compiler found for the host decoder build; install g++ (apt install g++) or set CXX")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in _HOST_SOURCES)).hexdigest()[:16]
    if cache_dir:
        out = Path(cache_dir)
        out.mkdir(parents=True, exist_ok=True)
    else:  # $SHFAN_CACHE_DIR/plugins, else ~/.cache/shfan/plugins, else the temp dir (read-only home)
        out = io.cache_dir("plugins", create=True)
    lib = out / f"libshfan_decode_host-{digest}.so"
    if lib.is_file() and not force:
        return lib
    # atomic: parallel test workers never see a half-written library
    with io.atomic_path(lib, ".so") as tmp:
        cmd = [cxx, "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden",
               f"-I{PLUGIN_DIR / 'include'}", str(_HOST_SOURCES[0]), "-o", str(tmp)]
        proc = _compile(cmd, "install g++ (apt install g++) or set CXX to a working compiler")
        if proc.returncode != 0:
            raise PluginError(f"host decoder build failed: {_first_line(proc.stderr)}; command: {' '.join(cmd)}")
    return lib


def _compile(cmd: list[str], fix: str) -> subprocess.CompletedProcess:
    """Run a compiler; one that cannot be started (gone, not executable) is a PluginError naming
    `fix`, not an OSError (inside io.atomic_path that would read as 'cannot write')."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise PluginError(f"cannot run the compiler {cmd[0]} ({exc.strerror or exc}); {fix}") from None


def _first_line(stderr: str) -> str:
    return (stderr.strip().splitlines() or ["(no output)"])[0]


def load_host_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """ctypes handle to the host decoder with its signature declared (builds it when needed)."""
    lib = ctypes.CDLL(str(path or build_host_library()))
    fn = getattr(lib, _HOST_SYMBOL)
    c_int, c_float, c_void_p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    fn.argtypes = [c_void_p, c_int, c_int, c_int, c_int, c_int, c_int, c_float, c_float, c_void_p, c_void_p]
    fn.restype = c_int
    fields = getattr(lib, _FIELDS_SYMBOL)
    fields.argtypes = [c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.c_char_p, c_int]
    fields.restype = c_int
    return lib


def decode_host(lib: ctypes.CDLL, heatmaps: np.ndarray, window: int, temperature: float, scale: float = 1.0):
    """Run the plugin math on the CPU: heatmaps [B, K, H, W] float32 or float16 ->
    (landmarks [B, K, 2] in heatmap px * scale, scores [B, K]), both float32."""
    hm = np.asarray(heatmaps)
    if hm.dtype not in (np.float32, np.float16) or hm.ndim != 4:
        raise ValueError(f"heatmaps must be a float32/float16 [B, K, H, W] array, got {hm.dtype} {hm.shape}")
    hm = np.ascontiguousarray(hm)
    b, k, h, w = hm.shape
    landmarks = np.empty((b, k, 2), np.float32)
    scores = np.empty((b, k), np.float32)
    status = getattr(lib, _HOST_SYMBOL)(
        hm.ctypes.data, int(hm.dtype == np.float16), b, k, h, w, int(window), float(temperature), float(scale),
        landmarks.ctypes.data, scores.ctypes.data,
    )
    if status != 0:
        raise ValueError(f"invalid decoder parameters: window={window} (must be odd and >= 1), temperature="
                         f"{temperature} and scale={scale} (finite, > 0), shape={hm.shape}")
    return landmarks, scores


def parse_fields_host(lib: ctypes.CDLL, fields: dict[str, np.ndarray]) -> tuple[int, float, float]:
    """The plugin creator's attribute parsing on the CPU: {name: 1-element array, typed as TensorRT
    would pass it} -> (window, temperature, scale); ValueError with the creator's message."""
    arrays = [np.ascontiguousarray(v).reshape(-1) for v in fields.values()]
    n = len(arrays)
    names = (ctypes.c_char_p * max(1, n))(*[k.encode() for k in fields])
    types = (ctypes.c_int * max(1, n))(*[FIELD_TYPES.get(a.dtype.name, 8) for a in arrays])  # 8 = kUNKNOWN
    data = (ctypes.c_void_p * max(1, n))(*[a.ctypes.data if a.size else None for a in arrays])
    lengths = (ctypes.c_int * max(1, n))(*[a.size for a in arrays])
    window, tau, scale = ctypes.c_int(), ctypes.c_float(), ctypes.c_float()
    message = ctypes.create_string_buffer(512)
    status = getattr(lib, _FIELDS_SYMBOL)(n, names, types, data, lengths, ctypes.byref(window), ctypes.byref(tau),
                                          ctypes.byref(scale), message, len(message))
    if status != 0:
        raise ValueError(message.value.decode())
    return window.value, tau.value, scale.value


# ---------------------------------------------------------------- the CUDA kernel alone (GPU test, benchmark)

# extern "C" shim so ctypes can call the C++ launcher (namespaced, mangled) in the kernel library.
KERNEL_SHIM = r"""
#include "subpixel_decode_kernel.h"
extern "C" int shfan_launch(const void* hm, int fp16, int B, int K, int H, int W, int window, float tau,
                            float scale, float* landmarks, float* scores, void* stream) {
    return static_cast<int>(shfan::launchSubpixelDecode(hm, fp16 != 0, B, K, H, W, window, tau, scale,
                                                        landmarks, scores, static_cast<cudaStream_t>(stream)));
}
"""


def build_kernel_library(arch: str, out_dir: str | os.PathLike, name: str = "libshfan_kernel.so") -> ctypes.CDLL:
    """Compile plugins/src/subpixel_decode_kernel.cu (the kernel the TensorRT plugin launches) with
    nvcc for sm_`arch` into `out_dir`, without TensorRT; `shfan_launch` takes device pointers.
    PluginError when nvcc is missing or fails."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise PluginError("nvcc not found (install the CUDA toolkit)")
    out_dir = Path(out_dir)
    shim = out_dir / "shim.cu"
    shim.write_text(KERNEL_SHIM)
    src = PLUGIN_DIR / "src"
    lib = out_dir / name
    cmd = [nvcc, "-std=c++17", "-O3", f"-arch=sm_{arch}", "-shared", "-Xcompiler", "-fPIC",
           f"-I{PLUGIN_DIR / 'include'}", f"-I{src}", str(src / "subpixel_decode_kernel.cu"), str(shim),
           "-o", str(lib)]
    proc = _compile(cmd, "install the CUDA toolkit")
    if proc.returncode != 0:
        raise PluginError(f"nvcc failed: {_first_line(proc.stderr)}; command: {' '.join(cmd)}")
    handle = ctypes.CDLL(str(lib))
    handle.shfan_launch.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_int] * 5 + [
        ctypes.c_float, ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    handle.shfan_launch.restype = ctypes.c_int
    return handle
