"""Regenerate tests/tensorrt_releases/api-<release>.json: the Python API names of each TensorRT release
shfan claims to support, so tests/test_tensorrt_api.py can check every TensorRT call in the code
against the real releases without TensorRT or a GPU.

Where the names come from, and how each source checks the other:
- the official bindings wheels (`pip download --no-deps tensorrt-cu12-bindings==X`, ~1.3 MB, one
  per platform): their compiled module holds every class, method, property and enum name as a
  NUL-terminated C string. The linker stores a string that is the tail of another only once
  (10.3 has `mark_output` only inside `unmark_output`), so a name counts as present when some
  string *ends* with it. Their `__init__.py` adds Python-level names (`nptype`, ...).
- the bindings' C++ in NVIDIA/TensorRT at the release tag (`python/src/**/*.cpp`: `py::class_`,
  `py::enum_`, `.def("x")`, `.value("X")`), which says which class owns which name.
A name is kept for a class when the source defines it there and every wheel of the release
carries the string; source names missing from a wheel are counted in tests/tensorrt_releases/releases.json.

Usage (needs PyPI and a clone of github.com/NVIDIA/TensorRT with its tags):
    python scripts/tensorrt_api.py --tensorrt-source ~/src/TensorRT            # every release below
    python scripts/tensorrt_api.py --tensorrt-source ~/src/TensorRT --release 10.3.0
To support another release, add it to RELEASES (wheels from `pip index versions
tensorrt-cu12-bindings`, the nearest source tag from `git tag`) and run this.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "tensorrt_releases"

# release -> NVIDIA/TensorRT source tag (the nearest one published) and the wheels to read
# (distribution, platform tag). The bindings are the same pybind11 source on every platform;
# reading an aarch64 wheel as well checks that. 10.3's aarch64 build ships only in JetPack (apt).
RELEASES = {
    "10.3.0": {"source_tag": "v10.3.0", "jetpack": "6.1 / 6.2",
               "wheels": [("tensorrt-cu12-bindings", "manylinux_2_17_x86_64")]},
    "10.13.3.9": {"source_tag": "v10.13.3", "jetpack": "7.0",
                  "wheels": [("tensorrt-cu13-bindings", "manylinux_2_28_x86_64"),
                             ("tensorrt-cu13-bindings", "manylinux_2_35_aarch64")]},
    "10.16.1.11": {"source_tag": "v10.16", "jetpack": None,
                   "wheels": [("tensorrt-cu12-bindings", "manylinux_2_28_x86_64"),
                              ("tensorrt-cu13-bindings", "manylinux_2_35_aarch64")]},
    "11.4.0.106": {"source_tag": "v11.1", "jetpack": None,
                   "wheels": [("tensorrt-cu13-bindings", "manylinux_2_28_x86_64"),
                              ("tensorrt-cu13-bindings", "manylinux_2_35_aarch64")]},
}
PYTHON = "3.12"  # every release above has cp312 wheels; the names do not depend on it

IDENT_TAIL = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*$")
HEADER = re.compile(r"py::(class_|enum_)\s*<(?P<targs>.*?)>\s*(?P<var>\w+)?\s*[({]\s*(?P<scope>\w+)\s*,\s*\"(?P<name>\w+)\"",
                    re.S)
MEMBER = re.compile(r"\.\s*(?:def|def_static|def_property|def_property_readonly|def_readwrite|def_readonly|"
                    r"def_property_static|def_property_readonly_static|value)\s*\(\s*\"(\w+)\"")
MODULE_DEF = re.compile(r"\bm\s*\.\s*(?:def|attr)\s*\(\s*\"(\w+)\"")  # m.def("f"), m.attr("float32") = ...
BIND_CONTAINER = re.compile(r"py::bind_(?:vector|map)\s*<.*?>\s*\(\s*m\s*,\s*\"(\w+)\"", re.S)  # list-like classes
VAR_USE = re.compile(r"^\s*(\w+)\s*\.\s*(?:def|value|export_values)")


# ------------------------------------------------------------------------------ the wheels


def download(dist: str, release: str, platform: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--timeout", "30", "--retries", "1",  # offline: fail fast
           "--no-deps", "--only-binary=:all:", "--python-version",
           PYTHON, "--platform", platform, f"{dist}=={release}", "-d", str(dest)]
    before = set(dest.glob("*.whl"))
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    new = set(dest.glob("*.whl")) - before
    tag = f"cp{PYTHON.replace('.', '')}"
    found = new or {w for w in dest.glob("*.whl") if w.name.startswith(f"{dist.replace('-', '_')}-{release}-{tag}-")
                    and w.name.endswith(f"{platform}.whl")}
    if len(found) != 1:
        raise SystemExit(f"error: pip download {dist}=={release} ({platform}) gave {sorted(map(str, found))}")
    return found.pop()


def wheel_strings(wheel: Path) -> tuple[set[str], str]:
    """(identifier tails of every NUL-terminated string in the compiled module, its __init__.py)."""
    with zipfile.ZipFile(wheel) as z:
        so = [n for n in z.namelist() if re.search(r"/tensorrt[^/]*\.(so|pyd)$", n)]
        init = [n for n in z.namelist() if n.endswith("/__init__.py") and n.count("/") == 1]
        if len(so) != 1 or len(init) != 1:
            raise SystemExit(f"error: {wheel.name}: expected one compiled module and one __init__.py, got {so} {init}")
        data, init_text = z.read(so[0]), z.read(init[0]).decode()
    names = set()
    for chunk in data.split(b"\0"):
        m = IDENT_TAIL.search(chunk)
        if m:
            names.add(m.group().decode())
    return names, init_text


def present(name: str, strings: set[str], tails: dict[str, bool]) -> bool:
    """`name` followed by a NUL somewhere in the binary (whole string or a merged tail)."""
    if name not in tails:
        tails[name] = name in strings or any(s.endswith(name) for s in strings)
    return tails[name]


def python_names(init_text: str) -> tuple[set[str], dict[str, set[str]]]:
    """Module-level names and Class.attr assignments defined by the wheel's __init__.py."""
    module, members = set(), {}
    for node in ast.parse(init_text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            module.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name):
                    module.add(target.id)
                elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    members.setdefault(target.value.id, set()).add(target.attr)
    return {n for n in module if not n.startswith("_") or n == "__version__"}, members


# ------------------------------------------------------------------------------ the source


def statements(text: str) -> list[str]:
    """C++ split at `;` outside parentheses, comments and string literals dropped."""
    out, buf, depth, i, n = [], [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            buf.append(text[i:j + 1])
            i = j + 1
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == ";" and depth <= 0:
            out.append("".join(buf))
            buf, depth = [], 0
        else:
            buf.append(c)
        i += 1
    out.append("".join(buf))
    return out


def top_level_args(targs: str) -> list[str]:
    args, depth, cur = [], 0, []
    for c in targs:
        depth += c == "<"
        depth -= c == ">"
        if c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    args.append("".join(cur).strip())
    return args


def source_api(files: list[str]) -> tuple[set[str], dict[str, set[str]], dict[str, list[str]]]:
    """(module names, {class: names}, {class: base classes}) from the pybind11 sources."""
    module, members, bases = set(), {}, {}
    cpp_to_py, var_to_py, pending_bases = {}, {}, {}
    for text in files:
        for stmt in statements(text):
            for name in BIND_CONTAINER.findall(stmt):
                module.add(name)
                members.setdefault(name, set()).update(("append", "extend", "insert", "pop", "clear", "count"))
            head = HEADER.search(stmt)
            if head:
                args = top_level_args(head["targs"])
                scope = head["scope"]
                name = head["name"] if scope == "m" else f"{var_to_py.get(scope, scope)}.{head['name']}"
                if scope != "m":
                    members.setdefault(var_to_py.get(scope, scope), set()).add(head["name"])
                else:
                    module.add(name)
                cpp_to_py[args[0].split("::")[-1]] = name
                pending_bases[name] = [a.split("::")[-1] for a in args[1:]]
                if head["var"]:
                    var_to_py[head["var"]] = name
                names = members.setdefault(name, set())
                body = stmt[head.end():]
                names.update(MEMBER.findall(body))
                if "export_values" in body:  # enum values also live in the enclosing scope
                    target = module if scope == "m" else members.setdefault(var_to_py.get(scope, scope), set())
                    target.update(MEMBER.findall(body))
                continue
            use = VAR_USE.match(stmt)
            if use and use.group(1) in var_to_py:
                members.setdefault(var_to_py[use.group(1)], set()).update(MEMBER.findall(stmt))
            else:
                module.update(MODULE_DEF.findall(stmt))
    for name, args in pending_bases.items():
        known = [cpp_to_py[a] for a in args if a in cpp_to_py and cpp_to_py[a] != name]
        if known:
            bases[name] = known
    return module, members, bases


def read_source(repo: Path, tag: str) -> list[str]:
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    paths = [p for p in git("ls-tree", "-r", "--name-only", tag, "python/src").split()
             if p.endswith(".cpp")]
    if not paths:
        raise SystemExit(f"error: {repo} has no python/src/*.cpp at {tag}; clone NVIDIA/TensorRT with its tags")
    return [git("show", f"{tag}:{p}") for p in paths]


# ------------------------------------------------------------------------------ one release


def release_api(release: str, spec: dict, repo: Path, cache: Path) -> tuple[dict, dict]:
    """(api data, summary for releases.json)."""
    module, members, bases = source_api(read_source(repo, spec["source_tag"]))
    wheels, kept_module, kept = [], None, None
    dropped = {}
    for dist, platform in spec["wheels"]:
        wheel = download(dist, release, platform, cache)
        strings, init_text = wheel_strings(wheel)
        tails: dict[str, bool] = {}
        py_module, py_members = python_names(init_text)
        mod = {n for n in module if present(n, strings, tails)}
        cls = {}
        for name, names in members.items():
            if present(name.split(".")[-1], strings, tails):
                cls[name] = {n for n in names if present(n, strings, tails)}
        missing = [n for n in module - mod] + [f"{c}.{n}" for c, names in members.items()
                                                for n in names - cls.get(c, set())]
        dropped[wheel.name] = sorted(missing)
        mod |= py_module
        for name, names in py_members.items():
            cls.setdefault(name, set()).update(names)
        wheels.append({"file": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()})
        kept_module = mod if kept_module is None else kept_module & mod
        kept = cls if kept is None else {k: kept[k] & cls[k] for k in kept.keys() & cls.keys()}
    api = {"release": release, "source_tag": spec["source_tag"], "module": sorted(kept_module),
           "classes": {k: sorted(v) for k, v in sorted(kept.items())},
           "bases": {k: v for k, v in sorted(bases.items()) if k in kept}}
    summary = {"source_tag": spec["source_tag"], "jetpack": spec["jetpack"], "wheels": wheels,
               "source_names_not_in_wheel": dropped,
               "classes": len(api["classes"]), "names": sum(map(len, api["classes"].values())) + len(api["module"])}
    return api, summary


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=0, sort_keys=True, separators=(",", ":")) + "\n")
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensorrt-source", type=Path, required=True, help="a git clone of NVIDIA/TensorRT with tags")
    ap.add_argument("--release", action="append", choices=sorted(RELEASES), help="default: every release")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--wheels", type=Path, help="keep downloaded wheels here (default: a temporary folder)")
    args = ap.parse_args(argv)
    if not (args.tensorrt_source / ".git").exists() and not (args.tensorrt_source / "HEAD").exists():
        ap.error(f"{args.tensorrt_source} is not a git clone of NVIDIA/TensorRT")
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "releases.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.wheels or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        for release in args.release or sorted(RELEASES):
            api, summary = release_api(release, RELEASES[release], args.tensorrt_source, cache)
            write_json(args.out / f"api-{release}.json", api)
            index.setdefault("api", {})[release] = summary
            print(f"{release}: {summary['classes']} classes, {summary['names']} names "
                  f"(source {summary['source_tag']}; source names not in the wheel: {summary['source_names_not_in_wheel']})")
    write_json(index_path, index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
