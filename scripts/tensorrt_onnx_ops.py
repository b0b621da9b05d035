"""Regenerate tests/tensorrt_releases/onnx-ops-<table>.json: the ONNX parser's supported-operator
table of a TensorRT release (onnx/onnx-tensorrt docs/operators.md at the release's branch or tag),
so tests/test_tensorrt_onnx.py checks every graph shfan-build writes against it offline.

    python scripts/tensorrt_onnx_ops.py --table 10.1 --git ~/src/onnx-tensorrt 10.1-GA
    python scripts/tensorrt_onnx_ops.py --table 10.15 --doc operators.md --source "onnx-tensorrt 10.15-GA"

Kept per operator: supported (Y/N), the data types, and the restriction text as written (the
check turns the restrictions it knows into rules and fails on any other it meets on a node).
Which TensorRT release uses which table is `onnx_tables` in tests/tensorrt_releases/releases.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "tensorrt_releases"
HEADER = re.compile(r"TensorRT\s+([\d.]+)\s+supports operators in the inclusive range of opset\s+(\d+)\s+to opset\s+(\d+)")


def parse(text: str) -> dict:
    """{header, opset: [lo, hi], ops: {op: {supported, types, restrictions}}} from operators.md."""
    head = HEADER.search(text)
    if head is None:
        raise SystemExit("error: no 'TensorRT X supports operators in the inclusive range of opset A to opset B' line; "
                         "is this onnx-tensorrt's docs/operators.md (TensorRT 10 or newer)?")
    ops = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", cells[0]) or cells[1] not in ("Y", "N"):
            continue
        types = [t.strip() for t in cells[2].split(",") if t.strip()] if len(cells) > 2 and cells[1] == "Y" else []
        restriction = " ".join(c for c in cells[3:] if c) if cells[1] == "Y" else " ".join(cells[2:]).strip()
        ops[cells[0]] = {"supported": cells[1] == "Y", "types": types, "restrictions": restriction}
    if len(ops) < 100:
        raise SystemExit(f"error: only {len(ops)} operator rows found; the table format changed")
    return {"header_release": head.group(1), "opset": [int(head.group(2)), int(head.group(3))], "ops": ops}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="the release the table belongs to, e.g. 10.15")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--doc", type=Path, help="a docs/operators.md file")
    src.add_argument("--git", nargs=2, metavar=("REPO", "REF"), help="an onnx-tensorrt clone and a branch or tag")
    ap.add_argument("--source", help="where the file came from (recorded); default: the --git REPO:REF")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.doc:
        if not args.doc.is_file():
            ap.error(f"{args.doc}: no such file")
        text = args.doc.read_text()
    else:
        repo, ref = args.git
        done = subprocess.run(["git", "-C", repo, "show", f"{ref}:docs/operators.md"], capture_output=True, text=True)
        if done.returncode:
            ap.error(f"git show {ref}:docs/operators.md failed in {repo}: {done.stderr.strip().splitlines()[-1]}")
        text = done.stdout
    table = parse(text)
    table.update(table=args.table, source=args.source or f"onnx/onnx-tensorrt {args.git[1] if args.git else args.doc}",
                 sha256=hashlib.sha256(text.encode()).hexdigest())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"onnx-ops-{args.table}.json"
    path.write_text(json.dumps(table, indent=0, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{path}: {sum(o['supported'] for o in table['ops'].values())} supported of {len(table['ops'])} operators, "
          f"opset {table['opset'][0]}-{table['opset'][1]} (header: TensorRT {table['header_release']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
