"""scripts/device_train.sh, the prepared lent-GPU session, run whole on the CPU with TINY=1 (a toy
model, seconds of training): every run it makes trains, the step-time table has a row per run
with parts that add up, and the fp16 weights come back in pieces that unpack."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import small_300w

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import step_time_table  # noqa: E402


def test_step_time_breakdown_weighs_epochs_by_their_steps():
    history = [{"steps": 10, "ms_per_step": {"data": 10.0, "forward": 20.0, "backward": 30.0}},
               {"steps": 30, "ms_per_step": {"data": 2.0, "forward": 20.0, "backward": 30.0}}, {"epoch": 3}]
    ms = step_time_table.breakdown(history)
    assert ms["steps"] == 40 and ms["data"] == pytest.approx(4.0) and ms["step"] == pytest.approx(54.0)
    assert step_time_table.breakdown([{"epoch": 1}]) == {}


@pytest.mark.slow
def test_tiny_device_session_trains_reports_and_ships(helen_dir, afw_dir, tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "faces68"
    for name, src, n in (("helen_train", helen_dir, 12), ("lfpw_train", helen_dir, 12), ("afw", afw_dir, 4)):
        small_300w(src, data / name, n)
    out, runs = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    env = {**os.environ, "TINY": "1", "DATA": str(data), "RUNS": str(runs), "OUT": str(out), "PYTHON": sys.executable,
           "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "device_train.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed" not in done.stdout, done.stdout
    table = (runs / "step_times.md").read_text().splitlines()
    names = ["accurate", "probe_accurate_off", "probe_accurate_on", "probe_compact_off", "probe_compact_on"]
    assert [row.split("|")[1].strip() for row in table[2:]] == names
    for row in table[2:]:
        cells = [c.strip() for c in row.split("|")[2:-1]]
        data_ms, fwd, bwd, step = map(float, cells[1:5])
        assert int(cells[0]) > 0 and step == pytest.approx(data_ms + fwd + bwd, abs=0.2)
    pieces = sorted(out.glob("ship.tgz.*"))
    assert pieces
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in pieces)), mode="r:gz") as tar:
        shipped = tar.getnames()
    assert any(n.endswith("accurate/shipped/shfan_accurate.pt") for n in shipped)
    assert not any(n.endswith("last.pt") or n.endswith("accurate/best.pt") for n in shipped)
    import torch

    weights = torch.load(runs / "accurate" / "shipped" / "shfan_accurate.pt", map_location="cpu", weights_only=False)
    assert weights["config"]["stacks"] == 1 and "optimizer" not in weights
    assert all(v.dtype == torch.float16 for v in weights["state_dict"].values() if v.is_floating_point())
    assert json.loads((runs / "accurate" / "history.json").read_text())
