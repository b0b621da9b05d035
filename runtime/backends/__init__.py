"""The inference backend registry: one `BackendSpec` per backend, in registration order.

A backend is one module here that defines a spec and calls `register(SPEC)`; this package
imports those modules when it is imported, so `names()` lists every backend. The spec modules
stay light (no onnxruntime, tensorrt or torch at import): availability is checked without
importing the library, and the backend class is imported only by `open`.

    from shfan.runtime import backends
    backends.choices()                      # ("auto", "onnxruntime", "tensorrt", "pytorch")
    backends.get("tensorrt").available()    # importable here, without importing it
    backends.get("onnxruntime").open("model.onnx", threads=2).infer(crops)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from shfan import platform_facts
from shfan.errors import BackendError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".tar", ".zip")  # PyTorch checkpoints (shfan.model.load_checkpoint)
ENGINE_SUFFIXES = (".engine", ".plan")  # serialized TensorRT engines


class BackendSpec:
    """What the registry knows about one backend.

    open(model, *, precision=None, decoder="subpixel", threads=None) -> Backend: a ready
        backend (shfan.runtime.backend.Backend); BackendError naming the fix otherwise.
    accepts(path) -> bool: which model files it runs (build folder, .onnx, engine, checkpoint).
    library / dists: the Python module it needs and the distributions that provide it; from
        them available() (importable here, checked without importing it) and version() (the
        installed distribution's, None when it is not installed), both probed by
        shfan.platform_facts. `available=` / `version=`
        callables replace those two checks (test doubles, backends with other needs).
    """

    def __init__(self, name: str, summary: str, module: str, open: Callable[..., object],
                 accepts: Callable[[Path], bool], library: str = "", dists: tuple[str, ...] = (),
                 available: Callable[[], bool] | None = None, version: Callable[[], "str | None"] | None = None):
        self.name, self.summary, self.module = name, summary, module  # module: holds the backend class
        self.open, self.accepts = open, accepts
        self.library, self.dists = library, tuple(dists)
        self._available, self._version = available, version

    def available(self) -> bool:
        return self._available() if self._available else platform_facts.module_available(self.library)

    def version(self) -> str | None:
        if self._version:
            return self._version()
        return platform_facts.installed_version(self.library, self.dists or (self.library,))

    def __repr__(self) -> str:
        return f"BackendSpec({self.name!r}, module={self.module!r})"


_SPECS: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a backend (after the ones already registered). A second spec under a taken name is
    an error, so two modules cannot silently fight over one backend."""
    if spec.name == "auto":
        raise ValueError("'auto' is the open_backend choice, not a backend name")
    if spec.name in _SPECS and _SPECS[spec.name] is not spec:
        raise ValueError(f"a backend named {spec.name!r} is already registered ({_SPECS[spec.name].module})")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a backend (tests register throwaway ones)."""
    _SPECS.pop(name, None)


def names() -> tuple[str, ...]:
    """Registered backend names, in registration order."""
    return tuple(_SPECS)


def choices() -> tuple[str, ...]:
    """What a --backend option accepts: 'auto' and every registered backend."""
    return ("auto", *names())


def get(name: str) -> BackendSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(names())}") from None


def available() -> tuple[str, ...]:
    """The registered backends whose library is importable here."""
    return tuple(name for name, spec in _SPECS.items() if spec.available())


# ------------------------------------------------------------------ helpers for spec modules


def is_checkpoint(path: Path) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix in CHECKPOINT_SUFFIXES


def is_engine(path: Path) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


# Each module registers its spec at import; the order here is the order of names().
BUILTIN = ("onnxruntime", "tensorrt", "pytorch")
for _module in BUILTIN:
    importlib.import_module(f"{__name__}.{_module}")
del _module
