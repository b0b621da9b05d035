"""shfan-eval end to end on real AFW faces, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from shfan.errors import ShfanError

from conftest import (YUNET, assert_refused, assert_sigterm_is_one_line_and_130, bad_name, folder_with, hostile_cases,
                      is_char_device, null_device, run_cli, run_main, small_300w, unix_socket)


def run_eval(*args):
    return subprocess.run([sys.executable, "-m", "shfan.cli.eval", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_json_report_fields(afw_dir, tiny_checkpoint, tmp_path):
    r = run_eval("--data", afw_dir, "--format", "300w", "--box", "gt", "--model", tiny_checkpoint,
                 "--limit", "10", "--json", "--plot", tmp_path / "ced.png")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for key in ("faces", "nme_inter_ocular", "nme_box", "auc_inter_ocular_10", "fr_inter_ocular_10",
                "method", "backend"):
        assert key in report
    assert report["faces"] == 10 and report["backend"] == "pytorch" and report["method"] == "subpixel"
    assert (tmp_path / "ced.png").read_bytes()[:4] == b"\x89PNG"


def test_method_names_the_heatmap_decoding_and_decoder_is_its_old_name(afw_dir, tiny_checkpoint):
    """#28 item 6: in shfan-build a decoder is the graph's node (plugin | onnx | none); shfan-eval's
    choice of heatmap decoding is --method (codec.METHODS), --decoder still works for one release."""
    from shfan.cli.eval import main

    code, out, err = run_main(main, ["--data", afw_dir, "--model", tiny_checkpoint, "--limit", "3", "--json",
                                     "--method", "argmax"])
    assert code == 0 and "warning" not in err
    new = json.loads(out)
    code, out, err = run_main(main, ["--data", afw_dir, "--model", tiny_checkpoint, "--limit", "3", "--json",
                                     "--decoder", "argmax"])
    old = json.loads(out)
    assert code == 0 and "warning: --decoder is now --method" in err
    assert new["method"] == old["method"] == old["decoder"] == "argmax"
    assert new["nme_inter_ocular"] == old["nme_inter_ocular"]
    code, out, _ = run_main(main, ["--data", afw_dir, "--model", tiny_checkpoint, "--limit", "3", "--json"])
    assert json.loads(out)["nme_inter_ocular"] != new["nme_inter_ocular"]  # subpixel by default: another result
    from shfan.cli.eval import build_parser

    assert "--method" in build_parser().format_help() and "--decoder" not in build_parser().format_help()


def test_errors_are_one_line_in_a_subprocess(afw_dir, tiny_checkpoint):
    """The installed entry point too: one line, exit 2 for usage, no traceback."""
    r = run_eval("--data", "/nonexistent", "--model", tiny_checkpoint, "--limit", "2")
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- hostile inputs (#15)


@pytest.fixture(scope="module")
def hostile(afw_dir, tiny_checkpoint, tmp_path_factory):
    """Every broken input the hostile pass tried, made once."""
    root = tmp_path_factory.mktemp("hostile")
    d = {"ok": small_300w(afw_dir, root / "ok", 3), "ckpt": tiny_checkpoint, "root": root}
    d["mixed"] = small_300w(afw_dir, root / "mixed", 3,
                            lambda i, t: t.replace("n_points: 68", "n_points: 67").rsplit("\n", 3)[0] + "\n}\n"
                            if i == 2 else t)
    d["inf"] = small_300w(afw_dir, root / "inf", 2, lambda i, t: t.replace("{\n", "{\ninf 3\n", 1).replace(
        "n_points: 68", "n_points: 69") if i == 1 else t)
    d["nan"] = small_300w(afw_dir, root / "nan", 2, lambda i, t: t.replace("{\n", "{\n12 nan\n", 1).replace(
        "n_points: 68", "n_points: 69") if i == 1 else t)
    d["degenerate"] = small_300w(afw_dir, root / "degenerate", 2, lambda i, t: t[:t.index("{") + 1] + "\n"
                                 + "100 100\n" * 68 + "}\n" if i == 1 else t)
    (root / "file.txt").write_text("x")
    (root / "plotdir").mkdir()
    unix_socket(root / "sock.png")
    folder_with(root / "list_build", {"manifest.json": "[1, 2]"})
    (root / "fake.engine").write_bytes(b"not an engine")
    return d


def _flag_value(d, value):
    return str(d[value[1:]]) if isinstance(value, str) and value.startswith("@") else value


HOSTILE = [  # (extra args; "@name" -> hostile[name]), exit code, words in the one line
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--batch-size", "-1"], 2, "--batch-size"),
    (["--limit", "0"], 2, "--limit"),
    (["--limit", "-1"], 2, "--limit"),
    (["--data", "@mixed"], 1, ["67 points", ".pts"]),
    (["--data", "@inf"], 1, ["not finite", ".pts:4"]),
    (["--data", "@nan"], 1, ["not finite", ".pts:4"]),
    (["--data", "/no/such/folder"], 2, "no such file"),
    (["--data", "@file.txt"], 2, "is a file; --format 300w takes a folder"),
    (["--format", "wflw", "--data", "/no/such.txt"], 2, "no such file"),
    (["--format", "wflw", "--data", "@ok"], 2, "is a folder; --format wflw"),
    (["--format", "cofw68", "--data", "@file.txt"], 2, "needs --points-dir"),
    (["--format", "cofw68", "--data", "@file.txt", "--points-dir", "@ok"], 1, ["file.txt", "cannot read MATLAB"]),
    (["--format", "aflw19", "--data", "@file.txt"], 2, "needs --image-root"),
    (["--plot", "/no/such/dir/ced.png"], 2, "does not exist"),
    (["--plot", "@plotdir"], 2, "is a folder"),
    (["--plot", "@readonly/ced.png"], 2, "cannot write"),
    (["--precision", "int3"], 2, "--precision"),
    (["--precision", "fp16"], 2, "build folder"),
    (["--model", "@list_build"], 1, "not a shfan-build manifest"),
    (["--model", "@fake.engine"], 1, "TensorRT is not available"),
    (["--model", "@fake.engine", "--backend", "onnxruntime"], 1, "TensorRT engine"),
    (["--model", "@yunet"], 1, "not a shfan landmark model"),
    (["--model", "@ckpt", "--backend", "onnxruntime"], 1, "PyTorch checkpoint"),
    # hostile pass 2 (#29)
    (["--data", "@degenerate"], 1, ["degenerate/", ".pts", "degenerate face", "zero inter-ocular"]),  # row 10
    (["--plot", "@sock.png"], 2, ["--plot", "special file"]),  # row 2
    (["--plot", "@file.txt/" + "p" * 300 + ".png"], 2, ["--plot"]),  # row 7 (a file as the folder, too)
    (["--plot", "@plotdir/" + "p" * 300 + ".png"], 2, ["--plot", "too long"]),
    (["--max-image-pixels", "1000"], 1, ["over the limit of 1,000", "--max-image-pixels"]),  # row 15
    (["--max-image-pixels", "0"], 2, "--max-image-pixels"),
]


@hostile_cases(HOSTILE)
def test_hostile_inputs(hostile, readonly_dir, extra, code, words):
    from shfan.cli.eval import main

    d = {**hostile, "readonly": readonly_dir, "yunet": YUNET,
         **{name: hostile["root"] / name for name in ("file.txt", "plotdir", "list_build", "fake.engine", "sock.png")}}
    args = {"--data": str(d["ok"]), "--model": str(d["ckpt"])}
    for flag, value in zip(extra[::2], extra[1::2]):
        if value.startswith("@") and "/" in value:
            name, rest = value[1:].split("/", 1)
            value = f"{d[name]}/{rest}"
        args[flag] = _flag_value(d, value)
    out = assert_refused(main, [x for kv in args.items() for x in kv] + ["--json"], code, words, hostile["root"])
    assert out == ""


class _Closing:
    """A backend stand-in that records close(); 5 landmarks never match a 68-point dataset."""

    name = "stand-in"

    def __init__(self, fail_infer=False):
        from shfan.runtime.backends import ModelInfo

        self.info = ModelInfo(input_size=64, landmarks=68 if fail_infer else 5, heatmap_size=16)
        self.fail_infer, self.closed = fail_infer, 0

    def infer(self, crops):
        from shfan.errors import BackendError

        raise BackendError("stand-in inference failure")

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("fail_infer, message", [(False, "predicts 5 landmarks"), (True, "stand-in inference")])
def test_backend_closed_on_every_path(afw_dir, monkeypatch, capsys, tmp_path, fail_infer, message):
    """A TensorRT backend left open aborts the interpreter at exit (pycuda); errors close it too."""
    from shfan import evaluate
    from shfan.cli import eval as cli

    backend = _Closing(fail_infer)
    monkeypatch.setattr(evaluate, "open_model", lambda *a, **k: backend)  # shfan-eval opens it through evaluate()
    with pytest.raises(SystemExit):
        (tmp_path / "x.onnx").write_bytes(b"")
        cli.main(["--data", str(afw_dir), "--limit", "2", "--model", str(tmp_path / "x.onnx")])
    assert backend.closed == 1 and message in capsys.readouterr().err


# ---------------------------------------------------------------- hostile pass 2 (#29)


def test_names_that_are_not_utf8_work(afw_dir, tiny_checkpoint, tiny_onnx, tmp_path):
    """Row 1: a dataset, a model and a plot whose names are not UTF-8 (OpenCV crashed on them)."""
    import shutil

    data = tmp_path / bad_name("data")
    data.mkdir()
    for i, pts in enumerate(sorted(afw_dir.glob("*.pts"))[:2]):
        shutil.copy(pts.with_suffix(".jpg"), data / bad_name(f"face{i}", ".jpg"))
        shutil.copy(pts, data / bad_name(f"face{i}", ".pts"))
    plot = tmp_path / bad_name("ced", ".png")
    for model in (shutil.copy(tiny_checkpoint, tmp_path / bad_name("m", ".pt")),
                  shutil.copy(tiny_onnx, tmp_path / bad_name("m", ".onnx"))):
        r = run_cli("eval", ["--data", data, "--model", model, "--json", "--plot", plot])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["faces"] == 2 and plot.read_bytes()[:4] == b"\x89PNG"
        r = run_cli("eval", ["--data", data, "--model", model])  # the table names them on stdout
        assert r.returncode == 0 and "\\xff" in r.stdout, r.stderr


def test_plot_into_a_device_keeps_the_device(afw_dir, tiny_checkpoint, tmp_path):
    """Row 2: --plot onto a character device replaced it with a regular file."""
    from shfan.cli.eval import main

    dev = null_device(tmp_path / "nulldev.png")
    code, out, err = run_main(main, ["--data", small_300w(afw_dir, tmp_path / "d", 2), "--model", tiny_checkpoint,
                                     "--json", "--plot", dev])
    assert code == 0, err
    assert is_char_device(dev) and json.loads(out)["plot"] == str(dev)


def test_sigterm_is_one_line_and_130(afw_dir, tiny_checkpoint, monkeypatch):
    """Row 11: SIGTERM killed shfan-eval with 143 and no line; now as Ctrl-C."""
    from shfan import evaluate
    from shfan.cli.eval import main

    assert_sigterm_is_one_line_and_130(main, ["--data", afw_dir, "--model", tiny_checkpoint, "--limit", "2"],
                                       monkeypatch, evaluate, "evaluate")


def test_evaluate_api_takes_a_path_and_refuses_nothing(afw_dir, tiny_checkpoint):
    """Row 13: evaluate([]) was an IndexError, evaluate("dir") an AttributeError."""
    from shfan import evaluate

    report, per_face = evaluate.evaluate(str(afw_dir), model=tiny_checkpoint)
    assert report["faces"] == len(per_face) == len(evaluate.load_samples(afw_dir))
    for samples, message in (([], "no faces"), (5, "dataset path or a list"), ([1], "must be Samples"),
                             ("/no/such/folder", "no such dataset folder")):
        with pytest.raises(ShfanError, match=message):
            evaluate.evaluate(samples, model=tiny_checkpoint)
