"""scripts/campaign.py: one schedule across sessions (each a segment on a new machine)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import small_300w

torch = pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "campaign.py"
TINY = ["--stacks", "1", "--width", "16", "--input-size", "64", "--batch-size", "4", "--threads", "1",
        "--val-every", "1", "--lr", "2e-3"]


def _campaign(root, *args):
    r = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *map(str, args)], capture_output=True,
                       text=True)
    return r


def test_a_campaign_goes_on_from_its_committed_state_on_a_new_machine(helen_dir, tmp_path):
    faces = small_300w(helen_dir, tmp_path / "faces", 16)  # 14 training faces + 16 made: 7 steps an epoch
    made = tmp_path / "made"  # stands for teacher labels: remade on each machine, never committed
    recipe = f"mkdir -p {made} && cp -rs {faces}/. {made}"
    r = _campaign(tmp_path, "start", "tiny", "--schedule-steps", 6, "--prepare", f"made={recipe}", "--",
                  "--data", faces, "--extra-data", made, *TINY)
    assert r.returncode == 0, r.stderr
    r = _campaign(tmp_path, "run", "tiny", "--minutes", 1e-4)  # stops after its first step
    assert r.returncode == 0, r.stderr
    assert "nothing to resume" in r.stderr and "a new run starts" in r.stderr
    state = torch.load(tmp_path / "campaign" / "tiny.state.pt", weights_only=False)
    moments = next(iter(state["optimizer"]["state"].values()))
    assert moments["exp_avg_sq"].dtype == torch.bfloat16 and "exp_avg" not in moments
    assert state["state_dict"]["l0.weight"].dtype == torch.float32
    assert (state["epoch"], state["batch_in_epoch"], state["schedule_total"]) == (0, 1, 6)

    assert "preparing made" in r.stdout and (made / "labels.json").exists() is False and any(made.iterdir())
    shutil.rmtree(tmp_path / "runs")  # the next session: a new machine, only what was committed
    shutil.rmtree(made)
    r = _campaign(tmp_path, "run", "tiny", "--minutes", 100)
    assert r.returncode == 0, r.stderr
    assert "at epoch 0, batch 1 (step 1 of 6)" in r.stderr and "preparing made" in r.stdout
    last = torch.load(tmp_path / "runs" / "campaign" / "tiny" / "last.pt", weights_only=False)
    assert last["scheduler"]["last_epoch"] == 6 and last["epoch"] == 1  # the horizon ends inside epoch 1 (7 steps)
    plan = json.loads((tmp_path / "campaign" / "tiny.json").read_text())
    assert [s["steps"] for s in plan["segments"]] == [[0, 1], [1, 6]]
    assert all(s["of"] == 6 and "val_nme_inter_ocular" in s["validation"] for s in plan["segments"])
    _campaign(tmp_path, "run", "tiny", "--minutes", 100)  # the horizon is reached: nothing to train
    plan = json.loads((tmp_path / "campaign" / "tiny.json").read_text())
    assert [s["steps"] for s in plan["segments"]] == [[0, 1], [1, 6]]  # a run without a step adds no line


def test_start_refuses_the_options_the_campaign_sets(tmp_path):
    r = _campaign(tmp_path, "start", "x", "--schedule-steps", 6, "--", "--data", "d", "--resume")
    assert r.returncode != 0 and "--resume" in r.stderr and not (tmp_path / "campaign").exists()
    r = _campaign(tmp_path, "start", "x", "--schedule-steps", 6, "--prepare", "no-equals-sign", "--", "--data", "d")
    assert r.returncode != 0 and "PATH=COMMAND" in r.stderr
    r = _campaign(tmp_path, "run", "nope", "--minutes", 1)
    assert r.returncode != 0 and "no campaign 'nope'" in r.stderr


def _load_campaign_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("campaign_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_last(step: int) -> dict:
    """The parts of shfan-train's last.pt that the ledger reads."""
    return {"optimizer": {"state": {0: {"exp_avg": torch.ones(3), "exp_avg_sq": torch.ones(3)}}},
            "scheduler": {"last_epoch": step}, "schedule_total": 10, "epoch": 0, "batch_in_epoch": step,
            "history": [{"val_nme_inter_ocular": 5.0 - step / 10}]}


def test_a_pack_while_the_run_goes_on_keeps_its_line_and_the_run_records_only_the_rest(tmp_path, monkeypatch):
    campaign = _load_campaign_module()
    campaign.set_root(tmp_path)
    campaign.write_plan("x", {"name": "x", "schedule_steps": 10, "init": None, "prepare": [], "train_args": [],
                              "segments": []})
    last = tmp_path / "runs" / "campaign" / "x" / "last.pt"
    last.parent.mkdir(parents=True)
    clock = iter([0.0, 60.0 * 50])  # the run takes 50 minutes

    def trainer(cmd, cwd):  # shfan-train: step 4 by the mid-run pack (20 min in), then step 9
        torch.save(_fake_last(4), last)
        campaign.main(["--root", str(tmp_path), "pack", "x", "--minutes", "20"])
        torch.save(_fake_last(9), last)
        return 0

    monkeypatch.setattr(campaign.subprocess, "call", trainer)
    monkeypatch.setattr(campaign, "time", SimpleNamespace(time=lambda: next(clock)))
    campaign.main(["--root", str(tmp_path), "run", "x", "--minutes", "50"])
    plan = json.loads((tmp_path / "campaign" / "x.json").read_text())
    assert [(s["steps"], s["minutes"]) for s in plan["segments"]] == [([0, 4], 20.0), ([4, 9], 30.0)]
    assert plan["segments"][1]["validation"]["val_nme_inter_ocular"] == 4.1
    machine = plan["segments"][1]["machine"]  # step times differ 5x between machines: the ledger says which
    assert machine["s_per_step"] == 360.0 and machine["arithmetic"] in ("fp32", "bf16") and machine["device"]
    assert campaign.step_of(torch.load(tmp_path / "campaign" / "x.state.pt", weights_only=False)) == 9
