"""shfan-serve: the shfan pipeline behind NVIDIA Triton Inference Server (PyTriton).

Models: shfan_faces (encoded image bytes -> faces), shfan_faces_rgb (RGB uint8 arrays -> faces),
shfan_points (image + a face detector's box -> points). HTTP, gRPC and Prometheus metrics
endpoints; dynamic batching across concurrent requests. Needs PyTriton in its own venv: make serve-install.
Stop with Ctrl-C or SIGTERM (tritonserver is stopped with it)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from shfan.cli.common import (LOGGER, Parser, add_dataclass_options, backend_choices, build_precisions, entry,
                               existing_path, fail, options_from, require)


def build_parser():
    from shfan.serve.server import ServeOptions  # light: numpy (PyTriton is imported by ShfanTriton.start)

    ap = Parser(prog="shfan-serve", description=__doc__,
                verbose_help="tritonserver's log on the console, and shfan's debug messages")
    ap.add_argument("--model", help="compact (default) | accurate | fast | a shfan-build folder | .onnx | .engine")
    ap.add_argument("--backend", default="auto", choices=backend_choices(runtime=True))
    ap.add_argument("--precision", choices=build_precisions(), help="of a build folder (default: its selection)")
    ap.add_argument("--detector-model", type=existing_path, help="YuNet .onnx (default: downloaded once, sha256-checked)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    add_dataclass_options(ap, ServeOptions, ["http_port", "grpc_port", "metrics_port", "max_batch", "queue_delay_us"])
    add_dataclass_options(ap, ServeOptions, ["batching"])
    add_dataclass_options(ap, ServeOptions, ["max_faces", "min_face", "threads"])
    return ap


# One story with the README: PyTriton pins numpy < 2, so it lives in its own venv.
SERVE_INSTALL = ("shfan-serve needs PyTriton, which pins numpy < 2 and so lives in its own venv: run make serve-install "
                 "in the shfan checkout, then .venv-serve/bin/shfan-serve (by hand: pip install 'shfan[serve]' in a "
                 "separate venv; x86-64 or aarch64, glibc >= 2.35)")


@entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    require("pytriton", SERVE_INSTALL)
    from shfan.serve.server import ServeOptions, ShfanTriton
    root = logging.getLogger()
    if not root.handlers:  # PyTriton's and tritonserver's loggers; shfan's have the CLI's handler (not twice)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(lambda record: not record.name.startswith(LOGGER))
        root.addHandler(handler)
        root.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:  # its failures come back to us as exceptions, reported in one line below
        logging.getLogger("pytriton").setLevel(logging.CRITICAL)
    try:
        opts = options_from(ServeOptions, args).validate()
    except ValueError as exc:
        fail(str(exc), 2)
    from shfan.errors import ShfanError

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ShfanTriton(opts)
    try:
        server.start()
    except Exception as exc:  # PyTriton's own errors (a port in use, tritonserver exited, ...)
        server.stop()
        if isinstance(exc, ShfanError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        fail(f"Triton did not start ({first}); check that ports {opts.http_port}, {opts.grpc_port} and "
             f"{opts.metrics_port} are free (--http-port/--grpc-port/--metrics-port) and rerun with --verbose")
    except BaseException:
        server.stop()
        raise
    print(f"shfan-serve: models shfan_faces, shfan_faces_rgb, shfan_points on http://{opts.host}:{opts.http_port} "
          f"(gRPC {opts.grpc_port}, metrics http://{opts.host}:{opts.metrics_port}/metrics); "
          f"batching {'up to ' + str(opts.max_batch) if opts.batching else 'off'}; Ctrl-C or SIGTERM stops",
          flush=True)
    ok = server.serve(stop)
    print("shfan-serve: stopped", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
