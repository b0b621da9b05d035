"""What can this machine do with shfan? Pure checks behind `shfan-doctor`.

The doctor only reports: the facts come from shfan.platform_facts (the one module that probes
the machine), and every check here turns them into a `Check` record with the fix for anything
missing. Tests swap the `Probes` for dictionaries holding real-format text (an
`/etc/nv_tegra_release` line, `nvidia-smi` output), so the report is tested off-device.

Nothing here imports torch; tensorrt, cv2 and onnxruntime are imported only inside the probes
that ask for them.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from shfan import io, platform_facts
from shfan.platform_facts import MIN_TENSORRT_TEXT, TENSORRT_UPGRADE, Probes, version_tuple

OK, WARN, MISSING = "ok", "warn", "missing"

MIN_PYTHON = (3, 10)
MIN_CUDA = (12, 6)

# name, distributions, why it matters, fix
OPTIONAL_PACKAGES = (
    ("torch", ("torch",), "training and ONNX export", "pip install 'shfan[torch]'"),
    ("onnx", ("onnx",), "engine builds", "pip install 'shfan[build]'"),
    ("modelopt", ("nvidia-modelopt",), "FP16/INT8 ONNX", "pip install 'shfan[build]'"),
    ("onnxsim", ("onnxsim",), "ONNX simplification", "pip install 'shfan[build]'"),
)


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


def required(probes: Probes, module: str, check: str, fix: str):
    """(module, None), or (None, the MISSING Check `check` with the one-line reason and `fix`)."""
    found, why = platform_facts.imported(probes, module)
    return (found, None) if found is not None else (None, Check(check, MISSING, why, fix))


def check_numpy(probes: Probes) -> Check:
    module, missing = required(probes, "numpy", "numpy", "pip install 'numpy>=1.24' (on Jetson: numpy<2)")
    if missing:
        return missing
    version = platform_facts.version_of(module)
    return Check("numpy", OK, version, value=version)


def check_opencv(probes: Probes) -> Check:
    module, missing = required(probes, "cv2", "opencv",
                               "pip install opencv-python-headless (Jetson: apt's OpenCV, see jetson/README.md)")
    if missing:
        return missing
    dist, _ = platform_facts.first_version(probes, platform_facts.OPENCV_DISTS)
    version = platform_facts.version_of(module)
    return Check("opencv", OK, f"{version} ({dist or 'system package'})", value=version)


def check_opencv_gstreamer(probes: Probes) -> Check:
    module, why = platform_facts.imported(probes, "cv2")
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
    dist, _ = platform_facts.first_version(probes, platform_facts.ONNXRUNTIME_DISTS)
    providers = ", ".join(module.get_available_providers())
    version = platform_facts.version_of(module)
    return Check("onnxruntime", OK, f"{version} ({dist or '?'}; {providers})", value=version)


def check_optional_package(probes: Probes, name: str, dists: Sequence[str], why: str,
                           fix: str) -> Check:
    dist, version = platform_facts.first_version(probes, dists)
    if version:
        return Check(name, OK, version, value=version)
    return Check(name, WARN, f"not installed (needed for {why})", fix)


def check_cuda_host_api(probes: Probes) -> Check:
    found = [f"{name} {version}" for name, dists in platform_facts.CUDA_HOST_APIS
             for _, version in [platform_facts.first_version(probes, dists)] if version]
    if found:
        return Check("cuda-host-api", OK, ", ".join(found), value=found[0].split()[0])
    return Check("cuda-host-api", MISSING, "neither pycuda nor cuda-python is installed",
                 "pip install pycuda (with CUDA_ROOT=/usr/local/cuda) or pip install cuda-python "
                 "('cuda-python<13' with a CUDA 12 driver, e.g. JetPack 6)")


def check_tensorrt(probes: Probes, on_jetson: bool) -> Check:
    version, error = platform_facts.tensorrt_version(probes)
    if version is None:
        installed = platform_facts.installed_tensorrt(probes)
        if installed:
            return Check("tensorrt", MISSING,
                         f"TensorRT {installed[0]} is installed ({installed[1]}) but this Python cannot import it",
                         "sudo apt install python3-libnvinfer; use a venv made with "
                         "--system-site-packages (jetson/install.sh)")
        fix = ("sudo apt install nvidia-jetpack, and use a venv made with --system-site-packages"
               if on_jetson else "pip install tensorrt (x86/SBSA with an NVIDIA driver)")
        return Check("tensorrt", MISSING, f"not importable ({error})", fix)
    if not platform_facts.tensorrt_supported(version):
        return Check("tensorrt", WARN, f"{version} is older than {MIN_TENSORRT_TEXT} (no IPluginV3)",
                     TENSORRT_UPGRADE, version)
    return Check("tensorrt", OK, version, value=version)


def check_cuda(probes: Probes) -> Check:
    version, source = platform_facts.cuda_version(probes)
    if version is None:
        return Check("cuda", MISSING, "no nvcc and no /usr/local/cuda/version.json",
                     "install the CUDA toolkit (Jetson: sudo apt install nvidia-jetpack)")
    if version_tuple(version)[:2] < MIN_CUDA:
        return Check("cuda", WARN, f"{version} ({source}) is older than 12.6",
                     "use CUDA 12.6 (JetPack 6.1/6.2) or CUDA 13 (JetPack 7)", version)
    return Check("cuda", OK, f"{version} ({source})", value=version)


def check_gpu(probes: Probes, jetson_model: Optional[str]) -> Check:
    found = platform_facts.gpus(probes, jetson_model)
    if not found:
        return Check("gpu", MISSING, "no GPU (nvidia-smi absent or reports none)",
                     "the TensorRT path needs an NVIDIA GPU; the CPU path does not")
    name, sm = found[0]
    sm_text = f"sm_{sm}" if sm else "SM unknown"
    return Check("gpu", OK, f"{name} ({sm_text})", value=sm_text)


def check_jetson(probes: Probes) -> Check:
    model = platform_facts.jetson_model(probes)
    if model is None:
        return Check("jetson", MISSING, "not a Jetson (no Jetson in /proc/device-tree/model)",
                     "nothing to do off Jetson")
    return Check("jetson", OK, model, value=model)


def check_jetpack(probes: Probes) -> Check:
    release = platform_facts.l4t_release(probes)
    if release is None:
        return Check("jetpack", MISSING, f"no L4T release ({platform_facts.NV_TEGRA_RELEASE} absent)",
                     "nothing to do off Jetson")
    jetpack = platform_facts.jetpack_for_l4t(release)
    dpkg = probes.run(platform_facts.DPKG_JETPACK)
    l4t = "R{}.{}.{}".format(*release)
    detail = f"JetPack {jetpack} (L4T {l4t}" + (f", nvidia-jetpack {dpkg.strip()})" if dpkg else ")")
    if not platform_facts.l4t_supported(release):
        return Check("jetpack", WARN, detail + f": TensorRT < {MIN_TENSORRT_TEXT}",
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
    build_command = getattr(plugins, "BUILD_COMMAND", "cmake -S plugins -B plugins/build && cmake --build plugins/build")
    build_fix = f"build it: jetson/install.sh, or {build_command}"
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
                     f"install TensorRT >= {MIN_TENSORRT_TEXT}, then rebuild the plugin", str(path))
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
    model = platform_facts.jetson_model(probes)
    onnxruntime, tensorrt = check_onnxruntime(probes), check_tensorrt(probes, model is not None)
    broken = {c.name: c.detail for c in (onnxruntime, tensorrt) if c.status == MISSING}
    checks = [check_python(), check_shfan(), check_numpy(probes), check_opencv(probes),
              check_opencv_gstreamer(probes), onnxruntime,
              check_default_model(model_path), check_detector(), check_backends(broken=broken)]
    checks += [check_optional_package(probes, *spec) for spec in OPTIONAL_PACKAGES]
    checks += [check_jetson(probes), check_jetpack(probes), check_cuda(probes),
               check_gpu(probes, model), tensorrt, check_cuda_host_api(probes), check_plugin(probes)]
    return Report({check.name: check for check in checks})
