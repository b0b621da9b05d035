"""The inference seam and its backend registry: `infer(crops) -> (points, scores)`.

crops: [N, 3, S, S] float32 RGB in [0, 1]; points: [N, K, 2] float32 in network-input pixels
(continuous convention); scores: [N, K] heatmap peak values. Everything above this seam
(pipeline, evaluation, benchmarks) is backend-agnostic.

One package per backend (`onnxruntime/`, `tensorrt/`, `pytorch/`): its `__init__` registers a
`BackendSpec` and stays light (no onnxruntime, tensorrt or torch at import); its `runner.py`
holds the backend class and is imported only by the spec's `open`. This module answers "which
backend runs this file" once, for the runtime and for shfan-eval alike (`resolve`,
`open_backend`):

    from shfan.runtime import backends
    backends.choices()                      # ("auto", "onnxruntime", "tensorrt", "pytorch")
    backends.get("tensorrt").available()    # importable here, without importing it
    backends.open_backend("model.onnx", threads=2).infer(crops)
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from shfan import platform_facts
from shfan.contracts import ModelInfo
from shfan.errors import BackendError, PluginError

log = logging.getLogger("shfan.runtime")

# File kinds more than one backend must tell apart (the owner accepts them, the others refuse them).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".tar", ".zip")  # PyTorch checkpoints (shfan.model.load_checkpoint)
ENGINE_SUFFIXES = (".engine", ".plan")  # serialized TensorRT engines


def is_checkpoint(path: Path) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix in CHECKPOINT_SUFFIXES


def is_engine(path: Path) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


# ------------------------------------------------------------------ the seam


class Backend(Protocol):
    """What every backend provides. Optional, where the graph ends at the heatmaps (ONNX Runtime
    on heatmap graphs, PyTorch): `outputs_heatmaps` (bool), `infer_heatmaps(crops) -> heatmaps
    [N, K, H, W]` (the network alone) and `decode_heatmaps(heatmaps) -> (points, scores)` (the
    host decoder alone), so benchmarks can time the two halves; check `getattr(b,
    "outputs_heatmaps", False)` before calling them."""

    info: ModelInfo
    name: str

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def decode_heatmaps(heatmaps: np.ndarray, info: ModelInfo, method: str = "subpixel"):
    """Host-side decoding for graphs that output heatmaps (NumPy reference codec)."""
    from shfan import codec

    pts, scores = codec.decode(heatmaps, method, info.window, info.temperature)
    return pts * (info.input_size / heatmaps.shape[-1]), scores


# ------------------------------------------------------------------ specs


class BackendSpec:
    """What the registry knows about one backend.

    open(model, *, precision=None, decoder="subpixel", threads=None) -> Backend: a ready
        backend; BackendError naming the fix otherwise.
    accepts(path) -> bool: which model files it runs (build folder, .onnx, engine, checkpoint).
    priority: auto tries the backends that accept a file highest first (ties: registration order).
    runtime: False for a backend the pipeline never uses (checkpoints: evaluation only), so
        the runtime's auto and --backend choices leave it out.
    title: its name in messages ("TensorRT engine not used: ...").
    refusal: what to say, `{path}` filled in, when another backend (or the runtime's auto) is
        given a file only this one runs.
    library / dists: the Python module it needs and the distributions that provide it; from
        them available() (importable here, checked without importing it) and version() (the
        installed distribution's, None when it is not installed), both probed by
        shfan.platform_facts. `available=` / `version=` callables replace those two checks
        (test doubles, backends with other needs).
    """

    def __init__(self, name: str, summary: str, module: str, open: Callable[..., object],
                 accepts: Callable[[Path], bool], library: str = "", dists: tuple[str, ...] = (),
                 available: Callable[[], bool] | None = None, version: Callable[[], "str | None"] | None = None,
                 priority: int = 0, runtime: bool = True, title: str = "", refusal: str = ""):
        self.name, self.summary, self.module = name, summary, module  # module: holds the backend class
        self.open, self.accepts = open, accepts
        self.library, self.dists = library, tuple(dists)
        self._available, self._version = available, version
        self.priority, self.runtime = priority, runtime
        self.title, self.refusal = title or name, refusal

    def available(self) -> bool:
        return self._available() if self._available else platform_facts.module_available(self.library)

    def version(self) -> str | None:
        if self._version:
            return self._version()
        return platform_facts.installed_version(self.library, self.dists or (self.library,))

    def __repr__(self) -> str:
        return f"BackendSpec({self.name!r}, module={self.module!r}, priority={self.priority})"


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


def names(runtime: bool = False) -> tuple[str, ...]:
    """Registered backend names, in registration order (`runtime`: only those the pipeline uses)."""
    return tuple(name for name, spec in _SPECS.items() if spec.runtime or not runtime)


def choices(runtime: bool = False) -> tuple[str, ...]:
    """What a --backend option accepts: 'auto' and every registered backend."""
    return ("auto", *names(runtime))


def get(name: str) -> BackendSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(names())}") from None


def available() -> tuple[str, ...]:
    """The registered backends whose library is importable here."""
    return tuple(name for name, spec in _SPECS.items() if spec.available())


# ------------------------------------------------------------------ which backend runs this file


def _refuse_for_owner(path: Path, asked: BackendSpec | None) -> None:
    """Raise the refusal of a backend that runs `path` when `asked` (None: the runtime's auto) cannot."""
    for spec in _SPECS.values():
        if spec is not asked and spec.refusal and spec.accepts(path):
            raise BackendError(spec.refusal.format(path=path))


def resolve(model, backend: str = "auto", runtime: bool = True) -> list[BackendSpec]:
    """The backends to try for `model`, in order. A named backend: itself (a file only another
    backend runs is refused with that backend's words). auto: those that accept the file and are
    available here, highest priority first (the pipeline's backends only, unless `runtime` is
    False); where none is available, the first that accepts it, whose open says what to install."""
    path = Path(model)
    if backend != "auto":
        spec = get(backend)
        if not spec.accepts(path):
            _refuse_for_owner(path, spec)
        return [spec]
    takers = sorted((s for s in _SPECS.values() if (s.runtime or not runtime) and s.accepts(path)),
                    key=lambda s: -s.priority)
    if not takers:
        _refuse_for_owner(path, None)
        raise BackendError(f"{path}: no backend runs this file; give a shfan-build folder, .onnx or .engine file")
    return [s for s in takers if s.available()] or takers[:1]


def open_backend(model, backend: str = "auto", precision: str | None = None, decoder: str = "subpixel",
                 threads: int | None = None, *, runtime: bool = True) -> Backend:
    """A backend for a build folder, .onnx file or .engine/.plan file (a checkpoint with the
    pytorch backend, or with auto when `runtime` is False: shfan-eval). auto tries `resolve`'s
    backends in turn: one that fails to open (an engine built for another TensorRT) falls back
    to the next, with a warning; the last one's error is raised."""
    if backend not in choices():
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(choices())}")
    path = Path(model)
    if not path.exists():
        raise BackendError(f"{path}: no such model (give a shfan-build folder, .onnx or .engine file)")
    specs = resolve(path, backend, runtime)
    options = dict(precision=precision, decoder=decoder, threads=threads)
    for spec, fallback in zip(specs, specs[1:]):
        try:
            return spec.open(path, **options)
        except (BackendError, PluginError) as exc:  # e.g. an engine whose plugin is not built here
            log.warning("%s not used: %s; falling back to %s", spec.title, exc, fallback.title)
    return specs[-1].open(path, **options)


# Each package registers its spec at import; the order here is the order of names().
BUILTIN = ("onnxruntime", "tensorrt", "pytorch")
for _package in BUILTIN:
    importlib.import_module(f"{__name__}.{_package}")
del _package
