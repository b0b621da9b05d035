"""shfan-eval end to end on real AFW faces, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from shfan import model as fan


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.pt"
    fan.save_checkpoint(fan.FAN(fan.ModelConfig(stacks=1, width=32, input_size=64)), path)
    return path


def run_eval(*args):
    return subprocess.run([sys.executable, "-m", "shfan.cli.eval", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_json_report_fields(afw_dir, tiny_checkpoint, tmp_path):
    r = run_eval("--data", afw_dir, "--format", "300w", "--box", "gt", "--model", tiny_checkpoint,
                 "--limit", "10", "--json", "--plot", tmp_path / "ced.png")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for key in ("faces", "nme_inter_ocular", "nme_box", "auc_inter_ocular_10", "fr_inter_ocular_10",
                "decoder", "backend"):
        assert key in report
    assert report["faces"] == 10 and report["backend"] == "pytorch" and report["decoder"] == "subpixel"
    assert (tmp_path / "ced.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent"], "no such dataset folder"),
    (["--model", "/nonexistent.pt"], "no such model"),
])
def test_errors_are_one_line(afw_dir, tiny_checkpoint, args, message):
    base = {"--data": str(afw_dir), "--model": str(tiny_checkpoint)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    r = run_eval(*[x for kv in base.items() for x in kv], "--limit", "2")
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
