"""Shared fixtures: the committed decoder vectors and the research data in ../shared."""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
SHARED = ROOT.parent / "shared"
FACES68 = SHARED / "data" / "faces68"
YUNET = SHARED / "models" / "yunet_s_640_640.onnx"


def load_vectors():
    """[(name, heatmaps, points, scores, window, temperature)] from the committed vectors."""
    data = np.load(VECTORS / "subpixel_decode.npz")
    meta = json.loads((VECTORS / "subpixel_decode.json").read_text())
    return [(c["name"], data[f"{c['name']}/heatmaps"], data[f"{c['name']}/points"],
             data[f"{c['name']}/scores"], c["window"], c["temperature"]) for c in meta["cases"]]


@pytest.fixture(scope="session")
def vectors():
    return load_vectors()


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
