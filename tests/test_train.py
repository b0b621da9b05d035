"""Trainer mechanics on a tiny model: views are geometrically right, loss falls, resume works."""

import json

import numpy as np
import pytest
import torch

from shfan import augment, codec_torch, geometry
from shfan import model as fan
from shfan import train as trainer
from shfan.datasets import read_300w

TINY = fan.ModelConfig(stacks=1, width=32, input_size=64)


def test_flip_map_is_a_mirror_involution():
    assert sorted(augment.FLIP_68.tolist()) == list(range(68))
    assert (augment.FLIP_68[augment.FLIP_68] == np.arange(68)).all()
    assert augment.FLIP_68[36] == 45 and augment.FLIP_68[48] == 54 and augment.FLIP_68[30] == 30


def test_views_put_targets_on_the_warped_landmarks(helen_dir):
    """Warp a synthetic image whose bright pixels sit at the landmarks: each view's targets must
    land on the bright pixels, flipped or not."""
    s = read_300w(helen_dir)[0]
    img = s.load_image()
    marker = np.zeros(img.shape[:2], np.float32)
    ij = np.floor(s.points).astype(int)
    marker[ij[:, 1], ij[:, 0]] = 1.0
    rng = np.random.default_rng(3)
    cfg = augment.AugmentConfig(color_jitter=0, occlusion_prob=0)
    for _ in range(6):
        m, perm = augment.random_view(rng, s.box, 256, cfg, 68)
        warped = geometry.warp(marker, m, 256)
        pts = geometry.transform_points(s.points, m)[perm]
        inside = (pts > 2).all(1) & (pts < 254).all(1)
        vals = [warped[int(p[1]) - 2:int(p[1]) + 3, int(p[0]) - 2:int(p[0]) + 3].max() for p in pts[inside]]
        assert np.mean(np.array(vals) > 0) > 0.95


def test_consistency_is_zero_for_perfect_predictions(helen_dir):
    samples = read_300w(helen_dir)[:4]
    ds = trainer.SiameseViews(samples, trainer.load_images(samples), TINY, augment.AugmentConfig(), 0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    # keep points away from the border where the clipped window biases decoding
    h1 = codec_torch.encode(batch["points1"], TINY.heatmap_size, TINY.sigma)
    h2 = codec_torch.encode(batch["points2"], TINY.heatmap_size, TINY.sigma)
    perfect = trainer.consistency_loss(h1, h2, batch, TINY, TINY.heatmap_size / TINY.input_size)
    shuffled = trainer.consistency_loss(h1, h2.flip(0), batch, TINY, TINY.heatmap_size / TINY.input_size)
    assert perfect.item() < 0.1 and shuffled.item() > 1.0


@pytest.mark.slow
def test_short_training_learns_and_resumes(helen_dir, tmp_path):
    samples = read_300w(helen_dir)[:32]
    cfg = trainer.TrainConfig(epochs=2, batch_size=8, lr=2e-3, val_every=1, threads=2)
    logs = []
    best = trainer.train(TINY, cfg, samples[:24], samples[24:], tmp_path, log=logs.append)
    hist = [json.loads(x) for x in logs if x.startswith("{")]
    assert hist[1]["loss_heatmap"] < hist[0]["loss_heatmap"]
    assert fan.load_checkpoint(best).config == TINY
    cfg3 = trainer.TrainConfig(epochs=3, batch_size=8, lr=2e-3, val_every=1, threads=2)
    logs.clear()
    trainer.train(TINY, cfg3, samples[:24], samples[24:], tmp_path, resume=True, log=logs.append)
    assert any("resumed" in x and "epoch 2" in x for x in logs)
    assert [json.loads(x)["epoch"] for x in logs if x.startswith("{")] == [3]


def test_init_state_starts_from_the_given_weights(helen_dir, tmp_path):
    samples = read_300w(helen_dir)[:10]
    torch.manual_seed(123)
    start = fan.FAN(TINY).state_dict()
    cfg = trainer.TrainConfig(epochs=1, batch_size=4, lr=1e-12, val_every=1, threads=1)
    best = trainer.train(TINY, cfg, samples[:8], samples[8:], tmp_path, init_state=start, log=lambda _: None)
    tuned = fan.load_checkpoint(best).state_dict()
    fresh = fan.FAN(TINY).state_dict()  # what training from scratch would have started from
    weight = "l0.weight"
    assert torch.allclose(tuned[weight], start[weight], atol=1e-6)
    assert not torch.allclose(fresh[weight], start[weight], atol=1e-3)


def _subset(src, dst, n):
    import shutil

    dst.mkdir()
    for pts in sorted(src.glob("*.pts"))[:n]:
        shutil.copy(pts, dst)
        shutil.copy(next(p for p in src.glob(pts.stem + ".*") if p.suffix != ".pts"), dst)
    return dst


def test_cli_fine_tunes_with_extra_data(helen_dir, afw_dir, tmp_path, capsys):
    from shfan.cli import train as cli

    main = _subset(helen_dir, tmp_path / "main", 4)
    extra = _subset(afw_dir, tmp_path / "extra", 3)
    torch.manual_seed(0)
    fan.save_checkpoint(fan.FAN(TINY), tmp_path / "tiny.pt")
    cli.main(["--data", str(main), "--extra-data", str(extra), "--init", str(tmp_path / "tiny.pt"),
              "--epochs", "1", "--batch-size", "2", "--threads", "1", "--no-tune", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "loading 6 training and 1 validation images" in err  # 4 main = 3 + 1 held out, all 3 extra trained
    assert fan.load_checkpoint(tmp_path / "run" / "best.pt").config == TINY  # architecture from --init
