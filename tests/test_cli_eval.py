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


class _Closing:
    """A backend stand-in that records close(); 5 landmarks never match a 68-point dataset."""

    name = "stand-in"

    def __init__(self, fail_infer=False):
        from shfan.runtime.backend import ModelInfo

        self.info = ModelInfo(input_size=64, landmarks=68 if fail_infer else 5, heatmap_size=16)
        self.fail_infer, self.closed = fail_infer, 0

    def infer(self, crops):
        from shfan.errors import BackendError

        raise BackendError("stand-in inference failure")

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("fail_infer, message", [(False, "predicts 5 landmarks"), (True, "stand-in inference")])
def test_backend_closed_on_every_path(afw_dir, monkeypatch, capsys, fail_infer, message):
    """A TensorRT backend left open aborts the interpreter at exit (pycuda); errors close it too."""
    from shfan.cli import eval as cli

    backend = _Closing(fail_infer)
    monkeypatch.setattr(cli, "open_model", lambda *a, **k: backend)
    with pytest.raises(SystemExit):
        cli.main(["--data", str(afw_dir), "--limit", "2", "--model", "x.onnx"])
    assert backend.closed == 1 and message in capsys.readouterr().err
