"""What can this machine do with shfan? Pure checks behind `shfan-doctor`.

Every check is a small function that takes a `Probes` object (file reads, command outputs,
installed-distribution versions, module imports) and returns a `Check` record with the fix for
anything missing. Tests swap the probes for dictionaries holding real-format text (an
`/etc/nv_tegra_release` line, `nvidia-smi` output), so the parsers are tested off-device.

Nothing here imports torch; tensorrt, cv2 and onnxruntime are imported only inside the probes
that ask for them.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from shfan import io
from shfan.contracts import MIN_TENSORRT  # re-exported: doctor.MIN_TENSORRT

OK, WARN, MISSING = "ok", "warn", "missing"

MIN_PYTHON = (3, 10)
MIN_CUDA = (12, 6)

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

OPENCV_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                "opencv-contrib-python-headless")
ONNXRUNTIME_DISTS = ("onnxruntime", "onnxruntime-gpu")

# name, distributions, why it matters, fix
OPTIONAL_PACKAGES = (
    ("torch", ("torch",), "training and ONNX export", "pip install 'shfan[torch]'"),
    ("onnx", ("onnx",), "engine builds", "pip install 'shfan[build]'"),
    ("modelopt", ("nvidia-modelopt",), "FP16/INT8 ONNX", "pip install 'shfan[build]'"),
    ("onnxsim", ("onnxsim",), "ONNX simplification", "pip install 'shfan[build]'"),
)
CUDA_HOST_APIS = (("pycuda", ("pycuda",)), ("cuda-python", ("cuda-python", "cuda-bindings")))


@dataclass
class Check:
    """One line of the report: what was looked at, how it went, and what to do about it."""

    name: str
    status: str
    detail: str
    fix: str = ""
    value: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == OK


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
    """Everything the checks learn about the machine; swap the callables to test without one."""

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


# ---------------------------------------------------------------- parsers (pure, no I/O)

version_tuple = io.version_tuple  # re-exported: doctor's callers and tests use it


def parse_l4t_release(text: Optional[str]) -> Optional[Tuple[int, int, int]]:
    """`# R36 (release), REVISION: 4.3, ...` -> (36, 4, 3); None when the text is not one."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


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
    """shfan needs TensorRT >= 10.1: L4T R36.4 (JetPack 6.1) or later."""
    return release >= (36, 4, 0)


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


def parse_device_tree_model(text: Optional[str]) -> Optional[str]:
    """/proc/device-tree/model ends in a NUL byte; None when empty or absent."""
    model = (text or "").replace("\x00", "").strip()
    return model or None


def sm_for_jetson_model(model: Optional[str]) -> Optional[int]:
    """'NVIDIA Jetson AGX Orin Developer Kit' -> 87; 'NVIDIA Jetson AGX Thor ...' -> 110."""
    lowered = (model or "").lower()
    return next((sm for key, sm in JETSON_SM if key in lowered), None)


opencv_gstreamer = io.opencv_gstreamer  # the one parser; the frame sources use it too


# ---------------------------------------------------------------- checks

def check_python(info=sys.version_info) -> Check:
    version = f"{info[0]}.{info[1]}.{info[2]}"
    if tuple(info[:2]) >= MIN_PYTHON:
        return Check("python", OK, f"{version} ({platform.machine()})", value=version)
    return Check("python", MISSING, f"{version} is older than 3.10",
                 "use Python >= 3.10 (JetPack 6 ships 3.10)", version)


def check_shfan() -> Check:
    import shfan

    return Check("shfan", OK, shfan.__version__, value=shfan.__version__)


def first_version(probes: Probes, dists: Sequence[str]) -> Tuple[Optional[str], Optional[str]]:
    for dist in dists:
        version = probes.dist_version(dist)
        if version:
            return dist, version
    return None, None


def imported(probes: Probes, module: str) -> Tuple[object, Optional[str]]:
    """(module, None), or (None, why it does not import, in one line)."""
    try:
        return probes.import_module(module), None
    except Exception as exc:  # a broken install raises more than ImportError
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def version_of(module) -> str:
    return getattr(module, "__version__", "?")


def required(probes: Probes, module: str, check: str, fix: str):
    """(module, None), or (None, the MISSING Check `check` with the one-line reason and `fix`)."""
    found, why = imported(probes, module)
    return (found, None) if found is not None else (None, Check(check, MISSING, why, fix))


def check_numpy(probes: Probes) -> Check:
    module, missing = required(probes, "numpy", "numpy", "pip install 'numpy>=1.24' (on Jetson: numpy<2)")
    return missing or Check("numpy", OK, version_of(module), value=version_of(module))


def check_opencv(probes: Probes) -> Check:
    module, missing = required(probes, "cv2", "opencv",
                               "pip install opencv-python-headless (Jetson: apt's OpenCV, see jetson/README.md)")
    if missing:
        return missing
    dist, _ = first_version(probes, OPENCV_DISTS)
    return Check("opencv", OK, f"{version_of(module)} ({dist or 'system package'})", value=version_of(module))


def check_opencv_gstreamer(probes: Probes) -> Check:
    module, why = imported(probes, "cv2")
    if why:
        return Check("opencv-gstreamer", MISSING, "OpenCV does not import", "install OpenCV first")
    if opencv_gstreamer(module.getBuildInformation()):
        return Check("opencv-gstreamer", OK, "GStreamer: YES (CSI cameras work)", value="yes")
    return Check("opencv-gstreamer", WARN, "no GStreamer: USB/V4L2 and files only, no CSI",
                 "CSI needs apt's OpenCV: venv --system-site-packages, "
                 "pip uninstall opencv-python-headless", "no")


def check_onnxruntime(probes: Probes) -> Check:
    module, missing = required(probes, "onnxruntime", "onnxruntime", "pip install 'shfan[ort]'")
    if missing:
        return missing
    dist, _ = first_version(probes, ONNXRUNTIME_DISTS)
    providers = ", ".join(module.get_available_providers())
    return Check("onnxruntime", OK, f"{version_of(module)} ({dist or '?'}; {providers})", value=version_of(module))


def check_optional_package(probes: Probes, name: str, dists: Sequence[str], why: str,
                           fix: str) -> Check:
    dist, version = first_version(probes, dists)
    if version:
        return Check(name, OK, version, value=version)
    return Check(name, WARN, f"not installed (needed for {why})", fix)


def check_cuda_host_api(probes: Probes) -> Check:
    found = [f"{name} {version}" for name, dists in CUDA_HOST_APIS
             for _, version in [first_version(probes, dists)] if version]
    if found:
        return Check("cuda-host-api", OK, ", ".join(found), value=found[0].split()[0])
    return Check("cuda-host-api", MISSING, "neither pycuda nor cuda-python is installed",
                 "pip install pycuda (with CUDA_ROOT=/usr/local/cuda) or pip install cuda-python "
                 "('cuda-python<13' with a CUDA 12 driver, e.g. JetPack 6)")


def tensorrt_version(probes: Probes) -> Tuple[Optional[str], Optional[str]]:
    """(version, None) when `import tensorrt` works, else (None, reason)."""
    module, why = imported(probes, "tensorrt")
    return (None, why) if why else (version_of(module), None)


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


def tensorrt_supported(version: str) -> bool:
    """IPluginV3 and strongly typed networks need TensorRT >= 10.1."""
    return version_tuple(version)[:2] >= MIN_TENSORRT


def check_tensorrt(probes: Probes, on_jetson: bool) -> Check:
    version, error = tensorrt_version(probes)
    if version is None:
        installed = installed_tensorrt(probes)
        if installed:
            return Check("tensorrt", MISSING,
                         f"TensorRT {installed[0]} is installed ({installed[1]}) but this Python cannot import it",
                         "sudo apt install python3-libnvinfer; use a venv made with "
                         "--system-site-packages (jetson/install.sh)")
        fix = ("sudo apt install nvidia-jetpack, and use a venv made with --system-site-packages"
               if on_jetson else "pip install tensorrt (x86/SBSA with an NVIDIA driver)")
        return Check("tensorrt", MISSING, f"not importable ({error})", fix)
    if not tensorrt_supported(version):
        return Check("tensorrt", WARN, f"{version} is older than 10.1 (no IPluginV3)",
                     "upgrade to JetPack 6.1+ (TensorRT 10.3) or TensorRT >= 10.1", version)
    return Check("tensorrt", OK, version, value=version)


def cuda_version(probes: Probes) -> Tuple[Optional[str], str]:
    """(version, where it came from): nvcc on PATH, /usr/local/cuda/bin/nvcc, version.json."""
    for nvcc in ("nvcc", "/usr/local/cuda/bin/nvcc"):
        release = parse_nvcc_release(probes.run((nvcc, "--version")))
        if release:
            return release, nvcc
    return parse_cuda_version_json(probes.read_text(CUDA_VERSION_JSON)), CUDA_VERSION_JSON


def check_cuda(probes: Probes) -> Check:
    version, source = cuda_version(probes)
    if version is None:
        return Check("cuda", MISSING, "no nvcc and no /usr/local/cuda/version.json",
                     "install the CUDA toolkit (Jetson: sudo apt install nvidia-jetpack)")
    if version_tuple(version)[:2] < MIN_CUDA:
        return Check("cuda", WARN, f"{version} ({source}) is older than 12.6",
                     "use CUDA 12.6 (JetPack 6.1/6.2) or CUDA 13 (JetPack 7)", version)
    return Check("cuda", OK, f"{version} ({source})", value=version)


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


def check_gpu(probes: Probes, jetson_model: Optional[str]) -> Check:
    found = gpus(probes, jetson_model)
    if not found:
        return Check("gpu", MISSING, "no GPU (nvidia-smi absent or reports none)",
                     "the TensorRT path needs an NVIDIA GPU; the CPU path does not")
    name, sm = found[0]
    sm_text = f"sm_{sm}" if sm else "SM unknown"
    return Check("gpu", OK, f"{name} ({sm_text})", value=sm_text)


def jetson_model(probes: Probes) -> Optional[str]:
    """The Jetson's model string, or None on anything that is not a Jetson."""
    model = parse_device_tree_model(probes.read_text(DEVICE_TREE_MODEL))
    return model if model and "jetson" in model.lower() else None


def check_jetson(probes: Probes) -> Check:
    model = jetson_model(probes)
    if model is None:
        return Check("jetson", MISSING, "not a Jetson (no Jetson in /proc/device-tree/model)",
                     "nothing to do off Jetson")
    return Check("jetson", OK, model, value=model)


def check_jetpack(probes: Probes) -> Check:
    release = parse_l4t_release(probes.read_text(NV_TEGRA_RELEASE))
    if release is None:
        return Check("jetpack", MISSING, f"no L4T release ({NV_TEGRA_RELEASE} absent)",
                     "nothing to do off Jetson")
    jetpack = jetpack_for_l4t(release)
    dpkg = probes.run(DPKG_JETPACK)
    l4t = "R{}.{}.{}".format(*release)
    detail = f"JetPack {jetpack} (L4T {l4t}" + (f", nvidia-jetpack {dpkg.strip()})" if dpkg else ")")
    if not l4t_supported(release):
        return Check("jetpack", WARN, detail + ": TensorRT < 10.1",
                     "flash JetPack 6.1+ (L4T R36.4+) with SDK Manager", jetpack)
    return Check("jetpack", OK, detail, value=jetpack)


def check_plugin(probes: Probes) -> Check:
    """The SubpixelDecode plugin: found and loadable (needs TensorRT's libraries)."""
    try:
        plugins = probes.import_module("shfan.plugins")
        find, load = plugins.find_plugin_library, plugins.load_plugin_library
    except Exception as exc:
        return Check("trt-plugin", WARN, f"plugin helper unavailable ({type(exc).__name__})",
                     "update shfan (shfan.plugins is missing)")
    build_fix = "build it: jetson/install.sh, or cmake -S plugins -B plugins/build && " \
                "cmake --build plugins/build"
    try:
        path = find()
    except Exception as exc:
        return Check("trt-plugin", MISSING, _one_line(exc), build_fix)
    if not path:
        return Check("trt-plugin", MISSING, "plugin library not built", build_fix)
    try:
        load(path)
    except Exception as exc:
        return Check("trt-plugin", WARN, f"{path} does not load: {_one_line(exc)}",
                     "install TensorRT >= 10.1, then rebuild the plugin", str(path))
    return Check("trt-plugin", OK, f"loads: {path}", value=str(path))


def _one_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]


def check_default_model(path: Optional[Path] = None) -> Check:
    """The file shfan-run loads without --model: the shipped ONNX (the .pt only trains/exports)."""
    if path is None:
        from shfan.weights import model_path

        try:
            path = model_path("compact", "onnx")
        except Exception as exc:  # ShfanError: not in this install
            return Check("default-model", MISSING, _one_line(exc), "reinstall shfan (or pass --model PATH)")
    if Path(path).is_file():
        return Check("default-model", OK, str(path), value=str(path))
    return Check("default-model", MISSING, f"{path} is missing",
                 "reinstall shfan (or pass --model PATH)")


def check_detector(environ: Optional[Mapping[str, str]] = None, cached: Optional[Path] = None) -> Check:
    """The YuNet face detector shfan-run needs: $SHFAN_DETECTOR_MODEL, else the downloaded copy.
    Not there yet counts as missing: offline, shfan-run cannot start without it."""
    try:
        from shfan.runtime import detector
    except ImportError as exc:
        return Check("detector", MISSING, f"the detector module does not import ({_one_line(exc)})",
                     "install the numpy check's fix first")
    environ = os.environ if environ is None else environ
    how = (f"copy {detector.YUNET_FILE} (OpenCV Zoo) here and set ${detector.ENV_DETECTOR_MODEL} to it "
           "or pass --detector-model PATH")
    given = environ.get(detector.ENV_DETECTOR_MODEL)
    if given:
        path = Path(given).expanduser()
        if path.is_file():
            return Check("detector", OK, f"{path} (${detector.ENV_DETECTOR_MODEL})", value=str(path))
        return Check("detector", MISSING, f"${detector.ENV_DETECTOR_MODEL} points to {path}, which does not exist",
                     f"set ${detector.ENV_DETECTOR_MODEL} to the path of {detector.YUNET_FILE}, or unset it "
                     "(shfan-run then downloads it once)")
    cached = cached or detector.cached_yunet()
    if cached.is_file():
        if io.sha256_file(cached) != detector.YUNET_SHA256:
            return Check("detector", MISSING, f"{cached} is damaged (sha256 differs)",
                         f"delete it (shfan-run downloads it again), or {how}")
        return Check("detector", OK, f"{cached} (downloaded)", value=str(cached))
    return Check("detector", MISSING, f"not downloaded yet ({cached}); shfan-run fetches it at its first start, "
                 "which needs network access",
                 f"online: shfan-run --headless --max-frames 1 (downloads it once); offline: {how}")


# ---------------------------------------------------------------- report

def check_backends(registry=None, broken: Optional[Mapping[str, str]] = None) -> Check:
    """The inference backends registered with shfan (shfan.runtime.backends) and which of them
    can run here: what --backend accepts, and why one of them would refuse. The registry finds a
    library without importing it; `broken` (backend -> why it does not import, from the import
    checks above) takes out the ones that are installed but fail to import, so this line agrees
    with those checks."""
    if registry is None:
        from shfan.runtime import backends as registry
    broken = dict(broken or {})
    found = registry.available()
    here = [name for name in found if name not in broken]
    absent = [name for name in registry.names() if name not in found]
    failing = [f"{name} ({broken[name]})" for name in found if name in broken]
    detail = ", ".join(f"{name} {registry.get(name).version() or ''}".strip() for name in here) or "none"
    if absent:
        detail += f"; not installed: {', '.join(absent)}"
    if failing:
        detail += f"; installed but not importable: {', '.join(failing)}"
    if not here:
        return Check("backends", MISSING, detail, "pip install 'shfan[ort]'" if not failing else
                     "reinstall the broken library (see its line above)")
    return Check("backends", OK, detail, value=",".join(here))


CPU_PATH = ("numpy", "opencv", "onnxruntime", "default-model", "detector")
TENSORRT_PATH = ("tensorrt", "gpu", "cuda-host-api")


@dataclass
class Report:
    checks: Dict[str, Check] = field(default_factory=dict)

    def path_ok(self, names: Sequence[str]) -> bool:
        return all(name in self.checks and self.checks[name].ok for name in names)

    @property
    def cpu_path_ok(self) -> bool:
        return self.path_ok(CPU_PATH)

    @property
    def tensorrt_path_ok(self) -> bool:
        return self.path_ok(TENSORRT_PATH)

    def blockers(self, names: Sequence[str]) -> List[str]:
        return [name for name in names if name not in self.checks or not self.checks[name].ok]

    def to_dict(self) -> dict:
        return {
            "shfan_version": self.checks["shfan"].value if "shfan" in self.checks else None,
            "cpu_path": {"ok": self.cpu_path_ok, "needs": list(CPU_PATH),
                         "blocked_by": self.blockers(CPU_PATH)},
            "tensorrt_path": {"ok": self.tensorrt_path_ok, "needs": list(TENSORRT_PATH),
                              "blocked_by": self.blockers(TENSORRT_PATH)},
            "checks": {name: {k: v for k, v in asdict(check).items() if k != "name"}
                       for name, check in self.checks.items()},
        }


def run_checks(probes: Optional[Probes] = None, model_path: Optional[Path] = None) -> Report:
    """Every check, in the order the table shows them."""
    probes = probes or Probes()
    model = jetson_model(probes)
    onnxruntime, tensorrt = check_onnxruntime(probes), check_tensorrt(probes, model is not None)
    broken = {c.name: c.detail for c in (onnxruntime, tensorrt) if c.status == MISSING}
    checks = [check_python(), check_shfan(), check_numpy(probes), check_opencv(probes),
              check_opencv_gstreamer(probes), onnxruntime,
              check_default_model(model_path), check_detector(), check_backends(broken=broken)]
    checks += [check_optional_package(probes, *spec) for spec in OPTIONAL_PACKAGES]
    checks += [check_jetson(probes), check_jetpack(probes), check_cuda(probes),
               check_gpu(probes, model), tensorrt, check_cuda_host_api(probes), check_plugin(probes)]
    return Report({check.name: check for check in checks})
