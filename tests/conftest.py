"""Shared fixtures: the committed decoder vectors, the research data in ../shared, tiny random
models (a checkpoint, and its ONNX export written by the builder's own exporter), the YuNet
detector, the helpers the hostile-input (#15) tests share, and the checks more than one module
makes (error tables, import cost, consistency loss). Test modules take these from here, never
from each other."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
from shfan.selftest import VECTORS  # noqa: E402  (package data: shfan/vectors/, the one copy)
SHARED = ROOT.parent / "shared"
FACES68 = SHARED / "data" / "faces68"
YUNET = SHARED / "models" / "yunet_s_640_640.onnx"
VIDEOS = SHARED / "data" / "videos"


@pytest.fixture(autouse=True)
def shfan_logger_restored():
    """Each test starts and ends with the 'shfan' logger as it was: a CLI's parse_args sets its
    level and adds its stderr handler process-wide (-v in one test would leak into the next)."""
    import logging

    logger = logging.getLogger("shfan")
    saved = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def load_vectors():
    """[(name, heatmaps, points, scores, window, temperature)] from the committed vectors."""
    data = np.load(VECTORS / "subpixel_decode.npz")
    meta = json.loads((VECTORS / "subpixel_decode.json").read_text())
    return [(c["name"], data[f"{c['name']}/heatmaps"], data[f"{c['name']}/points"],
             data[f"{c['name']}/scores"], c["window"], c["temperature"]) for c in meta["cases"]]


@pytest.fixture(scope="session")
def vectors():
    return load_vectors()


# ---------------------------------------------------------------- tiny models and the detector


def save_tiny_checkpoint(path, stacks: int = 1, width: int = 16, input_size: int = 64, seed: int = 0):
    """A random-weight FAN checkpoint: exercises every code path, knows no faces."""
    torch = pytest.importorskip("torch")
    from shfan.model import FAN, ModelConfig, save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(FAN(ModelConfig(stacks=stacks, width=width, input_size=input_size)), path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """1 stack x 16 channels at 64 px (random weights)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny64_checkpoint(tmp_path_factory):
    """1 stack x 64 channels at 64 px, seed 0 (wider than tiny_checkpoint: test_builder's numbers
    were measured on this one)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny64") / "tiny.pt", stacks=1, width=64, input_size=64)


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny64_checkpoint, helen_dir):
    """One real shfan-build of every precision (fp32, fp16, int8; --decoder onnx), shared by the
    builder and TensorRT-parser tests: a single int8 quantization for the whole suite."""
    pytest.importorskip("onnx")
    pytest.importorskip("modelopt.onnx.quantization")
    from shfan.cli.build import main

    out = tmp_path_factory.mktemp("builds") / "best"
    main(["--weights", str(tiny64_checkpoint), "--precision", "best", "--calib-data", str(helen_dir),
          "--max-calib", "40", "--max-nme-drift", "1000", "--out", str(out)])
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """The same tiny FAN as a heatmap-output ONNX with shfan metadata, made by the builder's
    exporter (builder.export.export_onnx), so tests run exactly what shfan-build writes."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from shfan.builder.export import export_onnx
    from shfan.model import FAN, ModelConfig

    torch.manual_seed(0)
    model = FAN(ModelConfig(stacks=1, width=16, landmarks=68, input_size=64)).eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(export_onnx(model, simplify=False), str(path))
    return path


@pytest.fixture(scope="session")
def default_model():
    """The shipped default ONNX model, for tests that run it with YuNet on the shared videos."""
    from shfan.weights import DEFAULT_ONNX

    if not VIDEOS.is_dir() or not YUNET.is_file():
        pytest.skip("../shared/data/videos or the shared YuNet model not present")
    if not DEFAULT_ONNX.is_file():
        pytest.skip("default model not built")
    return DEFAULT_ONNX


@pytest.fixture(scope="session")
def yunet_path():
    if not YUNET.is_file():
        pytest.skip("../shared/models/yunet_s_640_640.onnx not present")
    return YUNET


@pytest.fixture(scope="module")
def yunet(yunet_path):
    """A YuNet detector (one per module: it holds an OpenCV net)."""
    from shfan.runtime.detector import YuNetDetector

    return YuNetDetector(yunet_path)


def fake_result(index=3, n_faces=1):
    """A pipeline Result with `n_faces` made-up faces on a blank 160 x 120 frame (output tests)."""
    from shfan.runtime.pipeline import Face, Result

    pts = np.stack([np.linspace(40, 90, 68), np.linspace(30, 80, 68)], 1).astype(np.float32)
    faces = [Face(np.array([40, 30, 90, 80.0]), pts + 0.25 * i, np.full(68, 0.7, np.float32), 0.7, i, detected=i == 0)
             for i in range(n_faces)]
    image = np.zeros((120, 160, 3), np.uint8)
    return Result(index, index / 30, faces, {"capture": 1.0, "detect": 0.0, "preprocess": 0.5, "infer": 10.0,
                                             "postprocess": 0.2, "total": 10.7}, image)


@pytest.fixture(scope="session")
def afw_dir():
    if not (FACES68 / "afw").is_dir():
        pytest.skip("../shared/data/faces68/afw not present")
    return FACES68 / "afw"


@pytest.fixture(scope="session")
def helen_dir():
    if not (FACES68 / "helen_train").is_dir():
        pytest.skip("../shared/data/faces68/helen_train not present")
    return FACES68 / "helen_train"


def read_cache_as_modelopt_does(path) -> dict[str, float]:
    """tensor -> amax, through the reader ModelOpt uses for calibration_cache_path."""
    calib_utils = pytest.importorskip("modelopt.onnx.quantization.calib_utils")
    scales = calib_utils.import_scales_from_calib_cache(str(path))
    return {name.removesuffix("_scale"): scale * 127.0 for name, scale in scales.items()}


# ---------------------------------------------------------------- hostile CLI probes (#15)


def run_main(main, argv):
    """(exit code, stdout, stderr) of a CLI's main(argv) run in this process. Any exception other
    than SystemExit escapes: that is the traceback a user would have seen."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code or 0, out.getvalue(), err.getvalue()


def hostile_cases(table):
    """Parametrize a test over a HOSTILE table of (extra args, exit code, words in the one line)."""
    return pytest.mark.parametrize("extra, code, words", table, ids=[" ".join(h[0]) for h in table])


def expand(args, places) -> list[str]:
    """Each arg as a string, with "@name" replaced by places[name] (the tables name paths so)."""
    names = sorted(places, key=len, reverse=True)  # "@tmpdir" before "@tmp"
    out = []
    for a in map(str, args):
        for name in names:
            a = a.replace(f"@{name}", str(places[name]))
        out.append(a)
    return out


def assert_refused(main, argv, code, words, folder, ignore=()) -> str:
    """main(argv) keeps the #15 contract (see assert_one_line_error) and leaves nothing new under
    `folder` but the relative paths in `ignore`; its stdout."""
    before = files_under(folder)
    got, out, err = run_main(main, argv)
    assert_one_line_error(got, err, code, words)
    assert files_under(folder) - set(ignore) == before
    return out


def files_under(folder) -> set:
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def assert_one_line_error(code, err, expected_code, words):
    """The #15 contract: the expected exit code, one 'error: ' line naming the problem, no traceback."""
    assert code == expected_code, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]  # progress lines (shfan-build) may come first
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    for w in words if isinstance(words, (list, tuple)) else [words]:
        assert w in errors[0], (w, errors[0])


def assert_sigterm_is_one_line_and_130(main, argv, monkeypatch, module, name):
    """Row 11 of #29: `module.name`, once the tool calls it, gets SIGTERM; the tool must end as
    after Ctrl-C (common.entry): exit 130 and one 'interrupted' line, no traceback."""
    import signal
    import time

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(module, name, terminated)
    code, _, err = run_main(main, argv)
    assert_one_line_error(code, err, 130, "interrupted")


def randomize_batchnorm(model, affine: bool = False):
    """BatchNorm statistics (and with `affine` its scale and shift) that are not the identity, so
    folding or rewriting them is tested, not skipped over. Seed torch first."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
    return model


def fifo_with_reader(path):
    """A FIFO at `path` and a started thread that reads it whole: (thread, list it appends the bytes to)."""
    import threading

    os.mkfifo(path)
    got = []
    reader = threading.Thread(target=lambda: got.append(Path(path).read_bytes()))
    reader.start()
    return reader, got


def assert_each_raises(error, call, cases):
    """call(arg) raises `error` with a message matching `pattern`, for each (arg, pattern)."""
    for arg, pattern in cases:
        with pytest.raises(error, match=pattern):
            call(arg)


def folder_with(folder, files: dict):
    """`folder`, made, holding each name -> text (str) or bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    for name, data in files.items():
        if isinstance(data, bytes):
            (folder / name).write_bytes(data)
        else:
            (folder / name).write_text(data)
    return folder


def heavy_modules_after(code, heavy) -> list[str]:
    """Which of the `heavy` modules a fresh interpreter has imported after running `code` (the
    import-cost tests: the light paths must not pull in torch, TensorRT, ...)."""
    probe = f"{code}; import json, sys; print(json.dumps(sorted(set({tuple(heavy)!r}) & set(sys.modules))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def consistency_losses(batch, cfg) -> tuple[float, float]:
    """trainer.consistency_loss of a siamese batch with perfect heatmaps of both views, and with
    view 2 taken from the wrong faces (the batch reversed)."""
    from shfan import codec_torch
    from shfan.train import consistency_loss

    h1 = codec_torch.encode(batch["points1"], cfg.heatmap_size, cfg.sigma)
    h2 = codec_torch.encode(batch["points2"], cfg.heatmap_size, cfg.sigma)
    scale = cfg.heatmap_size / cfg.input_size
    return (consistency_loss(h1, h2, batch, cfg, scale).item(),
            consistency_loss(h1, h2.flip(0), batch, cfg, scale).item())


def small_300w(src, dst, n, pts_edit=None):
    """A 300-W folder of the first n faces of `src` (tests only; in tmp); pts_edit(i, text) may
    damage the i-th annotation."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for i, pts in enumerate(sorted(Path(src).glob("*.pts"))[:n]):
        image = next(pts.with_suffix(s) for s in (".jpg", ".png") if pts.with_suffix(s).is_file())
        (dst / image.name).symlink_to(image)
        text = pts.read_text()
        (dst / pts.name).write_text(pts_edit(i, text) if pts_edit else text)
    return dst


@pytest.fixture
def hostile_place(tmp_path, readonly_dir):
    """The places every HOSTILE table names: @tmp (holding a_file), @ro (read-only), @yunet."""
    (tmp_path / "a_file").write_text("x")
    return {"tmp": tmp_path, "ro": readonly_dir, "yunet": YUNET}


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody can create files in (a chmod'ed one, or /sys where root ignores modes)."""
    from shfan.atomic import can_create_in

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if can_create_in(ro):  # root
        ro.chmod(0o755)
        ro = Path("/sys")
        if can_create_in(ro):
            pytest.skip("no read-only folder available here")
    return ro


# ---------------------------------------------------------------- hostile names and special files (#29)

BAD = os.fsdecode(b"\xff")  # a byte that is not UTF-8: Python keeps it as a lone surrogate


def bad_name(stem: str, suffix: str = "") -> str:
    """A file name that is not valid UTF-8 (OpenCV crashed on such names)."""
    return f"{stem}{BAD}{suffix}"


def run_cli(module: str, args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m shfan.cli.<module> args` in a subprocess: where a regression would be a crash
    (SIGSEGV) that must fail this test, not kill the test session."""
    argv = [sys.executable, "-m", f"shfan.cli.{module}", *map(str, args)]
    return subprocess.run(argv, capture_output=True, timeout=timeout, text=True, errors="backslashreplace")


def null_device(path) -> Path:
    """A character device like /dev/null at `path` (root only: mknod), else the test is skipped."""
    path = Path(path)
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    return path


def unix_socket(path) -> Path:
    """A Unix socket file at `path` (a special file nothing may be written over)."""
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return Path(path)


def is_char_device(path) -> bool:
    return stat.S_ISCHR(os.stat(path).st_mode)
