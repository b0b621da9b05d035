"""jetson/: scripts parse and lint, install.sh refuses unsupported boards, unit and Dockerfile keys.

install.sh reads /etc/nv_tegra_release and /proc/device-tree/model under $SHFAN_SYSROOT, so a fake
root plus stub `dpkg-query` and `nvcc` executables act out a Jetson here; --dry-run changes nothing.
"""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JETSON = REPO / "jetson"
INSTALL = JETSON / "install.sh"
SCRIPTS = sorted(JETSON.glob("*.sh"))

L4T = {
    "6.1": "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
           "DATE: Fri Sep 13 04:36:44 UTC 2024\n",
    "6.2": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
           "DATE: Wed Jan  8 01:49:37 UTC 2025\n",
    "6.0": "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
           "DATE: Mon May  6 17:34:21 UTC 2024\n",
    "5.1.2": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
             "DATE: Tue Aug  1 19:57:35 UTC 2023\n",
    "7.0": "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, "
           "DATE: Fri Aug 22 00:55:42 UTC 2025\n",
}
ORIN = "NVIDIA Jetson AGX Orin Developer Kit\x00"
THOR = "NVIDIA Jetson AGX Thor Developer Kit\x00"


def test_there_is_an_install_script():
    assert INSTALL in SCRIPTS and os.access(INSTALL, os.X_OK)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_parses(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def fake_jetson(tmp_path, release=None, model=ORIN, trt="10.3.0.30-1+cuda12.5", cuda="12.6", trt_package="libnvinfer10"):
    """Fake root + stub tools; returns the environment to run install.sh in. TensorRT is a dpkg
    package (`trt_package`: its version answers the libnvinfer[0-9]* query), or with
    trt_package=None only its library file, as TensorRT 11's renamed packages leave it."""
    root, bin_dir, cuda_root = tmp_path / "root", tmp_path / "bin", tmp_path / "cuda"
    (root / "etc").mkdir(parents=True)
    (root / "proc/device-tree").mkdir(parents=True)
    (cuda_root / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    if release:
        (root / "etc/nv_tegra_release").write_text(release)
    (root / "proc/device-tree/model").write_text(model)
    packages = {"nvidia-jetpack": "6.1+b123"}
    if trt:
        packages["python3-libnvinfer"] = trt
        if trt_package:
            packages["libnvinfer[0-9]*"] = f"{trt_package} {trt}"
        else:
            lib_dir = root / "usr/lib/aarch64-linux-gnu"
            lib_dir.mkdir(parents=True)
            numeric = trt.split("-")[0]
            for name in (f"libnvinfer.so.{numeric.split('.')[0]}", f"libnvinfer.so.{numeric}"):
                (lib_dir / name).write_text("")
    cases = "".join(f'  *" {name}") echo "{version}" ;;\n' for name, version in packages.items())
    write_executable(bin_dir / "dpkg-query", f'#!/bin/sh\ncase " $*" in\n{cases}  *) exit 1 ;;\nesac\n')
    write_executable(cuda_root / "bin/nvcc", "#!/bin/sh\necho 'Cuda compilation tools, "
                     f"release {cuda}, V{cuda}.68'\n")
    # nvidia-smi must not come from the host: a stub that fails, like Orin's limited one.
    write_executable(bin_dir / "nvidia-smi", "#!/bin/sh\nexit 9\n")
    return dict(os.environ, SHFAN_SYSROOT=str(root), CUDA_ROOT=str(cuda_root),
                PATH=f"{bin_dir}:{os.environ['PATH']}", SHFAN_VENV=str(tmp_path / "venv"))


def install(env, *args):
    return subprocess.run([str(INSTALL), "--dry-run", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_dry_run_on_this_machine_says_not_a_jetson(tmp_path):
    env = dict(os.environ, SHFAN_SYSROOT=str(tmp_path))
    done = install(env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: not a Jetson")
    assert "nv_tegra_release" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_help():
    done = subprocess.run([str(INSTALL), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--dry-run" in done.stdout and "--sm" in done.stdout


def test_unknown_option_is_one_clear_line():
    done = subprocess.run([str(INSTALL), "--bogus"], capture_output=True, text=True)
    assert done.returncode != 0 and "unknown option '--bogus'" in done.stderr


@pytest.mark.parametrize("jetpack", ["6.1", "6.2"])
def test_dry_run_on_a_fake_orin_prints_the_plan(tmp_path, jetpack):
    done = install(fake_jetson(tmp_path, L4T[jetpack]))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"-> JetPack {jetpack}" in out and "TensorRT 10.3.0.30" in out and "sm_87" in out
    assert re.search(r"\[dry-run\] \S*python3? -m venv --system-site-packages", out)
    assert "pip install --no-deps -e" in out
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in out
    assert "opencv-python" not in out.split("Next:")[0] and "install tensorrt" not in out
    for step in ("shfan-doctor", "shfan-build --precision int8", "shfan-run --camera 0"):
        assert step in out
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize("jetpack, message", [
    ("5.1.2", "JetPack 5.x (L4T R35.4.1) is not supported"),
    ("6.0", "JetPack 6.0 (L4T R36.3.0) is not supported"),
])
def test_old_jetpack_is_refused(tmp_path, jetpack, message):
    done = install(fake_jetson(tmp_path, L4T[jetpack]))
    assert done.returncode == 1
    assert message in done.stderr and "JetPack 6.1+" in done.stderr


def test_missing_tensorrt_is_refused(tmp_path):
    env = fake_jetson(tmp_path, L4T["6.1"], trt=None)
    env["PYTHON"] = str(tmp_path / "bin" / "no-python")  # no `import tensorrt` fallback either
    done = install(env)
    assert done.returncode == 1 and "TensorRT not found" in done.stderr
    assert "sudo apt install nvidia-jetpack" in done.stderr


def test_tensorrt_found_by_its_library_file(tmp_path):
    """TensorRT 11 packages are not called libnvinfer10: the version comes from libnvinfer.so.X.Y.Z."""
    done = install(fake_jetson(tmp_path, L4T["7.0"], model=THOR, trt="11.0.0", cuda="13.0", trt_package=None))
    assert done.returncode == 0, done.stderr
    assert "TensorRT 11.0.0" in done.stdout


def test_jetpack7_needs_tensorrt_10_13(tmp_path):
    done = install(fake_jetson(tmp_path, L4T["7.0"], model=THOR, trt="10.3.0.30-1+cuda12.5",
                               cuda="13.0"))
    assert done.returncode == 1 and ">= 10.13" in done.stderr


def test_thor_builds_sm_110_with_cuda_13(tmp_path):
    done = install(fake_jetson(tmp_path, L4T["7.0"], model=THOR, trt="10.13.3.9-1+cuda13.0",
                               cuda="13.0"))
    assert done.returncode == 0, done.stderr
    assert "-> JetPack 7.0" in done.stdout and "-DCMAKE_CUDA_ARCHITECTURES=110" in done.stdout


def test_old_cuda_is_refused(tmp_path):
    done = install(fake_jetson(tmp_path, L4T["6.1"], cuda="12.2"))
    assert done.returncode == 1 and "CUDA 12.2 is too old" in done.stderr


def test_sm_override(tmp_path):
    done = install(fake_jetson(tmp_path, L4T["6.1"], model="Some carrier\x00"), "--sm", "87")
    assert done.returncode == 0, done.stderr
    assert "GPU sm_87" in done.stdout
    done = install(fake_jetson(tmp_path / "b", L4T["6.1"], model="Some carrier\x00"))
    assert done.returncode == 1 and "pass --sm 87 (Orin) or --sm 110 (Thor)" in done.stderr


def test_existing_venv_without_system_site_packages_is_refused(tmp_path):
    env = fake_jetson(tmp_path, L4T["6.1"])
    venv = Path(env["SHFAN_VENV"])
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    done = install(env)
    assert done.returncode == 1 and "without --system-site-packages" in done.stderr
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    done = install(env)
    assert done.returncode == 0 and "reusing venv" in done.stdout


def unit_sections(text: str) -> dict:
    """systemd unit -> {section: {key: [values]}} (keys may repeat)."""
    sections, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_has_the_required_keys():
    unit = unit_sections((JETSON / "shfan.service").read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    assert "nvargus-daemon.service" in " ".join(unit["Unit"]["After"])
    service = unit["Service"]
    assert service["EnvironmentFile"] == ["/etc/default/shfan"]
    assert service["Restart"] == ["on-failure"] and int(service["RestartSec"][0]) > 0
    assert service["SuccessExitStatus"] == ["130"]  # a stop (SIGTERM) is not a failure
    assert service["User"] == ["shfan"] and "video" in service["SupplementaryGroups"][0].split()
    exec_start = service["ExecStart"][0]
    assert exec_start.split()[0].endswith("/bin/shfan-run")
    for flag in ("--source", "--headless", "--jsonl"):
        assert flag in exec_start
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_default_file_defines_what_the_unit_uses():
    unit = (JETSON / "shfan.service").read_text()
    defaults = dict(line.split("=", 1) for line in (JETSON / "shfan.default").read_text().splitlines()
                    if line and not line.startswith("#"))
    used = set(re.findall(r"\$\{?(SHFAN_[A-Z_]+)", unit))
    assert used and used <= set(defaults)
    assert defaults["SHFAN_SOURCE"] == "csi://0"


def test_dockerfile_builds_on_l4t_jetpack_r36():
    text = (JETSON / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms == ["nvcr.io/nvidia/l4t-jetpack:r36.4.0"]
    assert "--system-site-packages" in text and "pip install --no-deps" in text
    assert re.search(r'^ENTRYPOINT \["shfan-run"\]', text, re.MULTILINE)
    assert "CMAKE_CUDA_ARCHITECTURES" in text
    installs = " ".join(re.findall(r"pip install ([^\n\\&]+)", text))
    assert "opencv-python" not in installs and "tensorrt" not in installs


def test_readmes_cover_the_topics():
    readme = (JETSON / "README.md").read_text()
    for topic in ("nvpmodel -m 0", "jetson_clocks", "nvarguscamerasrc", "v4l2", "manifest",
                  "systemctl enable", "--system-site-packages"):
        assert topic in readme, topic
    notes = (JETSON / "JETPACK7.md").read_text()
    for topic in ("24.04", "CUDA", "sm_110", "TensorRT 11", "nvcr.io/nvidia/cuda"):
        assert topic in notes, topic
