"""shfan-build's options and the rules on them, light (no torch, onnx or ModelOpt): the CLI, bench
and the Python API import BuildOptions without the build workflow (builder/workflow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shfan.builder.decoder_node import DECODERS
from shfan.errors import BuildError
from shfan.builder.precision import CALIB_METHODS, CHOICES, PRECISIONS, TARGETS
from shfan.options import check_fields, option

MIN_CALIB_FACES = 32
MIN_WORKSPACE_MB = 64
MIN_HELDOUT = 8  # held-out faces the accuracy guard scores (fewer: no bound worth the name; 0 crashed ORT)
WARN_CALIB_FACES = 300
MAX_HOLDOUT = 200
FALLBACK_FACES = 384
SENSITIVITY_FACES = 32  # calibration faces (never the held-out ones) that pick ranges and rank convs


@dataclass
class BuildOptions:
    weights: str | None = option(None, "checkpoint to export, or a shipped model name: compact (default) | accurate | "
                                       "fast")
    onnx: str | None = option(None, "start from a shfan ONNX file (e.g. model_int8.onnx built elsewhere); no PyTorch "
                                    "needed", path="file")
    precision: str = option("best", "best: fastest precision within --max-nme-drift (default)", choices=CHOICES)
    calib_data: str | None = option(None, "faces for int8 calibration and the accuracy guard: a folder of images, a "
                                          "300-W folder (.pts used) or a video (default: a built-in fallback face)",
                                    path="path")
    max_calib: int = option(512, "at most this many calibration faces (default 512)", "nonneg")
    calib_method: str = option("percentile", "int8 activation ranges: percentile (default: the 99/99.5/99.9/99.99th "
                                             "of |x| that moves landmarks least), max, or ModelOpt's entropy (~10x "
                                             "slower on CPU)", choices=CALIB_METHODS)
    max_nme_drift: float = option(0.1, "largest accepted NME increase over fp32, in inter-ocular NME points "
                                       "(default 0.1)", "positive")
    decoder: str = option("onnx", "decoder in the graph: plugin (TensorRT SubpixelDecode), onnx (standard ops), "
                                  "none (heatmaps)", choices=DECODERS)
    plugin_lib: str | None = option(None, "SubpixelDecode plugin .so (default: $SHFAN_PLUGIN_LIB or plugins/build)",
                                    path="file")
    max_batch: int = option(4, "TensorRT profile: batch 1..N (default 4)", "positive")
    workspace_mb: int = option(1024, "TensorRT builder workspace (default 1024 MiB)", "positive")
    out: Path = option(Path("build"), "output folder (default build/)", path="out_dir")
    force: bool = option(False, "rebuild even when the output is up to date")
    triton_repo: str | None = option(None, "also write a Triton Inference Server model repository (onnxruntime and "
                                           "tensorrt backends, config.pbtxt, README) from the build to DIR",
                                     path="out_dir", metavar="DIR")
    target: str = option("tensorrt", "which int8 file: tensorrt (default: symmetric Q/DQ on convs, fp16 elsewhere, "
                                     "for TensorRT), cpu (for ONNX Runtime's CPU provider: integer kernels, fp32 "
                                     "elsewhere; ~1.7x faster than fp32 on a 2-core AVX2 CPU), or all (both in one "
                                     "folder; each runtime picks its own)", choices=TARGETS)
    # transient bars for long loops, drawn only when stderr is a terminal; off for library callers
    # (shfan-bench's cached builds), on for an interactive shfan-build
    progress: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> "BuildOptions":
        """BuildError naming the first option outside its declared range or choices (the rules
        shfan-build's options check too), or a source given twice."""
        check_fields(self, BuildError)
        if self.weights and self.onnx:
            raise BuildError("give either --weights (export from PyTorch) or --onnx (start from an ONNX file), not both")
        if self.workspace_mb < MIN_WORKSPACE_MB:
            raise BuildError(f"workspace_mb: expected a whole number >= {MIN_WORKSPACE_MB}, got {self.workspace_mb!r}")
        return self

    def validate_for_build(self) -> "BuildOptions":
        """The options again (a caller may have changed them since), and what int8 needs."""
        self.validate()
        if self.precision in ("int8", "best") and self.max_calib < MIN_CALIB_FACES:
            raise BuildError(f"--max-calib {self.max_calib} is below the {MIN_CALIB_FACES} faces int8 needs; use "
                             f">= 300 (--precision {self.precision} builds int8)")
        return self

    def precisions_to_build(self, source_precision: str) -> list[str]:
        """The precisions this build makes from a source file of `source_precision`."""
        if source_precision != "fp32":
            if self.precision not in (source_precision, "best"):
                raise BuildError(f"the --onnx file is already {source_precision}; build --precision "
                                 f"{source_precision}, or start from the fp32 model_fp32.onnx to get {self.precision}")
            return [source_precision]
        if self.precision == "best":
            return list(PRECISIONS)
        return ["fp32"] if self.precision == "fp32" else ["fp32", self.precision]

    def wants_target(self, target: str) -> bool:
        """Whether this build's int8 goes to `target` ("tensorrt" or "cpu")."""
        return self.target in (target, "all")
