"""Accuracy guard: a quantized model is accepted only if its NME on held-out faces (never used
for calibration) stays within a bound of the fp32 model's. When it does not, the layers that
matter most are kept in higher precision, step by step, each step measured, until it does.

Reference: ground truth when the faces carry annotations (drift = NME_q - NME_fp32, points of
inter-ocular NME), else the fp32 model's own predictions (drift = NME of q against fp32)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shfan.calibration.ort_tools import predict_landmarks
from shfan.calibration.sources import FaceSet


@dataclass
class Reference:
    faces: FaceSet
    model_config: dict
    fp32_points: np.ndarray
    kind: str  # "ground truth" | "fp32 predictions"
    fp32_nme: float

    @classmethod
    def from_fp32(cls, fp32_onnx, heldout: FaceSet, model_config: dict) -> "Reference":
        pts = predict_landmarks(fp32_onnx, heldout.crops, model_config)
        if heldout.points is not None:
            return cls(heldout, model_config, pts, "ground truth", mean_nme(pts, heldout.points))
        return cls(heldout, model_config, pts, "fp32 predictions", 0.0)

    def measure(self, onnx_path) -> tuple[float, float]:
        """(NME vs the reference, drift vs fp32) in inter-ocular NME points (%)."""
        pts = predict_landmarks(onnx_path, self.faces.crops, self.model_config)
        if self.kind == "ground truth":
            nme = mean_nme(pts, self.faces.points)
            return nme, nme - self.fp32_nme
        nme = mean_nme(pts, self.fp32_points)
        return nme, nme


def mean_nme(pred, ref) -> float:
    from shfan import metrics

    norm = "inter_ocular" if np.asarray(ref).shape[1] in metrics.OUTER_EYE_CORNERS else "box"
    return float(np.mean(metrics.nme_per_face(pred, ref, norm)))


def exclusion_ladder(stacks: int) -> list[list[str]]:
    """Growing sets of node-name regexes to keep out of int8, most sensitive first: the final
    heatmap head (its output is what the soft-argmax reads at subpixel precision), then the last
    stack's tail, then the whole last stack, then the stem (input statistics differ most from
    any calibration set). Names are the TorchScript exporter's (/l1/Conv, /m1/b1_4/...)."""
    last = stacks - 1
    head = [f"^/l{last}/"]
    tail = head + [f"^/conv_last{last}/", f"^/bn_end{last}/", f"^/top_m_{last}/"]
    whole = tail + [f"^/m{last}/"] + ([f"^/bl{last - 1}/", f"^/al{last - 1}/"] if last else [])
    stem = whole + ["^/conv1/", "^/bn1/", "^/conv2/", "^/conv3/", "^/conv4/"]
    return [[], head, tail, whole, stem]


@dataclass
class Attempt:
    excluded: list[str]
    nme: float
    drift: float

    def to_dict(self):
        return {"excluded_layers": self.excluded, "nme_inter_ocular": round(self.nme, 4), "nme_drift": round(self.drift, 4)}


@dataclass
class GuardResult:
    bound: float
    attempts: list[Attempt] = field(default_factory=list)
    within_bound: bool = False

    @property
    def accepted(self) -> Attempt:
        """The last attempt: the first within the bound, else the most conservative one."""
        return self.attempts[-1]

    def to_dict(self):
        return {"max_nme_drift": self.bound, "within_bound": self.within_bound,
                "attempts": [a.to_dict() for a in self.attempts]}


def guarded_quantize(quantize, reference: Reference, stacks: int, bound: float, log=lambda msg: None) -> GuardResult:
    """quantize(excluded_regexes) -> path of a quantized ONNX. Walks the exclusion ladder until
    the drift is within `bound`; the last file written is the accepted one."""
    result = GuardResult(bound)
    for excluded in exclusion_ladder(stacks):
        path = quantize(excluded)
        nme, drift = reference.measure(path)
        result.attempts.append(Attempt(excluded, nme, drift))
        log(f"excluded {excluded or 'nothing'}: NME {nme:.3f}, drift {drift:+.3f} (bound {bound})")
        if drift <= bound:
            result.within_bound = True
            break
    return result
