"""Readers for landmark datasets; every reader yields `Sample`s in continuous pixel coordinates.

- 300-W style folders: image + `.pts` (1-based pixel centres: continuous = pts - 0.5)
- WFLW annotation txt: 98 x (x, y), box, 6 attributes, image name (0-based: continuous = +0.5)
- COFW-68: test images in `COFW_test_color.mat` (IsT, bboxesT) + `<i>_points.mat` (Points 68x2)
- AFLW-19: `AFLWinfo_release.mat` (data N x 38, bbox, nameList)
Malformed files raise DatasetError naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shfan.geometry import box_from_points
from shfan.io import IMAGE_SUFFIXES, read_rgb
from shfan.metrics import OUTER_EYE_CORNERS

FORMATS = ("300w", "wflw", "cofw68", "aflw19")


from shfan.errors import DatasetError  # noqa: E402  (re-exported)


@dataclass
class Sample:
    image_path: Path | None
    points: np.ndarray  # [K, 2] float32, continuous pixel coordinates
    box: np.ndarray  # (x0, y0, x1, y1): tight landmark box unless the dataset gives one
    image: np.ndarray | None = field(default=None, repr=False)  # for .mat datasets holding pixels
    weight: float = 1.0  # its heatmap loss's weight in training (shfan-train --extra-weight)

    def load_image(self) -> np.ndarray:
        """RGB uint8 image."""
        if self.image is not None:
            return self.image
        image = read_rgb(self.image_path)
        if image is None:
            raise DatasetError(f"{self.image_path}: cannot read image")
        return image


def check_face(pts: np.ndarray, where) -> np.ndarray:
    """`pts` unless the face is degenerate: zero inter-ocular distance or a landmark box of zero
    width or height cannot normalise an error (NME divides by it), so the reader refuses it here
    with `where` (file, file:line or face number) rather than the metrics later with NaN."""
    corners = OUTER_EYE_CORNERS.get(len(pts))
    if corners and float(np.linalg.norm(pts[corners[0]] - pts[corners[1]])) == 0.0:
        raise DatasetError(f"{where}: degenerate face (zero inter-ocular distance: the outer eye corners coincide); "
                           "fix or remove this annotation")
    wh = pts.max(axis=0) - pts.min(axis=0) if len(pts) else np.zeros(2)
    if not (wh > 0).all():
        raise DatasetError(f"{where}: degenerate face (its landmarks span zero width or height); fix or remove "
                           "this annotation")
    return pts


def read_pts(path) -> np.ndarray:
    """300-W .pts file -> [K, 2] continuous coordinates."""
    path = Path(path)
    lines = path.read_text(errors="replace").splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "{") + 1
        end = next(i for i, ln in enumerate(lines) if ln.strip() == "}")
    except StopIteration:
        raise DatasetError(f"{path}: not a .pts file (no '{{' ... '}}' block)") from None
    header = {ln.split(":")[0].strip(): ln.split(":", 1)[1].strip() for ln in lines[:start] if ":" in ln}
    pts = []
    for lineno in range(start, end):
        parts = lines[lineno].split()
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise DatasetError(f"{path}:{lineno + 1}: expected 'x y', got {lines[lineno]!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DatasetError(f"{path}:{lineno + 1}: point is not finite ({lines[lineno].strip()}); fix or remove "
                               "this file")
        pts.append((x, y))
    try:
        n = int(header.get("n_points", len(pts)))
    except ValueError:
        raise DatasetError(f"{path}: n_points is not a number ({header['n_points']!r})") from None
    if n != len(pts):
        raise DatasetError(f"{path}: header says n_points: {n} but {len(pts)} points follow")
    return np.asarray(pts, np.float32) - 0.5


def read_300w(folder) -> list[Sample]:
    """Images with a .pts file of the same stem, sorted by name."""
    folder = Path(folder)
    if folder.is_file():
        raise DatasetError(f"{folder} is a file; a 300-W dataset is a folder of images with .pts files "
                           "(annotation files have formats wflw, cofw68, aflw19)")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such dataset folder")
    samples = []
    for pts_path in sorted(folder.rglob("*.pts")):
        image = next((pts_path.with_suffix(s) for s in IMAGE_SUFFIXES if pts_path.with_suffix(s).is_file()), None)
        if image is None:
            raise DatasetError(f"{pts_path}: no image beside it ({'/'.join(IMAGE_SUFFIXES)})")
        pts = read_pts(pts_path)
        if samples and len(pts) != len(samples[0].points):
            raise DatasetError(f"{pts_path}: {len(pts)} points, but {samples[0].image_path.with_suffix('.pts').name} "
                               f"and the files before it have {len(samples[0].points)}; one landmark scheme per "
                               "dataset (fix or remove this file)")
        samples.append(Sample(image, check_face(pts, pts_path), box_from_points(pts)))
    if not samples:
        raise DatasetError(f"{folder}: no .pts annotations found (expected a 300-W style folder)")
    return samples


def read_wflw(annotation_txt, image_root=None) -> list[Sample]:
    """WFLW `list_98pt_rect_attr_*.txt`: 196 coords, 4 box values, 6 attributes, image path."""
    annotation_txt = _annotation_file(annotation_txt, "WFLW list_98pt_rect_attr_*.txt")
    root = Path(image_root) if image_root else annotation_txt.parent
    samples = []
    try:
        text = annotation_txt.read_text(errors="replace")
    except OSError as exc:
        raise DatasetError(f"{annotation_txt}: cannot read ({exc.strerror})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 207:
            raise DatasetError(f"{annotation_txt}:{lineno}: expected 207 fields (196 coords, 4 box, "
                               f"6 attributes, image), got {len(parts)}")
        try:
            values = np.asarray(parts[:200], np.float32)
        except ValueError:
            raise DatasetError(f"{annotation_txt}:{lineno}: non-numeric coordinate") from None
        if not np.isfinite(values).all():
            raise DatasetError(f"{annotation_txt}:{lineno}: coordinate or box is not finite")
        pts = values[:196].reshape(98, 2) + 0.5
        samples.append(Sample(root / parts[206], check_face(pts, f"{annotation_txt}:{lineno}"),
                              values[196:200].astype(np.float64)))
    return samples


def _annotation_file(path, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; give the annotation file ({what})")
    if not path.is_file():
        raise DatasetError(f"{path}: no such annotation file ({what})")
    return path


def _loadmat(path, what: str = "MATLAB .mat file"):
    import scipy.io

    path = _annotation_file(path, what)
    try:
        return scipy.io.loadmat(str(path), appendmat=False)  # appendmat: 'afw' would be read as 'afw.mat'
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read MATLAB file ({exc})") from None


def read_cofw68(test_mat, points_dir) -> list[Sample]:
    """COFW-68 (Ghiasi & Fowlkes): images from COFW_test_color.mat, 68 points from
    `<points_dir>/<i>_points.mat` (1-based MATLAB pixel coordinates)."""
    if points_dir is None or not Path(points_dir).is_dir():
        raise DatasetError(f"COFW-68 needs the folder of <i>_points.mat files (points_dir), got {points_dir}")
    data = _loadmat(test_mat, "COFW_test_color.mat")
    if "IsT" not in data:
        raise DatasetError(f"{test_mat}: no 'IsT' image array (is this COFW_test_color.mat?)")
    images = data["IsT"].ravel()
    samples = []
    for i, img in enumerate(images, 1):
        pm = Path(points_dir) / f"{i}_points.mat"
        pts_mat = _loadmat(pm, f"COFW-68 points for image {i}")
        if "Points" not in pts_mat or pts_mat["Points"].shape != (68, 2):
            raise DatasetError(f"{pm}: expected 'Points' of shape 68x2")
        if not np.isfinite(pts_mat["Points"]).all():
            raise DatasetError(f"{pm}: 'Points' holds non-finite values")
        pts = pts_mat["Points"].astype(np.float32) - 0.5
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        samples.append(Sample(None, check_face(pts, pm), box_from_points(pts), image=img.astype(np.uint8)))
    return samples


def read_aflw19(info_mat, image_root) -> list[Sample]:
    """AFLW-19 `AFLWinfo_release.mat`: data N x 38 (19 x's then 19 y's, 1-based), bbox, nameList."""
    if image_root is None or not Path(image_root).is_dir():
        raise DatasetError(f"AFLW-19 needs the image folder (image_root), got {image_root}")
    m = _loadmat(info_mat, "AFLWinfo_release.mat")
    for key in ("data", "bbox", "nameList"):
        if key not in m:
            raise DatasetError(f"{info_mat}: missing '{key}' (is this AFLWinfo_release.mat?)")
    data, bbox, names = m["data"], m["bbox"], m["nameList"].ravel()
    if data.shape[1] != 38:
        raise DatasetError(f"{info_mat}: 'data' must be N x 38, got {data.shape}")
    if not np.isfinite(data).all():
        raise DatasetError(f"{info_mat}: 'data' holds non-finite coordinates")
    samples = []
    for i, (row, box, name) in enumerate(zip(data, bbox, names)):
        pts = check_face(np.stack([row[:19], row[19:]], axis=1).astype(np.float32) - 0.5, f"{info_mat}: face {i + 1}")
        x0, x1, y0, y1 = (float(v) for v in box[:4])  # AFLW stores x1 x2 y1 y2
        name = str(np.asarray(name).ravel()[0])
        samples.append(Sample(Path(image_root) / name, pts, np.array([x0, y0, x1, y1])))
    return samples


def read_dataset(path, fmt: str = "300w", **kwargs) -> list[Sample]:
    if fmt == "300w":
        return read_300w(path)
    if fmt == "wflw":
        return read_wflw(path, kwargs.get("image_root"))
    if fmt == "cofw68":
        return read_cofw68(path, kwargs.get("points_dir"))
    if fmt == "aflw19":
        return read_aflw19(path, kwargs.get("image_root"))
    raise DatasetError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
