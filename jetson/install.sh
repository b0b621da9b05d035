#!/usr/bin/env bash
# Install shfan on a Jetson: JetPack 6.1/6.2 (L4T R36.4, TensorRT 10.3, CUDA 12.6) or
# JetPack 7 (L4T R38+, TensorRT 10.13+/11, CUDA 13).
#
# Checks the board first and refuses, with the fix, anything shfan cannot run on. Then it
# makes a venv with --system-site-packages (JetPack's TensorRT bindings and GStreamer OpenCV
# come from apt and must stay visible), installs shfan with --no-deps plus only the missing
# pure-Python dependencies, builds pycuda against the board's CUDA and the TensorRT plugin for
# the board's SM. Safe to run again: every step skips what is already done.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYSROOT=${SHFAN_SYSROOT:-}            # tests point this at a fake root; empty on a real board
PYTHON=${PYTHON:-python3}
CUDA_ROOT=${CUDA_ROOT:-/usr/local/cuda}
VENV_DIR=${SHFAN_VENV:-$REPO_DIR/.venv}
PLUGIN_BUILD_DIR=$REPO_DIR/plugins/build
DRY_RUN=0
SM=""
WITH_PYCUDA=1
WITH_PLUGIN=1
WITH_ORT=1

usage() {
    cat <<EOF
Usage: jetson/install.sh [options]

Install shfan on an NVIDIA Jetson (JetPack 6.1/6.2 or 7.x).

Options:
  --venv DIR      virtual environment to create or reuse (default: $VENV_DIR)
  --sm N          GPU SM to build the plugin for (default: detected; Orin 87, Thor 110)
  --no-pycuda     skip pycuda (use cuda-python instead)
  --no-plugin     skip building the TensorRT plugin (plugins/build)
  --no-ort        skip onnxruntime (the CPU fallback and accuracy checks need it)
  --dry-run       check the board and print what would be done, change nothing
  -h, --help      show this help

Environment: CUDA_ROOT (default /usr/local/cuda), PYTHON (default python3).
EOF
}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command, or only print it under --dry-run.
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '[dry-run]'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"; VENV_DIR=$2; shift ;;
            --sm) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--sm needs a number such as 87 or 110"; SM=$2; shift ;;
            --no-pycuda) WITH_PYCUDA=0 ;;
            --no-plugin) WITH_PLUGIN=0 ;;
            --no-ort) WITH_ORT=0 ;;
            --dry-run) DRY_RUN=1 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
}

# True when version $1 >= version $2 (dotted numbers).
version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

# Version of an installed Debian package, empty when absent.
dpkg_version() {
    command -v dpkg-query >/dev/null 2>&1 || return 0
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true
}

# Leading dotted number of a version string: "10.3.0.30-1+cuda12.5" -> "10.3.0.30".
numeric_version() {
    sed -E 's/^[^0-9]*([0-9]+(\.[0-9]+)*).*/\1/' <<<"$1"
}

detect_l4t() {
    local release_file=$SYSROOT/etc/nv_tegra_release line
    [[ -r $release_file ]] || die "not a Jetson: $release_file not found. This installer is for JetPack 6.1+/7 boards; elsewhere use: pip install -e '.[ort]'"
    line=$(head -n 1 "$release_file")
    [[ $line =~ R([0-9]+)\ \(release\),\ REVISION:\ ([0-9]+)\.?([0-9]*) ]] \
        || die "cannot read the L4T release from '$line' ($release_file); reflash with JetPack 6.1+"
    L4T_MAJOR=${BASH_REMATCH[1]}
    L4T_MINOR=${BASH_REMATCH[2]}
    L4T_PATCH=${BASH_REMATCH[3]:-0}
    L4T="R$L4T_MAJOR.$L4T_MINOR.$L4T_PATCH"
    JETPACK=$(jetpack_for_l4t "$L4T_MAJOR" "$L4T_MINOR" "$L4T_PATCH")
    local from_dpkg
    from_dpkg=$(dpkg_version nvidia-jetpack)
    log "L4T $L4T -> JetPack $JETPACK${from_dpkg:+ (nvidia-jetpack $from_dpkg)}"
}

jetpack_for_l4t() {
    case "$1.$2.$3" in
        35.*) echo "5.x" ;;
        36.2.*|36.3.*) echo "6.0" ;;
        36.4.0|36.4.1|36.4.2) echo "6.1" ;;
        36.4.3) echo "6.2" ;;
        36.4.4) echo "6.2.1" ;;
        36.*) echo "6.2.x" ;;
        38.2.*) echo "7.0" ;;
        *) if [[ $1 -ge 38 ]]; then echo "7.x"; else echo "unknown (L4T R$1)"; fi ;;
    esac
}

require_supported_jetpack() {
    if [[ $L4T_MAJOR -lt 36 ]] || { [[ $L4T_MAJOR -eq 36 ]] && [[ $L4T_MINOR -lt 4 ]]; }; then
        die "JetPack $JETPACK (L4T $L4T) is not supported: shfan needs TensorRT >= 10.1; upgrade to JetPack 6.1+ (L4T R36.4+) with SDK Manager or the L4T apt upgrade"
    fi
}

# TensorRT's version from what is installed, whatever its packages are called (TensorRT 11 renamed
# them): any libnvinfer<N> package, else the libnvinfer.so.X.Y.Z file, else NvInferVersion.h.
tensorrt_version_installed() {
    local version="" lib header major minor patch
    if command -v dpkg-query >/dev/null 2>&1; then
        version=$(dpkg-query -W -f='${Package} ${Version}\n' 'libnvinfer[0-9]*' 2>/dev/null \
            | awk 'NF == 2 && $2 ~ /^[0-9]/ {print $2}' | sort -V | tail -n 1 || true)
    fi
    if [[ -z $version ]]; then
        version=$(for lib in "$SYSROOT"/usr/lib/{aarch64,x86_64}-linux-gnu/libnvinfer.so.[0-9]*; do
            if [[ -e $lib ]]; then printf '%s\n' "${lib##*/libnvinfer.so.}"; fi
        done | sort -V | tail -n 1)
    fi
    if [[ -z $version ]]; then
        for header in "$SYSROOT"/usr/include/{aarch64,x86_64}-linux-gnu/NvInferVersion.h; do
            [[ -r $header ]] || continue
            major=$(sed -nE 's/^#define (NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE) +([0-9]+).*/\2/p' "$header" | head -n 1)
            minor=$(sed -nE 's/^#define (NV_TENSORRT_MINOR|TRT_MINOR_ENTERPRISE) +([0-9]+).*/\2/p' "$header" | head -n 1)
            patch=$(sed -nE 's/^#define (NV_TENSORRT_PATCH|TRT_PATCH_ENTERPRISE) +([0-9]+).*/\2/p' "$header" | head -n 1)
            [[ -n $major ]] && version=$major.${minor:-0}.${patch:-0} && break
        done
    fi
    printf '%s' "$version"
}

detect_tensorrt() {
    TRT_VERSION=$(tensorrt_version_installed)
    [[ -n $TRT_VERSION ]] || TRT_VERSION=$(dpkg_version tensorrt)
    if [[ -z $TRT_VERSION ]]; then
        TRT_VERSION=$("$PYTHON" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)
    fi
    [[ -n $TRT_VERSION ]] || die "TensorRT not found (no libnvinfer package, library or header, no 'import tensorrt'); install it with: sudo apt install nvidia-jetpack"
    TRT_VERSION=$(numeric_version "$TRT_VERSION")
    local minimum=10.1
    [[ $L4T_MAJOR -ge 38 ]] && minimum=10.13
    version_ge "$TRT_VERSION" "$minimum" \
        || die "TensorRT $TRT_VERSION is too old for JetPack $JETPACK: shfan needs >= $minimum; sudo apt update && sudo apt install nvidia-jetpack"
    if [[ -z $(dpkg_version python3-libnvinfer) ]] \
        && ! "$PYTHON" -c 'import tensorrt' >/dev/null 2>&1; then
        die "TensorRT $TRT_VERSION has no Python bindings for $PYTHON; install them with: sudo apt install python3-libnvinfer"
    fi
    log "TensorRT $TRT_VERSION"
}

detect_cuda() {
    local nvcc=$CUDA_ROOT/bin/nvcc
    [[ -x $nvcc ]] || die "nvcc not found at $nvcc; install the CUDA toolkit (sudo apt install nvidia-jetpack) or set CUDA_ROOT"
    CUDA_VERSION=$("$nvcc" --version | sed -nE 's/.*release ([0-9]+\.[0-9]+).*/\1/p' | head -n 1)
    [[ -n $CUDA_VERSION ]] || die "cannot read the CUDA version from '$nvcc --version'; reinstall the CUDA toolkit"
    version_ge "$CUDA_VERSION" 12.6 \
        || die "CUDA $CUDA_VERSION is too old: shfan needs CUDA 12.6 (JetPack 6.1/6.2) or 13 (JetPack 7)"
    export PATH=$CUDA_ROOT/bin:$PATH  # pycuda's build looks for nvcc on PATH
    log "CUDA $CUDA_VERSION ($nvcc)"
}

detect_sm() {
    if [[ -z $SM ]] && command -v nvidia-smi >/dev/null 2>&1; then
        local cap
        cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)
        [[ $cap =~ ^\ *([0-9]+)\.([0-9]+) ]] && SM=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
    fi
    if [[ -z $SM ]]; then
        local model=""
        [[ -r $SYSROOT/proc/device-tree/model ]] && model=$(tr -d '\0' <"$SYSROOT/proc/device-tree/model")
        case $model in
            *Thor*) SM=110 ;;
            *Orin*) SM=87 ;;
            *) die "cannot tell the GPU's SM (model '${model:-unknown}'); pass --sm 87 (Orin) or --sm 110 (Thor)" ;;
        esac
    fi
    if [[ $SM -ge 100 ]] && ! version_ge "$CUDA_VERSION" 13.0; then
        die "sm_$SM needs CUDA 13 (JetPack 7); this board has CUDA $CUDA_VERSION"
    fi
    log "GPU sm_$SM"
}

require_tools() {
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 \
        || die "$PYTHON cannot create venvs; install it with: sudo apt install python3-venv python3-pip"
    if [[ $WITH_PLUGIN -eq 1 ]]; then
        command -v cmake >/dev/null 2>&1 || die "cmake not found; install it with: sudo apt install cmake build-essential"
        [[ -f $REPO_DIR/plugins/CMakeLists.txt ]] || die "plugins/CMakeLists.txt is missing from $REPO_DIR; update the checkout"
    fi
}

create_venv() {
    local cfg=$VENV_DIR/pyvenv.cfg
    if [[ -f $cfg ]]; then
        grep -Eq '^include-system-site-packages *= *true' "$cfg" \
            || die "$VENV_DIR was made without --system-site-packages, so it hides JetPack's TensorRT and OpenCV; remove it or pass --venv DIR"
        log "reusing venv $VENV_DIR"
    else
        log "creating venv $VENV_DIR (--system-site-packages)"
        run "$PYTHON" -m venv --system-site-packages "$VENV_DIR"
    fi
    VENV_PY=$VENV_DIR/bin/python
}

# True when the venv's Python imports the module (always false under --dry-run before the venv).
venv_has() {
    [[ -x $VENV_PY ]] && "$VENV_PY" -c "import $1" >/dev/null 2>&1
}

install_shfan() {
    log "installing shfan (editable, --no-deps: pip must not replace JetPack's OpenCV or TensorRT)"
    run "$VENV_PY" -m pip install --no-deps -e "$REPO_DIR"
    local missing=() spec module
    # module:requirement; numpy stays < 2 because JetPack's cv2 is built against numpy 1.x.
    local specs=("numpy:numpy>=1.24,<2" "rich:rich>=13" "tqdm:tqdm>=4.60")
    [[ $WITH_ORT -eq 1 ]] && specs+=("onnxruntime:onnxruntime>=1.17")
    for spec in "${specs[@]}"; do
        module=${spec%%:*}
        venv_has "$module" || missing+=("${spec#*:}")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing missing pure-Python dependencies: ${missing[*]}"
        [[ " ${missing[*]} " == *" numpy"* ]] || missing+=("numpy<2")  # keep apt's numpy 1.x
        run "$VENV_PY" -m pip install "${missing[@]}"
    fi
}

# Warn when a pip wheel in the venv hides the apt build (e.g. opencv-python without GStreamer).
check_not_shadowed() {
    local module=$1 fix=$2 location
    [[ $DRY_RUN -eq 1 ]] && return 0
    location=$("$VENV_PY" -c "import $module; print($module.__file__)" 2>/dev/null || true)
    if [[ -z $location ]]; then
        warn "'import $module' fails in $VENV_DIR; $fix"
    elif [[ $location == "$VENV_DIR"/* ]]; then
        warn "$module comes from pip ($location) and hides JetPack's; $VENV_PY -m pip uninstall -y $3"
    fi
}

install_pycuda() {
    [[ $WITH_PYCUDA -eq 1 ]] || return 0
    if venv_has pycuda; then
        log "pycuda already installed"
        return 0
    fi
    local include
    include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [[ -f $include/Python.h ]] || die "Python headers missing ($include/Python.h) for building pycuda; install them with: sudo apt install python3-dev"
    log "building pycuda against CUDA $CUDA_VERSION"
    run env CUDA_ROOT="$CUDA_ROOT" "$VENV_PY" -m pip install pycuda
}

build_plugin() {
    [[ $WITH_PLUGIN -eq 1 ]] || return 0
    log "building the TensorRT plugin for sm_$SM into $PLUGIN_BUILD_DIR"
    run cmake -S "$REPO_DIR/plugins" -B "$PLUGIN_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES="$SM" -DCMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc"
    run cmake --build "$PLUGIN_BUILD_DIR" -j "$(nproc)"
}

print_next_steps() {
    cat <<EOF

Done$([[ $DRY_RUN -eq 1 ]] && echo " (dry run: nothing was changed)"). Next:
  source $VENV_DIR/bin/activate
  shfan-doctor                                  # what this board can run
  shfan-doctor --selftest                       # the TensorRT plugin on this GPU, PASS/FAIL per check
  shfan-build --precision int8 ...             # build the engine for this board (see shfan-build --help)
  shfan-run --camera 0                          # live landmarks from the first camera
Power: sudo nvpmodel -m 0 && sudo jetson_clocks (see jetson/README.md).
EOF
}

main() {
    parse_args "$@"
    detect_l4t
    require_supported_jetpack
    detect_tensorrt
    detect_cuda
    detect_sm
    require_tools
    create_venv
    install_shfan
    check_not_shadowed cv2 "install JetPack's OpenCV: sudo apt install nvidia-opencv" \
        "opencv-python opencv-python-headless"
    check_not_shadowed tensorrt "install the bindings: sudo apt install python3-libnvinfer" tensorrt
    install_pycuda
    build_plugin
    print_next_steps
}

main "$@"
