"""The build's notes say what the guard decided: a file over the bound (built under
--precision best, which keeps it for inspection) is never called accepted."""

from pathlib import Path

from shfan.builder.steps import Measured, int8_note, int8_cpu_note


def _measured(within: bool) -> Measured:
    return Measured(Path("m.onnx"), 3.682, 0.146 if not within else 0.074, 31.9, ("/a/Conv",), within, 0.171)


def test_a_file_within_the_bound_is_accepted():
    assert int8_note(_measured(True)).startswith("int8 accepted: NME 3.682, drift +0.074, 1 convs")
    assert int8_cpu_note(_measured(True)).startswith("CPU int8 accepted: NME 3.682")


def test_a_file_over_the_bound_is_not_called_accepted():
    for note in (int8_note(_measured(False)), int8_cpu_note(_measured(False))):
        assert "accepted" not in note and "over the bound even so (written, not selected)" in note, note
        assert "drift +0.146" in note
