"""The platform facts, probed in one place: is TensorRT here (and which version, and is it new
enough for shfan), which GPU and SM, which Jetson and JetPack, which CUDA, which Python
distributions provide a module. The doctor reports these facts; the backend registry, the
builder, the benchmarks and the self-test act on them; none of them probes on its own.

Probing goes through a `Probes` object (file reads, command outputs, installed-distribution
versions, module imports), so tests swap in dictionaries of real-format text. Only the stdlib
at import: tensorrt and the CUDA host API are imported inside the functions that need them, so
`import shfan.runtime` stays free of torch and tensorrt.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from shfan import io
from shfan.contracts import MIN_TENSORRT

# TensorRT >= MIN_TENSORRT: IPluginV3 (the SubpixelDecode plugin) and strongly typed networks.
MIN_TENSORRT_TEXT = ".".join(map(str, MIN_TENSORRT))
TENSORRT_UPGRADE = f"upgrade to JetPack 6.1+ (TensorRT 10.3) or TensorRT >= {MIN_TENSORRT_TEXT}"
MIN_L4T = (36, 4, 0)  # L4T R36.4 = JetPack 6.1, the first Jetson release with TensorRT >= 10.1

# The Python module each platform library provides, and the interchangeable pip distributions
# that install it (a backend's version is the first one installed).
TENSORRT_MODULE = "tensorrt"
TENSORRT_DISTS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu11")  # pip; JetPack's apt module may have none
ONNXRUNTIME_DISTS = ("onnxruntime", "onnxruntime-gpu")  # either provides `onnxruntime` (not both)
OPENCV_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                "opencv-contrib-python-headless")
CUDA_HOST_APIS = (("pycuda", ("pycuda",)), ("cuda-python", ("cuda-python", "cuda-bindings")))

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
DEVICE_TREE_MODEL = "/proc/device-tree/model"
CUDA_VERSION_JSON = "/usr/local/cuda/version.json"
NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader")
DPKG_JETPACK = ("dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack")
# TensorRT installed outside Python, by version rather than one package name (TensorRT 11's
# packages are not libnvinfer10): any libnvinfer<N> package, the library file, the version header.
DPKG_LIBNVINFER = ("dpkg-query", "-W", "-f=${Package} ${Version}\n", "libnvinfer[0-9]*")
TENSORRT_LIB_GLOBS = tuple(f"{d}/libnvinfer.so.*" for d in (
    "/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib/sbsa-linux-gnu", "/usr/lib64",
    "/usr/local/tensorrt/lib", "/opt/tensorrt/lib"))
TENSORRT_VERSION_HEADERS = ("/usr/include/aarch64-linux-gnu/NvInferVersion.h",
                            "/usr/include/x86_64-linux-gnu/NvInferVersion.h", "/usr/include/NvInferVersion.h")

# L4T release -> JetPack release (NVIDIA's JetPack archive). Unknown revisions fall back by major.
L4T_TO_JETPACK = {
    (35, 1): "5.0.2", (35, 2): "5.1", (35, 3): "5.1.1", (35, 4): "5.1.2",
    (35, 5): "5.1.3", (35, 6): "5.1.4",
    (36, 2): "6.0 DP", (36, 3): "6.0",
    (36, 4, 0): "6.1", (36, 4, 3): "6.2", (36, 4, 4): "6.2.1",
    (38, 2): "7.0",
}
JETPACK_FAMILY = {32: "4.x", 34: "5.0 DP", 35: "5.x", 36: "6.x", 38: "7.x", 39: "7.x"}

# Jetson model string -> CUDA SM, used when nvidia-smi cannot report compute_cap.
JETSON_SM = (("thor", 110), ("orin", 87), ("xavier", 72), ("nano", 53), ("tx2", 62))

version_tuple = io.version_tuple  # '10.3.0.30-1+cuda12.5' -> (10, 3, 0, 30)


# ---------------------------------------------------------------- probes (the only I/O)

def _read_text(path: str) -> Optional[str]:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _run(argv: Sequence[str]) -> Optional[str]:
    """stdout of a command, or None when it is absent, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _glob(pattern: str) -> List[str]:
    import glob

    return sorted(glob.glob(pattern))


@dataclass
class Probes:
    """Everything the facts are learned from; swap the callables to test without the machine."""

    read_text: Callable[[str], Optional[str]] = _read_text
    run: Callable[[Sequence[str]], Optional[str]] = _run
    dist_version: Callable[[str], Optional[str]] = io.dist_version
    import_module: Callable[[str], object] = importlib.import_module
    glob: Callable[[str], List[str]] = _glob

    @classmethod
    def from_dicts(cls, files: Mapping[str, str] = (), commands: Mapping[str, str] = (),
                   versions: Mapping[str, str] = (), modules: Mapping[str, object] = ()):
        """Fake probes: commands are keyed by their argv joined with spaces; unknown -> absent."""
        files, commands = dict(files), dict(commands)
        versions, modules = dict(versions), dict(modules)

        def import_module(name):
            if name not in modules:
                raise ImportError(f"No module named {name!r}")
            return modules[name]

        import fnmatch

        return cls(read_text=files.get, run=lambda argv: commands.get(" ".join(argv)),
                   dist_version=versions.get, import_module=import_module,
                   glob=lambda pattern: sorted(f for f in files if fnmatch.fnmatch(f, pattern)))


# ---------------------------------------------------------------- modules and distributions

def module_available(module: str) -> bool:
    """`module` is importable, found without importing it (listing backends must not load
    tensorrt or torch); a broken parent package counts as absent."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def first_version(probes: Probes, dists: Sequence[str]) -> Tuple[Optional[str], Optional[str]]:
    """(distribution, version) of the first of the interchangeable `dists` installed, else (None, None)."""
    for dist in dists:
        version = probes.dist_version(dist)
        if version:
            return dist, version
    return None, None


def installed_version(module: str, dists: Sequence[str], probes: Optional[Probes] = None) -> Optional[str]:
    """The version of the first installed distribution in `dists`, else the already imported
    module's __version__ (JetPack's apt-installed tensorrt may have no package metadata), else None."""
    _, version = first_version(probes or Probes(), dists)
    if version:
        return version
    loaded = sys.modules.get(module)
    return getattr(loaded, "__version__", None) if loaded is not None else None


def imported(probes: Probes, module: str) -> Tuple[object, Optional[str]]:
    """(module, None), or (None, why it does not import, in one line)."""
    try:
        return probes.import_module(module), None
    except Exception as exc:  # a broken install raises more than ImportError
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def version_of(module) -> str:
    return getattr(module, "__version__", "?")


# ---------------------------------------------------------------- TensorRT

def tensorrt_installed() -> bool:
    """TensorRT's Python module is here, found without importing it (the backend registry's
    availability; whether it also imports is `tensorrt_version`)."""
    return module_available(TENSORRT_MODULE)


def tensorrt_version(probes: Optional[Probes] = None) -> Tuple[Optional[str], Optional[str]]:
    """(version, None) when `import tensorrt` works, else (None, the one-line reason)."""
    module, why = imported(probes or Probes(), TENSORRT_MODULE)
    return (None, why) if why else (version_of(module), None)


def tensorrt_supported(version: str) -> bool:
    """IPluginV3 and strongly typed networks need TensorRT >= MIN_TENSORRT (an unreadable
    version is not supported)."""
    return version_tuple(version)[:2] >= MIN_TENSORRT


def parse_dpkg_versions(text: Optional[str]) -> List[str]:
    """`dpkg-query -W -f='${Package} ${Version}\\n'` lines -> installed versions (packages
    known to dpkg but not installed have an empty version)."""
    versions = []
    for line in (text or "").splitlines():
        fields = line.split()
        if fields and version_tuple(fields[-1]):
            versions.append(fields[-1])
    return versions


def parse_libnvinfer_name(path: str) -> Optional[str]:
    """'/usr/lib/aarch64-linux-gnu/libnvinfer.so.10.3.0' -> '10.3.0' (None: not versioned)."""
    match = re.search(r"libnvinfer\.so\.(\d+(?:\.\d+)*)$", path or "")
    return match.group(1) if match else None


def parse_nvinfer_version_header(text: Optional[str]) -> Optional[str]:
    """NvInferVersion.h -> '10.3.0' (10.x defines NV_TENSORRT_MAJOR as a number, 11.x as
    TRT_MAJOR_ENTERPRISE)."""
    defines = dict(re.findall(r"^#define\s+(\w+)\s+(\w+)", text or "", re.MULTILINE))

    def value(name: str) -> Optional[str]:
        for _ in range(3):  # follow #define A B indirections
            name = defines.get(name, name)
        return name if name.isdigit() else None

    parts = [value(f"NV_TENSORRT_{p}") for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts) if all(parts) else None


def installed_tensorrt(probes: Probes) -> Optional[Tuple[str, str]]:
    """(version, where) of a TensorRT installed on the system, whatever its packages are called:
    dpkg's libnvinfer<N> packages, else the libnvinfer.so.X.Y.Z file, else NvInferVersion.h."""
    versions = parse_dpkg_versions(probes.run(DPKG_LIBNVINFER))
    if versions:
        return max(versions, key=version_tuple), "dpkg"
    files = [(v, f) for pattern in TENSORRT_LIB_GLOBS for f in probes.glob(pattern)
             if (v := parse_libnvinfer_name(f))]
    if files:
        return max(files, key=lambda vf: version_tuple(vf[0]))
    for header in TENSORRT_VERSION_HEADERS:
        version = parse_nvinfer_version_header(probes.read_text(header))
        if version:
            return version, header
    return None


# ---------------------------------------------------------------- CUDA and the GPU

def parse_nvcc_release(text: Optional[str]) -> Optional[str]:
    """`nvcc --version` -> '12.6' (from 'Cuda compilation tools, release 12.6, V12.6.68')."""
    match = re.search(r"release\s+(\d+\.\d+)", text or "")
    return match.group(1) if match else None


def parse_cuda_version_json(text: Optional[str]) -> Optional[str]:
    """/usr/local/cuda/version.json -> '12.6.68'."""
    try:
        return json.loads(text or "")["cuda"]["version"]
    except (ValueError, KeyError, TypeError):
        return None


def cuda_version(probes: Probes) -> Tuple[Optional[str], str]:
    """(version, where it came from): nvcc on PATH, /usr/local/cuda/bin/nvcc, version.json."""
    for nvcc in ("nvcc", "/usr/local/cuda/bin/nvcc"):
        release = parse_nvcc_release(probes.run((nvcc, "--version")))
        if release:
            return release, nvcc
    return parse_cuda_version_json(probes.read_text(CUDA_VERSION_JSON)), CUDA_VERSION_JSON


def parse_compute_cap(text: str) -> Optional[int]:
    """nvidia-smi compute_cap '8.7' -> 87, '11.0' -> 110."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text or "")
    return int(match.group(1)) * 10 + int(match.group(2)) if match else None


def parse_nvidia_smi_gpus(text: Optional[str]) -> List[Tuple[str, Optional[int]]]:
    """`name, compute_cap` CSV rows -> [(name, sm)]; compute_cap may be '[N/A]' (sm None)."""
    gpus = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        name, _, cap = line.rpartition(",")
        if not name:
            name, cap = cap, ""
        gpus.append((name.strip(), parse_compute_cap(cap)))
    return gpus


def gpus(probes: Probes, jetson_model: Optional[str]) -> List[Tuple[str, Optional[int]]]:
    """GPUs from nvidia-smi; on a Jetson without it, the SoC's GPU from the model string."""
    found = parse_nvidia_smi_gpus(probes.run(NVIDIA_SMI_QUERY))
    if jetson_model and not any(sm for _, sm in found):
        sm = sm_for_jetson_model(jetson_model)
        if sm:
            found = [(found[0][0] if found else jetson_model, sm)]
    return found


def visible_gpu(found: List[Tuple[str, Optional[int]]],
                visible: Optional[str] = None) -> Optional[Tuple[str, Optional[int]]]:
    """The nvidia-smi row of CUDA device 0: the first index in CUDA_VISIBLE_DEVICES (a UUID or
    MIG name cannot be mapped; then the first row), None when it hides every GPU. A fallback only:
    CUDA orders devices fastest first, nvidia-smi by PCI bus; the CUDA query is the reference."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if not found:
        return None
    if visible is None:
        return found[0]
    first = visible.split(",")[0].strip()
    if not first or first == "-1":
        return None
    if first.isdigit():
        return found[int(first)] if int(first) < len(found) else None
    return found[0]


def gpu_device(probes: Optional[Probes] = None) -> Tuple[Optional[str], Optional[int]]:
    """(GPU name, SM as int e.g. 87) of CUDA device 0, the device TensorRT builds and runs on:
    the CUDA host API's query (nvidia-smi's first row is PCI order and ignores
    CUDA_VISIBLE_DEVICES). Without a usable host API, the nvidia-smi row of the first visible
    GPU or the Jetson's model; (None, None) when nothing answers."""
    from shfan.errors import BackendError
    from shfan.runtime.cuda_host import open_cuda_host

    try:
        host = open_cuda_host(device=0)
        try:
            with host.activate():
                return host.device_name_and_sm()
        finally:
            host.close()
    except BackendError:
        probes = probes or Probes()
        return visible_gpu(gpus(probes, jetson_model(probes))) or (None, None)


# ---------------------------------------------------------------- Jetson and JetPack

def parse_device_tree_model(text: Optional[str]) -> Optional[str]:
    """/proc/device-tree/model ends in a NUL byte; None when empty or absent."""
    model = (text or "").replace("\x00", "").strip()
    return model or None


def jetson_model(probes: Probes) -> Optional[str]:
    """The Jetson's model string, or None on anything that is not a Jetson."""
    model = parse_device_tree_model(probes.read_text(DEVICE_TREE_MODEL))
    return model if model and "jetson" in model.lower() else None


def sm_for_jetson_model(model: Optional[str]) -> Optional[int]:
    """'NVIDIA Jetson AGX Orin Developer Kit' -> 87; 'NVIDIA Jetson AGX Thor ...' -> 110."""
    lowered = (model or "").lower()
    return next((sm for key, sm in JETSON_SM if key in lowered), None)


def parse_l4t_release(text: Optional[str]) -> Optional[Tuple[int, int, int]]:
    """`# R36 (release), REVISION: 4.3, ...` -> (36, 4, 3); None when the text is not one."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def l4t_release(probes: Probes) -> Optional[Tuple[int, int, int]]:
    """This Jetson's L4T release from /etc/nv_tegra_release; None off Jetson."""
    return parse_l4t_release(probes.read_text(NV_TEGRA_RELEASE))


def jetpack_for_l4t(release: Tuple[int, int, int]) -> str:
    """JetPack release for an L4T release (exact when known, else the major's family)."""
    major, minor, patch = release
    for key in ((major, minor, patch), (major, minor)):
        if key in L4T_TO_JETPACK:
            return L4T_TO_JETPACK[key]
    if major == 36 and (minor, patch) > (4, 4):
        return "6.2.x"
    return JETPACK_FAMILY.get(major, "7.x" if major > 38 else "unknown")


def l4t_supported(release: Tuple[int, int, int]) -> bool:
    """shfan needs TensorRT >= MIN_TENSORRT: L4T R36.4 (JetPack 6.1) or later."""
    return release >= MIN_L4T
