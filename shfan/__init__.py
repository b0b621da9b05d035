"""shfan: SH-FAN subpixel facial landmarks, from PyTorch to TensorRT on Jetson.

Importing shfan is light (numpy only); torch, onnx, tensorrt and pycuda load only in the
modules that need them.

The public surface (`dir(shfan)`, `shfan.__all__`): `Pipeline`, `PipelineOptions`, `Result`, `Face`
(shfan.runtime.pipeline, loaded on first use), `ShfanError` (the base of every error a user can
fix) and `__version__`. The workflows are sub-packages, imported by name: `shfan.runtime`
(inference), `shfan.builder` (shfan-build), `shfan.calibration`, `shfan.evaluate`, `shfan.train`,
`shfan.bench`, `shfan.serve`, `shfan.doctor`, `shfan.weights` (`SUBPACKAGES` lists them).
"""

from pathlib import Path as _Path

from shfan.errors import ShfanError

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it, `shfan --version` prints it

# A plain source checkout (on sys.path, not installed): runtime/, builder/ and calibration/ sit beside
# shfan/ there (pyproject.toml maps them into the package), so they are searched there too. An
# installed wheel holds them inside shfan/ and an editable install maps them itself.
_ROOT = _Path(__file__).resolve().parent.parent
if (_ROOT / "runtime" / "__init__.py").is_file() and not (_Path(__file__).parent / "runtime").is_dir():
    __path__.append(str(_ROOT))  # noqa: F821  (a package's __path__)

_LAZY = {"Pipeline": "shfan.runtime.pipeline", "PipelineOptions": "shfan.runtime.pipeline",
         "Result": "shfan.runtime.pipeline", "Face": "shfan.runtime.pipeline"}
SUBPACKAGES = ("runtime", "builder", "calibration", "evaluate", "train", "bench", "serve", "doctor", "weights")
__all__ = ["Pipeline", "PipelineOptions", "Result", "Face", "ShfanError", "__version__"]


def __getattr__(name):
    # Lazy so that `import shfan` stays light; the pipeline pulls in OpenCV and a backend.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shfan' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) - {"_Path", "_ROOT", "_LAZY"} | set(__all__) | set(SUBPACKAGES))
