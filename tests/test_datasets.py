import numpy as np
import pytest

from shfan import datasets

from conftest import assert_each_raises


def write_pts(path, pts, n=None):
    body = "\n".join(f"{x} {y}" for x, y in pts)
    path.write_text(f"version: 1\nn_points: {n or len(pts)}\n{{\n{body}\n}}\n")


def test_pts_are_one_based_centres(tmp_path):
    write_pts(tmp_path / "a.pts", [(1.0, 1.0), (10.5, 3.25)])
    np.testing.assert_allclose(datasets.read_pts(tmp_path / "a.pts"), [[0.5, 0.5], [10.0, 2.75]])


def test_malformed_pts_names_file_and_line(tmp_path):
    p = tmp_path / "bad.pts"
    p.write_text("version: 1\nn_points: 2\n{\n1 2\n3 oops\n}\n")
    with pytest.raises(datasets.DatasetError, match=r"bad.pts:5"):
        datasets.read_pts(p)
    write_pts(p, [(1, 2)], n=3)
    with pytest.raises(datasets.DatasetError, match="n_points"):
        datasets.read_pts(p)


def test_300w_folder(afw_dir):
    samples = datasets.read_300w(afw_dir)
    assert len(samples) == 337
    s = samples[0]
    assert s.points.shape == (68, 2) and s.points.dtype == np.float32
    img = s.load_image()
    assert img.ndim == 3 and img.shape[2] == 3
    assert (s.points.min(0) >= 0).all() and (s.points.max(0) <= img.shape[1::-1]).all()


def test_missing_folder_and_empty_folder(tmp_path):
    assert_each_raises(datasets.DatasetError, datasets.read_300w,
                       [(tmp_path / "nope", "no such dataset folder"), (tmp_path, "no .pts")])


def test_wflw(tmp_path):
    vals = list(np.arange(196, dtype=float)) + [1, 2, 30, 40] + [0] * 6
    (tmp_path / "list.txt").write_text(" ".join(map(str, vals)) + " imgs/a.jpg\n")
    s = datasets.read_wflw(tmp_path / "list.txt")[0]
    assert s.points.shape == (98, 2) and s.points[1].tolist() == [2.5, 3.5]
    assert s.image_path == tmp_path / "imgs/a.jpg" and s.box.tolist() == [1, 2, 30, 40]
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(datasets.DatasetError, match=r"bad.txt:1: expected 207"):
        datasets.read_wflw(tmp_path / "bad.txt")


def test_aflw19_and_cofw68(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    data = np.concatenate([np.arange(1, 20), np.arange(101, 120)])[None].astype(float)
    names = np.empty((1, 1), object)
    names[0, 0] = np.array(["0/image.jpg"])
    scipy_io.savemat(tmp_path / "AFLWinfo_release.mat", {"data": data, "bbox": np.array([[1, 50, 2, 60]]), "nameList": names})
    s = datasets.read_aflw19(tmp_path / "AFLWinfo_release.mat", tmp_path)[0]
    assert s.points.shape == (19, 2) and s.points[0].tolist() == [0.5, 100.5]
    assert s.box.tolist() == [1, 2, 50, 60]

    imgs = np.empty((1, 1), object)
    imgs[0, 0] = np.zeros((30, 40), np.uint8)
    scipy_io.savemat(tmp_path / "COFW_test_color.mat", {"IsT": imgs})
    points = np.stack([np.arange(68) + 1.0, 2.0 * np.arange(68) + 1.0], 1)
    scipy_io.savemat(tmp_path / "1_points.mat", {"Points": points})
    s = datasets.read_cofw68(tmp_path / "COFW_test_color.mat", tmp_path)[0]
    assert s.load_image().shape == (30, 40, 3) and s.points[0].tolist() == [0.5, 0.5]
    scipy_io.savemat(tmp_path / "1_points.mat", {"Points": np.ones((68, 2))})  # every point on one pixel (#29 row 10)
    with pytest.raises(datasets.DatasetError, match="1_points.mat: degenerate face"):
        datasets.read_cofw68(tmp_path / "COFW_test_color.mat", tmp_path)
