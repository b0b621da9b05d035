"""shfan-train under hostile inputs (#15): exit 1 or 2, one line, no traceback, and a refused
run leaves no run folder behind."""

import pytest

from conftest import assert_refused, assert_sigterm_is_one_line_and_130, expand, hostile_cases, small_300w

torch = pytest.importorskip("torch")

TINY = ["--stacks", "1", "--width", "16", "--input-size", "64", "--threads", "1", "--no-tune"]


HOSTILE = [  # extra args, exit code, words in the one line
    (["--epochs", "0"], 2, "--epochs"),
    (["--epochs", "-1"], 2, "--epochs"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--batch-size", "-4"], 2, "--batch-size"),
    (["--val-fraction", "1.0"], 2, "--val-fraction"),
    (["--val-fraction", "0"], 2, "--val-fraction"),
    (["--threads", "0"], 2, "--threads"),
    (["--val-every", "0"], 2, "--val-every"),
    (["--lr", "nan"], 2, "--lr"),
    (["--schedule-steps", "100", "--time-budget", "5"], 2, ["--schedule-steps", "--segment"]),
    (["--segment", "0"], 2, "--segment"),
    (["--out", "@tmp/a_file"], 2, "is a file"),
    (["--out", "@ro/run"], 2, "cannot write"),
    (["--data", "@tmp/no_such"], 2, "no such file"),
    (["--format", "cofw68"], 2, "--format"),
    (["--batch-size", "8"], 1, "fewer than one batch"),  # 5 training faces: "fine-tune on my 6 faces"
    (["--batch-size", "2", "--resume", "--out", "@tmp/truncated"], 1, ["last.pt", "damaged"]),
    (["--batch-size", "2", "--resume", "--out", "@tmp/other_arch"], 1, ["another model", "stacks 2", "stacks 1"]),
    # hostile pass 2 (#29)
    (["--data", "@tmp/one_face", "--batch-size", "4"], 1, ["one_face", "1 face", "at least 2"]),  # row 5
    (["--out", "@tmp/" + "r" * 300], 2, ["--out", "too long"]),  # row 7
]


@pytest.fixture
def place(helen_dir, hostile_place):
    from shfan import model as fan

    tmp_path = hostile_place["tmp"]
    small_300w(helen_dir, tmp_path / "faces", 6)
    small_300w(helen_dir, tmp_path / "one_face", 1)
    for name in ("truncated", "other_arch"):
        (tmp_path / name).mkdir()
    (tmp_path / "truncated" / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    torch.manual_seed(0)
    fan.save_checkpoint(fan.FAN(fan.ModelConfig(stacks=2, width=32, input_size=64)), tmp_path / "other_arch" / "last.pt",
                        optimizer={}, scheduler={}, epoch=1, best_nme=9.0, history=[])
    return hostile_place


@hostile_cases(HOSTILE)
def test_hostile_inputs(place, extra, code, words):
    from shfan.cli.train import main

    argv = ["--data", "@tmp/faces", "--out", "@tmp/run", "--epochs", "1", "--batch-size", "2", *TINY, *extra]
    assert_refused(main, expand(argv, place), code, words, place["tmp"])  # no run folder, no history.json = []


# ---------------------------------------------------------------- hostile pass 2 (#29)


def test_one_face_and_a_single_path_through_the_api(helen_dir, tmp_path):
    """Rows 5 and 13: TrainJob(data="dir") read the string letter by letter; one face made an
    IndexError after the split. Both are one line now, before any run folder exists."""
    from shfan import train

    one = small_300w(helen_dir, tmp_path / "one", 1)
    job = train.TrainJob(data=str(one), out=str(tmp_path / "run"), epochs=1, batch_size=4)
    assert job.data == [str(one)] and train.TrainJob(extra_data=None).extra_data == []
    with pytest.raises(train.TrainError, match="1 face.*at least 2"):
        train.run(job)
    assert not (tmp_path / "run").exists()


def test_sigterm_is_one_line_and_130(helen_dir, tmp_path, monkeypatch):
    """Row 11: SIGTERM killed shfan-train with 143 and no line; now as Ctrl-C (checkpoints are
    written whole by shfan.atomic, so the run folder stays resumable)."""
    from shfan import train
    from shfan.cli.train import main

    assert_sigterm_is_one_line_and_130(main, ["--data", small_300w(helen_dir, tmp_path / "f", 3), "--out",
                                              tmp_path / "run"], monkeypatch, train, "run")
