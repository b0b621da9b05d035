"""benchmarks/paired_validation.py's statistics: the capped mean is the AUC@10 the field reports,
and the paired interval brackets a known shift."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from shfan import metrics

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _paired():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling validation.py
    spec = importlib.util.spec_from_file_location("paired_validation", BENCH / "paired_validation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_capped_mean_is_one_minus_auc10():
    pv = _paired()
    nme = np.random.default_rng(0).gamma(2.0, 2.5, 500)  # ~8 % of faces over 10
    assert (nme > 10).any()
    capped_mean = pv.capped(nme).mean()
    np.testing.assert_allclose(capped_mean, 10 * (1 - metrics.auc(nme, 10.0)), atol=0.01)
    # a failed face failing worse moves the plain mean, not the capped one
    worse = nme.copy()
    worse[np.argmax(nme)] += 30
    assert worse.mean() - nme.mean() > 0.05 and pv.capped(worse).mean() == capped_mean


def test_paired_interval_brackets_a_shift():
    pv = _paired()
    rng = np.random.default_rng(1)
    diff = -0.05 + 0.02 * rng.standard_normal(100)
    lo, hi = pv.paired_interval(diff)
    assert lo < -0.05 < hi and hi < 0
