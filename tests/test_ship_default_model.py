"""scripts/ship_default_model.py: notes are read before anything is written into the package."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from shfan import model as fan  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_default_model.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    m = fan.FAN(fan.ModelConfig(stacks=1, width=16, input_size=64))
    fan.save_checkpoint(m, tmp_path / "tiny.pt", epoch=3, val_nme=4.5)
    return tmp_path / "tiny.pt"


@pytest.mark.parametrize("notes, message", [("not json", "--notes is not JSON"),
                                             ("[1, 2]", "must be a JSON object")])
def test_bad_notes_are_one_line_and_leave_nothing(tmp_path, checkpoint, notes, message):
    out = tmp_path / "weights"
    r = _run(checkpoint, "--to", out, "--no-onnx", "--notes", notes)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_notes_file_is_merged_over_the_checkpoint_fields(tmp_path, checkpoint):
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"recipe": "a tiny run", "epoch": 9}))
    out = tmp_path / "weights"
    r = _run(checkpoint, "--to", out, "--no-onnx", "--notes", notes)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "default_model.json").read_text())
    assert info["recipe"] == "a tiny run" and info["epoch"] == 9  # the notes win
    assert info["val_nme_inter_ocular"] == 4.5 and info["config"]["width"] == 16
    assert sorted(p.name for p in out.iterdir()) == ["default_model.json", "shfan_default.pt"]  # no .tmp left


def test_a_retuned_checkpoint_reports_its_chosen_decoders_validation_nme(tmp_path):
    torch.manual_seed(0)
    m = fan.FAN(fan.ModelConfig(stacks=1, width=16, input_size=64, window=5, temperature=6.0))
    table = {"subpixel/w5/t6.0": 3.25, "subpixel/w7/t9.0": 3.5, "fan/w1/t0.0": 4.0}
    fan.save_checkpoint(m, tmp_path / "tuned.pt", epoch=13, decoder_tuning=table)  # no val_nme: not the trainer's best.pt
    r = _run(tmp_path / "tuned.pt", "--to", tmp_path / "weights", "--no-onnx")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "weights" / "default_model.json").read_text())
    assert info["epoch"] == 13 and info["val_nme_inter_ocular"] == 3.25
