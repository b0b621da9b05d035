"""Views made on the device in batches (the GPU trainer's data path), checked on the CPU against
the NumPy/OpenCV path: same warp, landmarks moved with the pixels, channel order of flips."""

import json

import numpy as np
import pytest
import torch

from shfan import augment, device_augment, geometry
from shfan import model as fan
from shfan import train as trainer
from shfan.datasets import read_300w

from conftest import consistency_losses

TINY = fan.ModelConfig(stacks=1, width=32, input_size=64)


@pytest.fixture(scope="module")
def faces(helen_dir):
    samples = read_300w(helen_dir)[:6]
    return samples, [s.load_image() for s in samples]


def test_warp_matches_opencv(faces):
    samples, images = faces
    canvas = device_augment.Canvases(images, samples, 192, "cpu")
    m, _ = device_augment.view_matrices(torch.Generator().manual_seed(1), 6, canvas, 96, augment.HARD, 68)
    out = device_augment.warp(canvas.images, m, 96)
    for i in range(6):
        ref = geometry.warp(canvas.images[i].numpy().transpose(1, 2, 0), m[i].numpy(), 96).astype(np.float32) / 255
        assert np.abs(out[i].numpy().transpose(1, 2, 0) - ref).max() < 3 / 255  # OpenCV rounds to uint8


def test_landmarks_move_with_the_pixels(faces):
    """Canvases of an image that is bright only at the landmarks: after the batched views (with
    rolls up to 60 degrees, box errors and flips) every target sits on a bright pixel."""
    import cv2

    samples, images = faces
    markers = []
    for s, img in zip(samples, images):
        mk = np.zeros_like(img)
        ij = np.floor(s.points).astype(int)
        mk[ij[:, 1], ij[:, 0]] = 255
        markers.append(cv2.dilate(mk, np.ones((5, 5), np.uint8)))  # survives the downscaled canvas
    canvas = device_augment.Canvases(markers, samples, 256, "cpu")
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        m, perm = device_augment.view_matrices(gen, 6, canvas, 128, augment.HARD, 68)
        crops = device_augment.warp(canvas.images, m, 128).amax(1)
        pts = torch.gather(device_augment.transform_points(canvas.points.double(), m), 1,
                           perm[..., None].expand(-1, -1, 2)).numpy()
        for crop, p in zip(crops.numpy(), pts):
            inside = (p > 2).all(1) & (p < 126).all(1)
            vals = [crop[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].max() for x, y in p[inside]]
            assert np.mean(np.array(vals) > 0.05) > 0.95


def test_batch_matches_the_consistency_contract(faces):
    """Perfect heatmaps of both views must be consistent through view2_to_view1 and the
    un-permutations; a batch with view 2 of the wrong faces must not."""
    samples, images = faces
    canvas = device_augment.Canvases(images, samples, 128, "cpu")
    batch = device_augment.siamese_batch(torch.Generator().manual_seed(2), canvas, torch.arange(6), 64, 16,
                                         augment.HARD)
    assert batch["image1"].shape == (6, 3, 64, 64) and batch["image1"].dtype == torch.float32
    perfect, shuffled = consistency_losses(batch, TINY)
    assert perfect < 0.15 and shuffled > 1.0


def _short_run(helen_dir, tmp_path, device_aug):
    samples = read_300w(helen_dir)[:20]
    cfg = trainer.TrainConfig(epochs=2, batch_size=4, lr=2e-3, val_every=2, threads=2, device_augment=device_aug)
    logs = []
    trainer.train(TINY, cfg, samples[:16], samples[16:], tmp_path, log=logs.append)
    return [json.loads(x) for x in logs if x.startswith("{")], logs


@pytest.mark.slow
def test_training_on_device_views_learns(helen_dir, tmp_path):
    hist, logs = _short_run(helen_dir, tmp_path, "on")
    assert any("views made on cpu" in x for x in logs)
    assert hist[1]["loss_heatmap"] < hist[0]["loss_heatmap"]
    assert set(hist[0]["ms_per_step"]) == {"data", "forward", "backward"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_uses_device_views_and_bf16(helen_dir, tmp_path):
    hist, logs = _short_run(helen_dir, tmp_path, "auto")
    assert any("views made on cuda" in x for x in logs)
    assert np.isfinite(hist[-1]["loss_heatmap"]) and hist[1]["loss_heatmap"] < hist[0]["loss_heatmap"]
    assert hist[-1]["val_nme_inter_ocular"] < 200
