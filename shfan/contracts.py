"""The contracts between layers, in one torch-free module: the model config every stage agrees
on (trainer, exporter, builder, runtime), the ONNX metadata key that marks a file as ours, and
the build manifest that shfan-build writes and the runtime, eval, bench and Triton read.

Only stdlib here (the codec defaults are numbers), so the runtime can import it on a Jetson
without torch or onnx."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from shfan.errors import BackendError

META_KEY = "shfan"  # ONNX metadata_props key holding {"model_config": {...}, "precision": ..., ...}
MANIFEST = "manifest.json"  # the build folder's record (written by shfan.builder.artifacts)
PRECISIONS = ("fp32", "fp16", "int8")  # the ONNX files of a build folder (manifest "artifacts" keys)
MIN_TENSORRT = (10, 1)  # IPluginV3 (the SubpixelDecode plugin) and strongly typed networks: JetPack 6.1+
HEATMAP_STRIDE = 4  # input px per heatmap px: the hourglass runs at 1/4 of the input
SUPPORTED_LANDMARKS = (68, 98, 29, 19)
# fan: face-alignment's stacked hourglass (pre-activation blocks); fast: conv -> BN -> ReLU blocks
# throughout, so every BatchNorm folds into its convolution (CPUs without int8 dot products)
ARCHS = ("fan", "fast")
# The codec's defaults (shfan.codec re-uses these; kept here so this module stays numpy-free).
DEFAULT_SIGMA = 2.0
DEFAULT_WINDOW = 5
DEFAULT_TEMPERATURE = 12.0


MIN_OPSET, MAX_OPSET = 11, 23  # ONNX opsets a build folder may record (shfan-build writes 17)


def _check_version(version: str, folder, rebuild: str) -> None:
    """A manifest from a newer major shfan is refused, a newer minor one warned about."""
    import logging
    import re

    from shfan import __version__

    def parts(v):
        m = re.match(r"\s*(\d+)\.(\d+)", v)
        return (int(m.group(1)), int(m.group(2))) if m else None

    theirs, ours = parts(version), parts(__version__)
    if theirs is None:
        raise BackendError(f"{folder}: {MANIFEST} has an unreadable shfan_version {version!r}; {rebuild}")
    if theirs[0] > ours[0]:
        raise BackendError(f"{folder}: built by shfan {version}, newer than this shfan {__version__}; upgrade shfan, "
                           f"or {rebuild}")
    if theirs > ours:
        logging.getLogger("shfan.contracts").warning("%s: built by shfan %s, newer than this shfan %s; it may use "
                                                     "features this version ignores", folder, version, __version__)


def heatmap_size(input_size: int) -> int:
    return int(input_size) // HEATMAP_STRIDE


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and decode its output; stored in checkpoints, in the
    ONNX metadata and in the build manifest."""

    stacks: int = 4
    width: int = 256
    landmarks: int = 68
    input_size: int = 256
    sigma: float = DEFAULT_SIGMA
    window: int = DEFAULT_WINDOW
    temperature: float = DEFAULT_TEMPERATURE
    arch: str = "fan"  # one of ARCHS: the network built from these numbers (shfan.model.build)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.landmarks not in SUPPORTED_LANDMARKS:
            raise ValueError(f"landmarks must be one of {SUPPORTED_LANDMARKS}, got {self.landmarks}")
        if self.input_size % 64:
            raise ValueError(f"input_size must be a multiple of 64 (hourglass depth 4), got {self.input_size}")
        if self.stacks < 1 or self.width % 4:
            raise ValueError(f"need stacks >= 1 and width divisible by 4, got {self.stacks}, {self.width}")

    @property
    def heatmap_size(self) -> int:
        return heatmap_size(self.input_size)

    @property
    def heatmap_scale(self) -> float:
        """Input px per heatmap px (points decoded on the heatmap grid are multiplied by it)."""
        return self.input_size / self.heatmap_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ModelInfo:
    """What a backend needs to run and decode a graph: the part of ModelConfig an exported file
    carries (foreign exports without our metadata give only sizes, so no validation here)."""

    input_size: int
    landmarks: int
    heatmap_size: int
    window: int = DEFAULT_WINDOW
    temperature: float = DEFAULT_TEMPERATURE

    @property
    def heatmap_scale(self) -> float:
        return self.input_size / self.heatmap_size

    @classmethod
    def from_sizes(cls, input_size: int, landmarks: int) -> "ModelInfo":
        return cls(int(input_size), int(landmarks), heatmap_size(input_size))

    @classmethod
    def from_config(cls, cfg: dict) -> "ModelInfo":
        return cls(int(cfg["input_size"]), int(cfg["landmarks"]), heatmap_size(cfg["input_size"]),
                   int(cfg.get("window", DEFAULT_WINDOW)), float(cfg.get("temperature", DEFAULT_TEMPERATURE)))


ARTIFACT_TARGETS = ("tensorrt", "cpu")  # a model file's runtime (manifest entries without "target": tensorrt)


@dataclass(frozen=True)
class Artifact:
    """One model file of a build folder, keyed by (precision, target). target "tensorrt": the file
    TensorRT builds its engine from (fp32/fp16 run anywhere; int8 has symmetric Q/DQ on convs);
    "cpu": int8 built for ONNX Runtime's CPU provider (`--target cpu|all`)."""

    precision: str
    target: str = "tensorrt"
    onnx: str | None = None  # the heatmap-output graph (what ONNX Runtime runs)
    onnx_decoded: str | None = None  # the same with the decoder node(s); the engine's source
    engine: str | None = None
    nme_inter_ocular: float | None = None
    nme_drift: float | None = None
    excluded_layers: tuple[str, ...] = ()
    size_bytes: int | None = None
    ort_cpu_latency_ms: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.precision, self.target

    @property
    def engine_source(self) -> str | None:
        return self.onnx_decoded or self.onnx

    def to_json(self) -> dict:
        """The manifest entry (the format every shfan version reads: "target" only for cpu)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("precision", "target")}
        d["excluded_layers"] = list(self.excluded_layers)
        return {**d, "target": "cpu"} if self.target == "cpu" else d

    @classmethod
    def from_json(cls, precision: str, data, target: str | None = None) -> "Artifact":
        """A manifest entry (unknown keys dropped); a non-object reads as a file-less record,
        which BuildManifest.checked refuses."""
        data = data if isinstance(data, dict) else {}
        names = {f.name for f in dataclasses.fields(cls)} - {"precision", "target"}
        known = {k: v for k, v in data.items() if k in names}
        if isinstance(known.get("excluded_layers"), list):
            known["excluded_layers"] = tuple(known["excluded_layers"])
        return cls(precision, target or ("cpu" if data.get("target") == "cpu" else "tensorrt"), **known)


def artifacts_from_json(entries: dict) -> dict[tuple[str, str], Artifact]:
    """manifest["artifacts"] ({precision: entry[, "cpu": entry]}, every version so far) as typed
    records keyed by (precision, target)."""
    records = {}
    for precision, entry in entries.items():
        main = Artifact.from_json(precision, entry)
        records[main.key] = main
        if isinstance(entry, dict) and isinstance(entry.get("cpu"), dict):
            records[(precision, "cpu")] = Artifact.from_json(precision, entry["cpu"], "cpu")
    return records


def artifacts_to_json(records: dict[tuple[str, str], Artifact]) -> dict:
    """The inverse: one entry per precision (its TensorRT file when it has one), the CPU file
    nested under "cpu" beside it, so manifests stay readable by older shfan versions."""
    entries = {}
    for (precision, target), art in records.items():
        if precision not in entries:
            entries[precision] = art.to_json()
        elif target == "cpu":
            entries[precision]["cpu"] = art.to_json()
        else:  # the TensorRT file goes first, the CPU one under it
            entries[precision] = {**art.to_json(), "cpu": entries[precision]}
    return entries


@dataclass
class BuildManifest:
    """A shfan-build folder's manifest.json. `artifacts` holds one typed record per model file,
    keyed by (precision, target); given in the JSON form ({precision: entry}) it is converted."""

    shfan_version: str | None = None
    model_config: dict = field(default_factory=dict)
    model_sha256: str | None = None
    decoder: str | None = "plugin"  # None (an explicit null): the engine has no plugin node
    opset: int | None = None
    selected_precision: str | None = None
    artifacts: dict[tuple[str, str], Artifact] = field(default_factory=dict)
    tensorrt: dict | None = None
    plugin_sha256: str | None = None
    plugin_lib: str | None = None
    calibration: dict = field(default_factory=dict)

    def __post_init__(self):
        if any(not isinstance(a, Artifact) for a in self.artifacts.values()):
            self.artifacts = artifacts_from_json(self.artifacts)

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model_config)

    # ------------------------------------------------------------ JSON

    def to_json(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "artifacts": artifacts_to_json(self.artifacts)}

    @classmethod
    def from_json(cls, data: dict, where: str = "manifest.json") -> "BuildManifest":
        if not isinstance(data, dict) or not isinstance(data.get("artifacts", {}), dict):
            raise BackendError(f"{where}: not a shfan-build manifest (expected a JSON object with 'artifacts'); "
                               "rebuild with shfan-build")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names and (v is not None or k == "decoder")}
        return cls(**known)

    @classmethod
    def read(cls, folder) -> "BuildManifest":
        """The manifest of a build folder; a one-line BackendError naming the fix otherwise."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise BackendError(f"{folder}: no {MANIFEST}; is this a shfan-build output folder?")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BackendError(f"{path}: corrupt manifest ({getattr(exc, 'msg', exc)}); rebuild with shfan-build") \
                from None
        return cls.from_json(data, str(path)).checked(folder)

    def checked(self, folder) -> "BuildManifest":
        """This manifest if this shfan can use the folder; else a one-line BackendError naming the
        fix: no models listed (an emptied or foreign manifest), a newer shfan's format (a newer
        minor version only warns), an unsupported landmark count or ONNX opset."""
        rebuild = f"rebuild it: shfan-build --out {folder}"
        if not self.artifacts or not all(isinstance(a.onnx, str) and a.onnx for a in self.artifacts.values()):
            raise BackendError(f"{folder}: not a usable shfan-build folder (its {MANIFEST} lists no models); {rebuild}")
        unknown = sorted(set(self.precisions) - set(PRECISIONS))
        if unknown:
            raise BackendError(f"{folder}: {MANIFEST} lists unknown precision(s) {', '.join(unknown)}; {rebuild}")
        if self.shfan_version is not None:
            _check_version(str(self.shfan_version), folder, rebuild)
        if self.model_config:
            try:
                ModelConfig.from_dict(self.model_config)
            except (TypeError, ValueError) as exc:
                raise BackendError(f"{folder}: {MANIFEST} has an unusable model_config ({exc}); {rebuild}") from None
        if self.opset is not None and not (isinstance(self.opset, int) and MIN_OPSET <= self.opset <= MAX_OPSET):
            raise BackendError(f"{folder}: {MANIFEST} says ONNX opset {self.opset!r}; this shfan runs opsets "
                               f"{MIN_OPSET}-{MAX_OPSET}; {rebuild}")
        return self

    def check_model(self, folder, info: "ModelInfo") -> None:
        """BackendError when the model file opened from this folder is not the one the manifest
        describes (landmarks, input size): an edited manifest or files mixed from two builds."""
        cfg = self.model_config or {}
        for key, have in (("landmarks", info.landmarks), ("input_size", info.input_size)):
            if key in cfg and cfg[key] != have:
                raise BackendError(f"{folder}: {MANIFEST} says {key} {cfg[key]!r} but the model file has {have}; "
                                   f"the folder is damaged or mixed; rebuild it: shfan-build --out {folder}")

    # ------------------------------------------------------------ lookups

    @property
    def precisions(self) -> list[str]:
        """The precisions of this build, in build order (each once)."""
        return list(dict.fromkeys(p for p, _ in self.artifacts))

    def artifact(self, precision: str, cpu: bool = False) -> Artifact | None:
        """A precision's file: its TensorRT one, or with `cpu` the one built for ONNX Runtime's
        CPU provider; the other when it is the only one; None without that precision."""
        first, other = ("cpu", "tensorrt") if cpu else ("tensorrt", "cpu")
        return self.artifacts.get((precision, first)) or self.artifacts.get((precision, other))

    def precision_or_default(self, precision: str | None = None) -> str | None:
        """The precision asked for, else the one the build selected, else its first."""
        return precision or self.selected_precision or next(iter(self.precisions), None)

    def entry(self, precision: str | None = None, folder="this build", cpu: bool = False) -> tuple[str, Artifact]:
        """(precision, its artifact, see `artifact`); BackendError naming the shfan-build command
        when absent."""
        precision = self.precision_or_default(precision)
        art = self.artifact(precision, cpu)
        if art is None:
            raise BackendError(f"{folder}: no {precision} model in this build (has: "
                               f"{', '.join(self.precisions) or 'none'}); run shfan-build --precision {precision}")
        return precision, art

    def onnx_for(self, folder, precision: str | None = None, cpu: bool = True) -> Path:
        """The ONNX Runtime-runnable file (heatmap output) for a precision. With `cpu`, the file
        built for ONNX Runtime's CPU provider (`--target cpu|all`) when the build has one."""
        return Path(folder) / self.entry(precision, folder, cpu)[1].onnx

    # ------------------------------------------------------------ TensorRT engines

    @property
    def needs_plugin(self) -> bool:
        """The engine contains the SubpixelDecode node. Older builds recorded the plugin hash for
        every decoder; only `--decoder plugin` engines actually need it (no decoder key: plugin,
        the builder's default; "decoder": null: none)."""
        return bool(self.plugin_sha256 and self.decoder == "plugin")

    def engine_problems(self, tensorrt_version: str, sm: int | None, device_name: str | None = None,
                        plugin_sha256: str | None = None) -> list[str]:
        """Why the engine recorded here cannot run on this system (empty: it can)."""
        built = self.tensorrt or {}
        if not built:
            return ["the build has no TensorRT engine (it was made without TensorRT)"]
        problems = []
        if str(built.get("version")) != str(tensorrt_version):
            problems.append(f"built with TensorRT {built.get('version')}, this system has {tensorrt_version}")
        if built.get("sm") is not None and sm is not None and int(built["sm"]) != int(sm):
            problems.append(f"built for sm_{built['sm']} ({built.get('device') or 'unknown GPU'}), this GPU is "
                            f"sm_{sm} ({device_name or 'unknown'})")
        want = self.plugin_sha256 if self.needs_plugin else None
        if want and plugin_sha256 != want:
            problems.append("the SubpixelDecode plugin library differs from the one the engine was built with"
                            if plugin_sha256 else "the engine needs the SubpixelDecode plugin library, which is not found")
        return problems

    def rebuild_command(self, folder, precision: str) -> str:
        """The shfan-build line that makes this precision's engine on the machine it runs on."""
        art = self.artifact(precision)
        onnx = (art and art.engine_source) or f"model_{precision}.onnx"
        decoder = self.decoder or "plugin"
        return f"shfan-build --onnx {Path(folder) / onnx} --precision {precision} --decoder {decoder} --out {folder}"
