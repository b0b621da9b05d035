"""shfan-doctor: what this machine can do with shfan, and the fix for each missing piece.

Exit code 0 when the CPU path (ONNX Runtime) works, 1 otherwise. The checks live in
shfan.doctor; this module only renders them.

`--selftest` instead runs the TensorRT self-test (shfan.selftest): one PASS/FAIL line per check,
exit 1 when any fails (the shipped test vectors are read first, on any machine); without TensorRT one
line saying so and where the vectors are, exit 0.
"""

from __future__ import annotations

import argparse  # noqa: F401  (the Namespace type below)
import json
import sys
from typing import Optional, Sequence

from shfan.doctor import MISSING, OK, WARN, Report, run_checks

STATUS_STYLE = {OK: "[green]ok[/]", WARN: "[yellow]warn[/]", MISSING: "[red]missing[/]"}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    from shfan.cli.common import Parser

    parser = Parser(
        prog="shfan-doctor",
        description="Report what this machine can run (CPU / TensorRT path) and how to fix gaps.")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--selftest", action="store_true",
                        help="build and run the SubpixelDecode plugin on this GPU with TensorRT (fp32/fp16, "
                             "every CUDA host API, a second thread) against the NumPy reference")
    return parser.parse_args(argv)


def selftest() -> int:
    from shfan import selftest as st

    results = st.run(log=lambda line: print(line, flush=True))
    if results is None:
        print(st.no_tensorrt_line())
        return 0
    failed = [r for r in results if not r.ok]
    print(f"selftest: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def verdict_line(label: str, ok: bool, blocked_by: Sequence[str]) -> str:
    if ok:
        return f"[green]{label}: OK[/]"
    return f"[red]{label}: not available[/] (blocked by: {', '.join(blocked_by)})"


def render_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"shfan-doctor (shfan {report.to_dict()['shfan_version']})")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in report.checks.values():
        table.add_row(check.name, STATUS_STYLE.get(check.status, check.status), check.detail,
                      check.fix)
    console = Console()
    console.print(table)
    summary = report.to_dict()
    console.print(verdict_line("CPU path (ONNX Runtime)", report.cpu_path_ok,
                               summary["cpu_path"]["blocked_by"]))
    console.print(verdict_line("TensorRT path", report.tensorrt_path_ok,
                               summary["tensorrt_path"]["blocked_by"]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.selftest:
        return selftest()
    report = run_checks()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_table(report)
    return 0 if report.cpu_path_ok else 1


if __name__ == "__main__":
    sys.exit(main())
