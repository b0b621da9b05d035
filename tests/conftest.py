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
