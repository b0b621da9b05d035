"""shfan: one command for every tool. `shfan eval ...` is `shfan-eval ...` (the shfan-* commands
stay as aliases), and `python -m shfan ...` is `shfan ...`. A tool's module is imported only when
its subcommand runs, so `shfan doctor` works where torch or onnx are missing (and the one-liners
below are written here, not read from each module's docstring, so `shfan --help` imports none).
-v/--verbose and -q/--quiet before the subcommand are passed on to it (`shfan -v eval ...`)."""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

from shfan.cli.common import USAGE, fail, version

LOUDNESS = ("-v", "--verbose", "-q", "--quiet")  # every tool's (common.Parser); also taken before the subcommand

# subcommand -> (module with main(argv), one line for the help)
COMMANDS = {
    "build": ("shfan.cli.build", "checkpoint or ONNX -> fp32/fp16/int8 ONNX and TensorRT engines"),
    "run": ("shfan.cli.run", "live landmarks from a camera, stream, video, image folder or the demo"),
    "eval": ("shfan.cli.eval", "landmark accuracy (NME, AUC, failure rate) of a model on a dataset"),
    "train": ("shfan.cli.train", "train FAN / SH-FAN on 300-W folders or WFLW, COFW-68, AFLW-19 annotations"),
    "doctor": ("shfan.cli.doctor", "what this machine can run, and the fix for each missing piece"),
    "bench": ("shfan.cli.bench", "latency and throughput of the backends and precisions"),
    "serve": ("shfan.cli.serve", "the pipeline behind NVIDIA Triton Inference Server"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: shfan [--version] [-h] [-v | -q] {{{','.join(COMMANDS)}}} ...", "",
             "SH-FAN subpixel facial landmarks: one command per tool (shfan COMMAND --help for its options).", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    loud = []
    while argv and argv[0] in LOUDNESS:  # `shfan -v eval ...` is `shfan eval -v ...`
        loud.append(argv.pop(0))
    if not argv:
        print(usage(), file=sys.stderr)
        return USAGE
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help"):
        print(usage())
        return 0
    if name == "--version":
        print(f"shfan {version()}")
        return 0
    if name not in COMMANDS:
        fail(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)} (see shfan --help)", USAGE)
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(loud + rest) or 0


if __name__ == "__main__":
    sys.exit(main())
