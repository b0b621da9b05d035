"""scripts/average_checkpoints.py: the mean of the weights, one architecture only."""

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from shfan import model as fan  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_checkpoints.py"


def _tiny(seed, width=16, **config):
    torch.manual_seed(seed)
    m = fan.FAN(fan.ModelConfig(stacks=1, width=width, input_size=64, **config))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
        for b in m.buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 2.0)
    return m


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_average_is_the_mean_of_every_float_tensor(tmp_path):
    a, b, c = _tiny(1), _tiny(2, temperature=3.0), _tiny(3)  # the decoder settings may differ
    for name, m in zip("abc", (a, b, c)):
        fan.save_checkpoint(m, tmp_path / f"{name}.pt")
    r = _run(tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt", "--out", tmp_path / "soup.pt")
    assert r.returncode == 0, r.stderr
    soup = fan.load_checkpoint(tmp_path / "soup.pt").state_dict()
    states = [m.state_dict() for m in (a, b, c)]
    for key, value in soup.items():
        if value.is_floating_point():
            expected = (states[0][key] + states[1][key] + states[2][key]) / 3
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(soup["conv1.weight"], states[0]["conv1.weight"])


def test_other_architectures_are_refused(tmp_path):
    fan.save_checkpoint(_tiny(1), tmp_path / "a.pt")
    fan.save_checkpoint(_tiny(2, width=32), tmp_path / "b.pt")
    r = _run(tmp_path / "a.pt", tmp_path / "b.pt", "--out", tmp_path / "soup.pt")
    assert r.returncode != 0 and "only one architecture averages" in r.stderr
    assert not (tmp_path / "soup.pt").exists()


def test_one_checkpoint_is_refused_without_data(tmp_path):
    fan.save_checkpoint(_tiny(1), tmp_path / "a.pt")
    r = _run(tmp_path / "a.pt", "--out", tmp_path / "out.pt")
    assert r.returncode != 0 and "one with --data to re-tune its decoder" in r.stderr
    assert not (tmp_path / "out.pt").exists()


def test_one_checkpoint_with_data_keeps_its_weights_and_retunes_the_decoder(tmp_path, helen_dir):
    torch.manual_seed(1)  # default init: finite heatmaps, so every decoder setting has a comparable NME
    m = fan.FAN(fan.ModelConfig(stacks=1, width=16, input_size=64, window=5, temperature=3.0))
    fan.save_checkpoint(m, tmp_path / "a.pt", epoch=7)
    r = _run(tmp_path / "a.pt", "--out", tmp_path / "tuned.pt", "--data", helen_dir)
    assert r.returncode == 0, r.stderr
    assert "decoder tuned on 87 validation faces" in r.stdout
    saved = torch.load(tmp_path / "tuned.pt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 7  # still that epoch's weights
    assert len(saved["decoder_tuning"]) == 3 * 6 + 2  # every window x tau, plus fan and argmax
    tuned = fan.load_checkpoint(tmp_path / "tuned.pt")
    best = min((v, k) for k, v in saved["decoder_tuning"].items() if k.startswith("subpixel"))[1]
    assert best == f"subpixel/w{tuned.config.window}/t{tuned.config.temperature}" != "subpixel/w5/t3"
    for key, value in tuned.state_dict().items():
        torch.testing.assert_close(value, m.state_dict()[key])
