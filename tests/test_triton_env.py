"""The pure parts of shfan-serve, tested anywhere (no PyTriton needed): the libpython fix for
PyTriton's Python-backend stub, option checks, the CLI's message without the serve extra."""

import os
import sysconfig
from pathlib import Path

import pytest

from shfan.serve import process
from shfan.serve.server import ServeOptions, use_own_libpython

LIBDIR, SONAME = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
SHARED = bool(LIBDIR and SONAME and (Path(LIBDIR) / SONAME).is_file())


@pytest.mark.skipif(not SHARED, reason="this interpreter has no shared libpython")
def test_own_libpython_goes_first_once():
    env = {"LD_LIBRARY_PATH": f"/opt/x{os.pathsep}{LIBDIR}{os.pathsep}/opt/y"}
    assert use_own_libpython(env) == LIBDIR
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [LIBDIR, "/opt/x", "/opt/y"]
    use_own_libpython(env)  # idempotent
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [LIBDIR, "/opt/x", "/opt/y"]
    env = {}
    use_own_libpython(env)
    assert env["LD_LIBRARY_PATH"] == LIBDIR


def test_static_interpreter_is_left_alone(monkeypatch):
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: None)
    env = {"LD_LIBRARY_PATH": "/opt/x"}
    assert use_own_libpython(env) is None and env == {"LD_LIBRARY_PATH": "/opt/x"}


@pytest.mark.parametrize("kwargs, match", [
    ({"http_port": 9000, "grpc_port": 9000}, "three different ports"),
    ({"metrics_port": 70000}, "1-65535"),
    ({"max_batch": 0}, ">= 1"),
    ({"queue_delay_us": -1}, ">= 0"),
])
def test_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ServeOptions(**kwargs).validate()


def test_cli_without_pytriton_names_the_extra(capsys):
    pytest.importorskip("cv2")
    try:
        import pytriton  # noqa: F401
        pytest.skip("PyTriton is installed here")
    except ImportError:
        pass
    from shfan.cli.serve import main

    with pytest.raises(SystemExit) as info:
        main(["--max-batch", "4"])
    assert info.value.code == 1
    err = capsys.readouterr().err  # the README's story: its own venv by make serve-install
    assert "make serve-install" in err and ".venv-serve/bin/shfan-serve" in err and "numpy < 2" in err


def test_cli_rejects_bad_values_before_starting_anything(capsys):
    from shfan.cli.serve import main

    for argv in (["--http-port", "0"], ["--http-port", "70000"], ["--max-batch", "0"], ["--queue-delay-us", "-5"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    assert "error:" in capsys.readouterr().err


def test_process_helpers():
    a, b, c = process.free_ports(3)
    assert len({a, b, c}) == 3
    assert process.alive(os.getpid())
    assert not process.alive(2 ** 22 + 12345)
    assert process.descendants(2 ** 22 + 12345) == []


def test_busy_port_is_named():
    import socket

    from shfan.errors import ShfanError
    from shfan.serve.server import check_ports

    free = process.free_ports(1)[0]
    check_ports("127.0.0.1", [free])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(ShfanError, match=f"127.0.0.1:{port}.*--http-port"):
            check_ports("127.0.0.1", [free, port])


def test_min_face_and_threads_say_what_the_pipeline_says():
    """shfan-serve passes them to PipelineOptions: same help, range and metavar."""
    import dataclasses

    from shfan.runtime.pipeline import PipelineOptions

    pipeline = {f.name: f.metadata for f in dataclasses.fields(PipelineOptions)}
    serve = {f.name: f.metadata for f in dataclasses.fields(ServeOptions)}
    for name in ("min_face", "threads"):
        assert serve[name] == pipeline[name], name
    assert "physical core, at most 8" in serve["threads"]["help"]  # what ort_backend.session_options does
