"""The `shfan` umbrella command, the options every tool shares (--version, -v/-q) and the
workflows the CLIs run, called from Python (shfan.train.run, shfan.evaluate.evaluate)."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_main, small_300w

import shfan
from shfan.cli.main import COMMANDS, main


def test_version_is_single_sourced():
    from importlib.metadata import version

    from shfan.cli.common import version as cli_version

    assert cli_version() == version("shfan") == shfan.__version__


@pytest.mark.parametrize("how", ["python -m shfan", "shfan", "shfan-eval", "shfan-doctor"])
def test_version_of_every_entry_point(how):
    if how == "python -m shfan":
        cmd = [sys.executable, "-m", "shfan"]
    else:
        script = Path(sys.executable).with_name(how)
        if not script.is_file():
            pytest.skip(f"{how} is not installed in this environment (pip install -e .)")
        cmd = [str(script)]
    r = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == f"shfan {shfan.__version__}\n", r.stderr


def test_subcommand_dispatches_to_the_tool():
    code, out, err = run_main(main, ["eval", "--help"])
    assert code == 0 and out.startswith("usage: shfan-eval") and "--views" in out
    code, out, _ = run_main(main, ["--help"])
    assert code == 0 and all(f"  {name} " in out for name in COMMANDS)


def test_unknown_subcommand_is_one_line_exit_2():
    code, out, err = run_main(main, ["evaluate"])
    assert_one_line_error(code, err, 2, ["'evaluate'", "build, run, eval, train, doctor, bench, serve"])
    code, _, err = run_main(main, [])
    assert code == 2 and "usage: shfan" in err


@pytest.mark.parametrize("flag, level", [([], logging.INFO), (["-v"], logging.DEBUG), (["--quiet"], logging.WARNING)])
def test_verbose_and_quiet_set_the_shfan_logger(tmp_path, capsys, flag, level):
    from shfan.cli.train import build_parser

    build_parser().parse_args(["--data", str(tmp_path), *flag])
    logger = logging.getLogger("shfan")
    assert logger.level == level
    logging.getLogger("shfan.train").info("a training line")
    logging.getLogger("shfan.runtime").warning("a warning")
    err = capsys.readouterr().err
    assert ("a training line\n" in err) == (level <= logging.INFO) and "warning: a warning\n" in err


@pytest.mark.parametrize("flag, level", [("-v", logging.DEBUG), ("--quiet", logging.WARNING)])
def test_verbose_and_quiet_before_the_subcommand_are_passed_on(tmp_path, flag, level):
    """`shfan -v eval ...` is `shfan eval -v ...` (the README: every command takes -v/-q)."""
    code, _, err = run_main(main, [flag, "eval", "--data", tmp_path, "--format", "wflw"])  # parsed, then refused
    assert code == 2 and "--format wflw takes the annotation file" in err
    assert logging.getLogger("shfan").level == level
    code, _, err = run_main(main, ["-v", "-q", "train", "--data", tmp_path])
    assert_one_line_error(code, err, 2, "not allowed with")


def test_verbose_and_quiet_exclude_each_other(tmp_path):
    from shfan.cli.train import build_parser

    code, _, err = run_main(build_parser().parse_args, ["--data", tmp_path, "-v", "-q"])
    assert_one_line_error(code, err, 2, "not allowed with")


def test_choices_come_from_the_tables():
    from shfan.augment import PRESETS
    from shfan.cli import eval as eval_cli
    from shfan.cli import train as train_cli
    from shfan.datasets import FORMATS

    def choices(parser, flag):
        return next(a.choices for a in parser._actions if flag in a.option_strings)

    train, evaluate = train_cli.build_parser(), eval_cli.build_parser()
    assert tuple(choices(train, "--format")) == tuple(choices(evaluate, "--format")) == FORMATS
    assert sorted(choices(train, "--augment")) == sorted(PRESETS)


def test_train_options_have_the_train_jobs_defaults(tmp_path):
    """shfan-train's options are TrainJob's fields: the same names and defaults."""
    import dataclasses

    from shfan.cli.train import build_parser, job_from_args
    from shfan.train import TrainJob

    job = job_from_args(build_parser().parse_args(["--data", str(tmp_path)]))
    assert job == TrainJob(data=[str(tmp_path)])
    # every field is an option of the same name (dest): --no-tune sets `tune`
    assert {f.name for f in dataclasses.fields(TrainJob)} - set(vars(build_parser().parse_args(["--data", "."]))) \
        == set()
    assert build_parser().parse_args(["--data", ".", "--no-tune"]).tune is False


@pytest.mark.parametrize("field, value, choices", [("augment", "wild", "hard, mild"),
                                                  ("device_augment", "gpu", "auto, on, off")])
def test_train_job_choices_are_checked_before_any_data_is_read(field, value, choices, tmp_path):
    """A TrainJob built from Python gets the CLI's choices: one line naming them, no data read."""
    from shfan.train import TrainError, TrainJob, run

    with pytest.raises(TrainError, match=f"unknown {field} '{value}'; choose one of {choices}"):
        run(TrainJob(data=[str(tmp_path / "never-read")], out=str(tmp_path / "run"), **{field: value}))
    assert not (tmp_path / "run").exists()


def test_train_parser_and_job_need_no_torch():
    """shfan-train --help (and TrainJob) work where PyTorch is missing; the CLI says to install it."""
    code = "import sys, shfan.cli.train as c, shfan.train; c.build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# ---------------------------------------------------------------- the workflows from Python


@pytest.mark.slow
def test_train_run_from_python(helen_dir, afw_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from shfan import model as fan
    from shfan.train import TrainError, TrainJob, run

    tiny = fan.ModelConfig(stacks=1, width=32, input_size=64)
    torch.manual_seed(0)
    fan.save_checkpoint(fan.FAN(tiny), tmp_path / "tiny.pt")
    data = small_300w(helen_dir, tmp_path / "helen", 10)
    test = small_300w(afw_dir, tmp_path / "afw", 3)
    job = TrainJob(data=[str(data)], test_data=str(test), init=str(tmp_path / "tiny.pt"), epochs=1, batch_size=3,
                   threads=1, out=str(tmp_path / "run"))
    lines = []
    report = run(job, log=lines.append)
    assert "loading 9 training and 1 validation images" in lines  # seed 0, 10 % of 10 held out
    assert report["config"] == tiny.to_dict()  # as trained; the tuned decoder is in the checkpoint:
    tuned = fan.load_checkpoint(report["checkpoint"]).config
    assert (tuned.window, tuned.temperature) == (report["chosen"]["window"], report["chosen"]["temperature"])
    assert len(report["decoder_validation_nme"]) == 2 + 18 and report["test"]["faces"] == 3
    assert Path(report["checkpoint"]) == tmp_path / "run" / "best.pt"
    with pytest.raises(TrainError, match="fewer than one batch of 16"):  # the CLI's default batch
        run(TrainJob(data=[str(data)], out=str(tmp_path / "refused")))
    assert not (tmp_path / "refused").exists()


def test_evaluate_from_python(afw_dir):
    pytest.importorskip("onnxruntime")
    from shfan import evaluate
    from shfan.runtime.backends import open_backend
    from shfan.weights import DEFAULT_ONNX

    samples = evaluate.load_samples(afw_dir, "300w", limit=8)
    report, per_face = evaluate.evaluate(samples, "compact", backend="onnxruntime")
    assert report["faces"] == 8 and per_face.shape == (8,) and report["backend"] == "onnxruntime"
    assert report["model"] == str(DEFAULT_ONNX) and report["views"] == "clean" and report["precision"] is None
    b = open_backend(DEFAULT_ONNX, "onnxruntime")
    try:  # the same numbers as scoring the backend directly
        summary, direct = evaluate.score(b.infer, samples, b.info.input_size)
    finally:
        b.close()
    assert report["nme_inter_ocular"] == pytest.approx(summary["nme_inter_ocular"])
    assert np.allclose(per_face, direct) and 0 < report["nme_inter_ocular"] < 15
    hard, _ = evaluate.evaluate(samples, "compact", backend="onnxruntime", views="hard")
    assert hard["nme_inter_ocular"] > report["nme_inter_ocular"]
    with pytest.raises(evaluate.EvalError, match="unknown views"):
        evaluate.evaluate(samples, "compact", views="blurry")
