"""Check every TensorRT name shfan's code uses against each supported release's Python API
(tests/tensorrt_releases/api-<release>.json, made by scripts/tensorrt_api.py), without TensorRT.

The uses are found in the AST of every module, not in a hand list. A value is TensorRT's when it
comes from `import tensorrt as trt` (or a parameter or attribute named `trt`), from a call or
attribute on such a value, or from an annotation `x: trt.ICudaEngine` (parameters TensorRT objects
arrive through must be annotated so; modules import tensorrt for that under TYPE_CHECKING only).
`trt.A.B` is checked exactly (B must be a member of class or enum A, bases included); a member of
an object whose class is unknown must be a member of some class of that release.

A use need not exist in every release when the code guards it and says how:
- `getattr(obj, "name", default)` / `hasattr(obj, "name")`: probed at run time; the name must still
  exist in at least one supported release (a misspelt probe would silently never match);
- a `# tensorrt: <11` or `# tensorrt: >=10.5` comment on the line: required only in those releases.

    python scripts/tensorrt_check.py          # one line per problem; exit 1 when there is any
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "tensorrt_releases"
PACKAGES = ("shfan", "builder", "runtime", "calibration", "benchmarks", "scripts", "tests", "plugins")  # GPU tests too
GUARD = re.compile(r"#\s*tensorrt:\s*(<=|>=|<|>|==)\s*(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class Use:
    """One TensorRT name in the code. `path`: a chain from the module (("Logger", "WARNING"));
    `owner`/`name`: a member of an object made from `owner` (a path, or None: class unknown)."""

    file: str
    line: int
    text: str  # as written, for the report
    path: tuple[str, ...] | None = None
    owner: tuple[str, ...] | None = None
    name: str | None = None
    probed: bool = False  # getattr/hasattr: may be absent
    guard: tuple[str, str] | None = None  # (op, version) from a `# tensorrt:` comment


MODULE = ("module",)  # the tensorrt module itself


def _obj(path):
    return ("obj", path)  # an instance made by calling path (None: unknown class)


class Walker(ast.NodeVisitor):
    """Types just enough of one module to tell TensorRT values from the rest."""

    def __init__(self, file: str, source: str):
        self.file, self.lines = file, source.splitlines()
        self.uses: list[Use] = []
        self.class_attrs: dict[str, dict[str, tuple]] = {}
        self.classes: set[str] = set()
        self.module_env: dict[str, tuple] = {}
        self.env: dict[str, tuple] = {}
        self.cls: str | None = None

    # -------------------------------------------------------------- scopes

    def run(self, tree: ast.Module) -> list[Use]:
        self.classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for _ in range(2):  # self.attr types from any method reach every other one
            self.uses = []
            self.env = self.module_env
            for stmt in tree.body:
                self.visit(stmt)
        return self.uses

    def visit_ClassDef(self, node):
        outer, self.cls = self.cls, node.name
        self.class_attrs.setdefault(node.name, {})
        for stmt in node.body:
            self.visit(stmt)
        self.cls = outer

    def visit_FunctionDef(self, node):
        outer = self.env
        self.env = dict(outer)  # a nested function sees its enclosing function's names
        positional = node.args.posonlyargs + node.args.args
        args = positional + node.args.kwonlyargs
        with_default = {a.arg for a in positional[len(positional) - len(node.args.defaults):]} | {
            a.arg for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None}
        for i, arg in enumerate(args):
            if arg.arg == "trt" and arg.annotation is None and arg.arg not in with_default:  # trt="10.3" is no module
                self.env["trt"] = MODULE
            elif i == 0 and self.cls and arg.arg == "self":
                self.env["self"] = ("py", self.cls)
            elif arg.annotation is not None:
                kind = self.annotation(arg.annotation)
                if kind:
                    self.env[arg.arg] = kind
        for stmt in node.body:
            self.visit(stmt)
        self.env = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def annotation(self, node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp):  # X | None
            return self.annotation(node.left) or self.annotation(node.right)
        kind = self.expr(node)
        if kind and kind[0] == "path":
            return _obj(kind[1])
        if isinstance(node, ast.Name) and node.id in self.classes:
            return ("py", node.id)
        return None

    # -------------------------------------------------------------- statements

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name == "tensorrt":
                self.env[alias.asname or "tensorrt"] = MODULE

    def visit_If(self, node):  # `if TYPE_CHECKING: import tensorrt as trt` binds trt for annotations
        self.expr(node.test)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    def visit_Assign(self, node):
        kind = self.expr(node.value)
        for target in node.targets:
            self.bind(target, node.value, kind)

    def visit_AnnAssign(self, node):  # `network: trt.INetworkDefinition = ...`: the annotation names the class
        kind = self.expr(node.value) if node.value is not None else None
        self.bind(node.target, node.value, self.annotation(node.annotation) or kind)

    def bind(self, target, value, kind):
        if isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [None] * len(target.elts)
            for t, v in zip(target.elts, values):
                self.bind(t, v, self.expr(v) if v is not None else None)
            return
        if isinstance(target, ast.Name):
            if kind:
                self.env[target.id] = kind
            else:
                self.env.pop(target.id, None) if target.id != "trt" else None
        elif isinstance(target, ast.Attribute):
            owner = self.expr(target.value)
            if owner and owner[0] == "py" and kind:
                self.class_attrs.setdefault(owner[1], {})[target.attr] = kind
            elif owner and owner[0] in ("obj", "path", "module"):
                self.record(target, owner, target.attr)

    def generic_visit(self, node):
        if isinstance(node, ast.expr):
            self.expr(node)
            return
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def visit_Expr(self, node):
        self.expr(node.value)

    # -------------------------------------------------------------- expressions

    def record(self, node, owner, name, probed=False):
        line = self.lines[node.lineno - 1] if node.lineno <= len(self.lines) else ""
        guard = GUARD.search(line)
        text = ast.unparse(node)
        if owner == MODULE:
            use = Use(self.file, node.lineno, text, path=(name,), probed=probed)
        elif owner[0] == "path":
            use = Use(self.file, node.lineno, text, path=(*owner[1], name), probed=probed)
        else:
            use = Use(self.file, node.lineno, text, owner=owner[1], name=name, probed=probed)
        if guard:
            use = Use(**{**use.__dict__, "guard": (guard.group(1), guard.group(2))})
        self.uses.append(use)

    def expr(self, node):
        """The node's kind (MODULE, ("path", p), ("obj", p|None), ("py", cls)) or None; records uses."""
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return self.env.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self.expr(node.value)
            if owner is None:
                return None
            if owner == MODULE:
                self.record(node, owner, node.attr)
                return ("path", (node.attr,))
            if owner[0] == "path":
                self.record(node, owner, node.attr)
                return ("path", (*owner[1], node.attr))
            if owner[0] == "obj":
                if node.attr.startswith("__"):
                    return None
                self.record(node, owner, node.attr)
                return ("obj", None)
            if owner[0] == "py":
                return self.class_attrs.get(owner[1], {}).get(node.attr)
            return None
        if isinstance(node, ast.Call):
            func = node.func
            args = [self.expr(a) for a in node.args]
            for kw in node.keywords:
                self.expr(kw.value)
            if (isinstance(func, ast.Name) and func.id in ("getattr", "hasattr") and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                owner = args[0]
                if owner and owner[0] in ("obj", "path", "module"):
                    self.record(node, owner, node.args[1].value, probed=True)
                    return ("obj", None) if func.id == "getattr" else None
                return None
            kind = self.expr(func)
            if kind is None:
                return ("py", func.id) if isinstance(func, ast.Name) and func.id in self.classes else None
            if kind[0] == "path":
                return _obj(kind[1])
            if kind[0] == "obj":
                return ("obj", None)
            return None
        if isinstance(node, ast.BoolOp):
            kinds = [self.expr(v) for v in node.values]
            return next((k for k in kinds if k), None)
        if isinstance(node, ast.IfExp):
            self.expr(node.test)
            return self.expr(node.body) or self.expr(node.orelse)
        if isinstance(node, ast.NamedExpr):
            kind = self.expr(node.value)
            self.bind(node.target, node.value, kind)
            return kind
        if isinstance(node, ast.Lambda):
            self.expr(node.body)  # its parameters are unknown; uses of enclosing names still count
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child)
            elif isinstance(child, ast.comprehension):
                self.expr(child.iter)
                for cond in child.ifs:
                    self.expr(cond)
        return None


def find_uses(root: Path = ROOT, packages=PACKAGES) -> list[Use]:
    uses = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            source = path.read_text()
            if "trt" not in source and "tensorrt" not in source:
                continue
            uses.extend(Walker(str(path.relative_to(root)), source).run(ast.parse(source)))
    return uses


# ------------------------------------------------------------------------------ releases


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def load_releases(folder: Path = DATA) -> dict[str, dict]:
    index = json.loads((folder / "releases.json").read_text())
    return {r: json.loads((folder / f"api-{r}.json").read_text()) for r in sorted(index["api"], key=version_tuple)}


class Release:
    def __init__(self, api: dict):
        self.version = api["release"]
        self.module = set(api["module"])
        self.classes = {k: set(v) for k, v in api["classes"].items()}
        self.bases = api["bases"]
        self.all_members = set().union(*self.classes.values())

    def members(self, cls: str) -> set[str]:
        out, todo = set(), [cls]
        while todo:
            c = todo.pop()
            out |= self.classes.get(c, set())
            todo += self.bases.get(c, [])
        return out

    def resolve(self, path) -> tuple[str | None, str | None]:
        """(class reached by `path` or None, the first missing name or None)."""
        head, *rest = path
        if head.startswith("__") and head.endswith("__"):
            return None, None if head == "__version__" and head in self.module else head
        if head not in self.module and head not in self.classes:
            return None, head
        cls = head if head in self.classes else None
        for name in rest:
            if cls is None:
                return None, None  # a module function's result: unknown
            nested = f"{cls}.{name}"
            if nested in self.classes:
                cls = nested
            elif name in self.members(cls):
                cls = None
            else:
                return None, f"{cls}.{name}"
        return cls, None

    def missing(self, use: Use) -> str | None:
        if use.path is not None:
            return self.resolve(use.path)[1]
        cls = self.resolve(use.owner)[0] if use.owner else None
        if cls is not None:
            return None if use.name in self.members(cls) else f"{cls}.{use.name}"
        return None if use.name in self.all_members else f"?.{use.name}"

    def required(self, use: Use) -> bool:
        if use.guard is None:
            return True
        op, bound = use.guard
        mine, other = version_tuple(self.version), version_tuple(bound)
        mine = mine[:len(other)]
        return {"<": mine < other, "<=": mine <= other, ">": mine > other, ">=": mine >= other, "==": mine == other}[op]


def problems(uses: list[Use], releases: dict[str, dict]) -> list[str]:
    """One line per use that a supported release lacks (probed uses: that every release lacks)."""
    rel = [Release(api) for api in releases.values()]
    out = []
    for use in uses:
        where = f"{use.file}:{use.line}: {use.text}"
        if use.probed:
            if all(r.missing(use) for r in rel):
                out.append(f"{where}: probed name {use.name or use.path[-1]!r} exists in no supported TensorRT "
                           f"({', '.join(r.version for r in rel)})")
            continue
        lacking = [(r.version, m) for r in rel if r.required(use) for m in [r.missing(use)] if m]
        if lacking:
            out.append(f"{where}: {lacking[0][1]} is missing in TensorRT {', '.join(v for v, _ in lacking)}; "
                       "guard it (getattr, or a '# tensorrt: <N' comment) or use a name every release has")
    return out


def main(argv=None) -> int:
    uses = find_uses()
    found = problems(uses, load_releases())
    for line in found:
        print(line)
    files = sorted({u.file for u in uses})
    print(f"{len(uses)} TensorRT uses in {len(files)} files checked against TensorRT "
          f"{', '.join(load_releases())}: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
