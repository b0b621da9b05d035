"""300-W protocol metrics (DESIGN.md §8): NME, cumulative error curve, AUC, failure rate."""

from __future__ import annotations

import numpy as np

# Outer eye corners per landmark scheme, for inter-ocular normalisation (the dataset readers
# refuse faces where their distance is zero: shfan.datasets.check_face).
OUTER_EYE_CORNERS = {68: (36, 45), 98: (60, 72), 29: (8, 9), 19: (6, 11)}
NORMALISATIONS = ("inter_ocular", "box", "diag")


def normaliser(gt: np.ndarray, norm: str) -> np.ndarray:
    """Per-face normalising distance d for gt [N, K, 2]."""
    gt = np.asarray(gt, np.float64)
    if norm == "inter_ocular":
        k = gt.shape[1]
        if k not in OUTER_EYE_CORNERS:
            raise ValueError(f"no inter-ocular definition for {k} landmarks; use --norm box")
        a, b = OUTER_EYE_CORNERS[k]
        return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    wh = gt.max(axis=1) - gt.min(axis=1)
    if norm == "box":
        return np.sqrt(wh[:, 0] * wh[:, 1])
    if norm == "diag":
        return np.linalg.norm(wh, axis=-1)
    raise ValueError(f"unknown normalisation {norm!r}; choose one of {', '.join(NORMALISATIONS)}")


def nme_per_face(pred, gt, norm: str = "inter_ocular") -> np.ndarray:
    """Mean point-to-point error over landmarks / d, per face, in percent."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    err = np.linalg.norm(pred - gt, axis=-1).mean(axis=1)
    return 100.0 * err / normaliser(gt, norm)


def ced(nme_percent, threshold_percent: float, steps: int = 1000):
    """Cumulative error distribution on [0, threshold]: (x, share of faces with NME <= x)."""
    x = np.linspace(0.0, threshold_percent, steps + 1)
    e = np.sort(np.asarray(nme_percent, np.float64))
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)


def auc(nme_percent, threshold_percent: float) -> float:
    """Area under the CED on [0, a], divided by a (1.0 = every face has zero error)."""
    x, y = ced(nme_percent, threshold_percent)
    return float(_trapezoid()(y, x) / threshold_percent)


def _trapezoid():
    """np.trapezoid (NumPy >= 2), else np.trapz: Jetsons keep numpy < 2 (apt's OpenCV is built
    against 1.x), where only trapz exists; NumPy 2.4 removed trapz."""
    return getattr(np, "trapezoid", None) or np.trapz


def failure_rate(nme_percent, threshold_percent: float) -> float:
    """Share of faces whose NME exceeds the threshold."""
    return float(np.mean(np.asarray(nme_percent) > threshold_percent))


def summary(pred, gt) -> dict:
    """The numbers shfan-eval reports (percent for NME, fractions for AUC/FR)."""
    io = nme_per_face(pred, gt, "inter_ocular")
    box = nme_per_face(pred, gt, "box")
    return {
        "faces": int(len(io)),
        "nme_inter_ocular": float(io.mean()),
        "nme_box": float(box.mean()),
        "nme_diag": float(nme_per_face(pred, gt, "diag").mean()),
        "auc_inter_ocular_10": auc(io, 10.0),
        "fr_inter_ocular_10": failure_rate(io, 10.0),
        "auc_box_7": auc(box, 7.0),
        "fr_box_7": failure_rate(box, 7.0),
    }


def save_ced_plot(curves: dict, path, threshold_percent: float = 10.0, norm_label: str = "inter-ocular") -> None:
    """CED plot (one curve per label -> per-face NME list) written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for label, errs in curves.items():
        x, y = ced(errs, threshold_percent)
        ax.plot(x, 100 * y, label=f"{label} (AUC {auc(errs, threshold_percent):.3f})")
    ax.set_xlabel(f"NME ({norm_label}, %)")
    ax.set_ylabel("faces (%)")
    ax.set_xlim(0, threshold_percent)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    from shfan.atomic import atomic_path

    try:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
