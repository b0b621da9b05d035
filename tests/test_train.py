"""Trainer mechanics on a tiny model: views are geometrically right, loss falls, resume works."""

import json

import numpy as np
import pytest
import torch

from shfan import augment, geometry
from shfan import model as fan
from shfan import train as trainer
from shfan.datasets import read_300w

from conftest import consistency_losses, save_tiny_checkpoint, small_300w

TINY = fan.ModelConfig(stacks=1, width=32, input_size=64)


def test_flip_map_is_a_mirror_involution():
    assert sorted(augment.FLIP_68.tolist()) == list(range(68))
    assert (augment.FLIP_68[augment.FLIP_68] == np.arange(68)).all()
    assert augment.FLIP_68[36] == 45 and augment.FLIP_68[48] == 54 and augment.FLIP_68[30] == 30


@pytest.mark.parametrize("preset", ["mild", "hard"])
def test_views_put_targets_on_the_warped_landmarks(helen_dir, preset):
    """Warp a synthetic image whose bright pixels sit at the landmarks: each view's targets must
    land on the bright pixels, flipped or not, rolled 60 degrees or not."""
    s = read_300w(helen_dir)[0]
    img = s.load_image()
    marker = np.zeros(img.shape[:2], np.float32)
    ij = np.floor(s.points).astype(int)
    marker[ij[:, 1], ij[:, 0]] = 1.0
    rng = np.random.default_rng(3)
    cfg = augment.PRESETS[preset]
    for _ in range(12):
        m, perm = augment.random_view(rng, s.box, 256, cfg, 68)
        warped = geometry.warp(marker, m, 256)
        pts = geometry.transform_points(s.points, m)[perm]
        inside = (pts > 2).all(1) & (pts < 254).all(1)
        vals = [warped[int(p[1]) - 2:int(p[1]) + 3, int(p[0]) - 2:int(p[0]) + 3].max() for p in pts[inside]]
        assert np.mean(np.array(vals) > 0) > 0.95


def test_make_view_moves_landmarks_with_the_pixels(helen_dir):
    """The full hard recipe (geometry + degradations): the crop is the warp of the image by the
    view's matrix, degraded, so it correlates with that warp far better than with a warp moved
    by 4 px; and the targets are the landmarks through that matrix, in channel order."""
    s = read_300w(helen_dir)[1]
    img = s.load_image()
    rng = np.random.default_rng(5)
    for _ in range(8):
        crop, pts, m, perm = augment.make_view(rng, img, s.points, s.box, 128, augment.HARD)
        assert np.allclose(pts, geometry.transform_points(s.points, m)[perm], atol=1e-4)
        gray = crop.mean(0)
        right = geometry.warp(img, m, 128).mean(2)
        shifted = geometry.warp(img, geometry.compose(np.array([[1.0, 0, 4], [0, 1, 4]]), m), 128).mean(2)
        assert np.corrcoef(gray.ravel(), right.ravel())[0, 1] > np.corrcoef(gray.ravel(), shifted.ravel())[0, 1] + 0.05


def test_hard_view_is_fixed_by_its_seed_and_aligned(helen_dir):
    s = read_300w(helen_dir)[2]
    img = s.load_image()
    a, ma = augment.hard_view((7, 0), img, s.box, 128)
    b, mb = augment.hard_view((7, 0), img, s.box, 128)
    c, mc = augment.hard_view((7, 1), img, s.box, 128)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.allclose(ma, mc)
    roll = np.degrees(np.arctan2(-ma[1, 0], ma[0, 0]))
    assert 30 <= abs(roll) <= 50  # strong, fixed roll
    pts = geometry.transform_points(s.points, ma)
    assert (pts > 0).all() and (pts < 128).all()  # the face stays in the crop
    clean = geometry.warp(img, ma, 128).mean(2)
    shifted = geometry.warp(img, geometry.compose(np.array([[1.0, 0, 4], [0, 1, 4]]), ma), 128).mean(2)
    gray = a.mean(0)
    assert np.corrcoef(gray.ravel(), clean.ravel())[0, 1] > np.corrcoef(gray.ravel(), shifted.ravel())[0, 1]


def test_schedule_fits_the_time_left():
    # 100 s left, 0.5 s a step, 10 s of validation per epoch of 20 steps: (100 - 10) / (0.5 + 0.5)
    assert trainer.fit_total_steps(300, 200, 40, 0.5, 10.0, 20) == 40 + 90
    assert trainer.fit_total_steps(300, 400, 40, 0.5, 10.0, 20) == 40  # over budget: stop now
    plan = trainer.Schedule(total=100, steps_per_epoch=50)
    assert plan(0) == pytest.approx(1 / 5)  # warm-up is capped at 5 % of the run
    assert plan(4) == pytest.approx(1.0 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 0.04))))
    assert plan(100) == pytest.approx(0.01) and plan(500) == pytest.approx(0.01)


def test_run_schedule_sizes_a_run_and_says_when_it_ends():
    """RunSchedule alone (no torch): a resumed fixed horizon decides the epochs; a segment ends
    when the next step and a validation would overrun it; a time budget's probe (after 4 steps of
    the first epoch) fits the horizon to the time left."""
    from shfan.train import RunSchedule

    now = [0.0]
    fixed = RunSchedule(trainer.TrainConfig(epochs=99, batch_size=4, schedule_steps=10, segment_min=1.0), 3, 8,
                        log=lambda _: None, clock=lambda: now[0])
    fixed.lr.total = 7  # a resumed run's horizon (from last.pt)
    fixed.begin(t_start=100.0, t_train=101.0)
    assert (fixed.epochs, fixed.segment_end, fixed.budget_s) == (3, 160.0, None)
    fixed.record_step(2.0)  # validation not timed yet: ~ 8 faces / batch 4 = 2 steps = 4 s
    assert not fixed.segment_over(153.9) and fixed.segment_over(154.0)
    assert fixed.horizon_reached(7) and not fixed.horizon_reached(6) and not fixed.budget_spent(6, True)
    logs = []
    budget = RunSchedule(trainer.TrainConfig(epochs=99, batch_size=4, val_every=2, time_budget_min=1.0), 3, 8,
                         log=logs.append, clock=lambda: now[0])
    budget.begin(t_start=0.0, t_train=0.0)
    for _ in range(4):
        budget.record_step(0.5)
    now[0] = 10.0
    assert not budget.budget_spent(4, first_epoch=True)
    assert budget.lr.total == trainer.fit_total_steps(60.0, 10.0, 4, 0.5, 1.0 / 2, 3) and logs
    assert budget.epochs == -(-budget.lr.total // 3)
    now[0] = 59.0
    budget.record_validation(1.5)
    assert budget.budget_spent(5, first_epoch=True)  # 59 s + a validation's 1.5 s is past the minute


class StepClock:
    """A clock for shfan.train that advances a fixed 0.5 s at every reading: the trainer's step,
    validation and budget arithmetic run exactly as on a machine with a steady speed, whatever
    else the real machine is doing (on 2 cores shared with another job, real step times swung
    4x within one run and the real-time version of this test failed both ways)."""

    def __init__(self, tick: float = 0.5):
        self.now, self.tick = 1000.0, tick

    def time(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_ends_within_15_percent(helen_dir, tmp_path, monkeypatch):
    """--time-budget on a tiny model: the probe sizes the schedule so the run ends near the budget
    (on the trainer's clock; a run that ignores the budget or stops after the probe fails)."""
    import types

    samples = read_300w(helen_dir)[:40]
    clock = StepClock()
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=clock.time))
    budget_min = 0.75
    cfg = trainer.TrainConfig(epochs=1000, batch_size=4, lr=1e-3, val_every=1, threads=2, time_budget_min=budget_min)
    logs = []
    t0 = clock.now
    trainer.train(TINY, cfg, samples[:32], samples[32:], tmp_path, log=logs.append)
    wall = clock.now - t0
    assert abs(wall - budget_min * 60) <= 0.15 * budget_min * 60, (wall, logs)
    assert any(x.startswith("time budget") for x in logs)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist) >= 2 and "val_hard_nme_inter_ocular" in hist[-1] and "val_hard_fr10" in hist[-1]


def test_consistency_is_zero_for_perfect_predictions(helen_dir):
    samples = read_300w(helen_dir)[:4]
    ds = trainer.SiameseViews(samples, trainer.load_images(samples), TINY, augment.AugmentConfig(), 0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    # keep points away from the border where the clipped window biases decoding
    perfect, shuffled = consistency_losses(batch, TINY)
    assert perfect < 0.1 and shuffled > 1.0


def test_adaptive_wing_matches_the_paper_and_weighs_the_foreground():
    """Eq. 6 of Wang et al. 2019 with omega 14, theta 0.5, epsilon 1, alpha 2.1: zero at the
    target, continuous at theta, log-like inside and linear outside; an error on a bright
    target pixel (y=1) costs more than the same error on the background (y=0), where MSE
    charges both alike."""
    awing = trainer.adaptive_wing
    y0, y1 = torch.zeros(1), torch.ones(1)
    assert awing(y0, y0).item() == 0.0 and awing(y1, y1).item() == 0.0
    assert awing(torch.tensor([0.2]), y0).item() == pytest.approx(14 * np.log1p(0.2 ** 2.1), rel=1e-5)
    for y in (0.0, 0.5, 1.0):
        t = torch.full((2,), y)
        inside, outside = awing(t + torch.tensor([0.5 - 1e-5, 0.5 + 1e-5]), t)
        assert inside.item() == pytest.approx(outside.item(), rel=1e-4)
    slope = awing(torch.tensor([2.0]), y0) - awing(torch.tensor([1.0]), y0)
    assert slope.item() == pytest.approx((awing(torch.tensor([3.0]), y0) - awing(torch.tensor([2.0]), y0)).item())
    assert awing(y1 - 0.1, y1).item() > 5 * awing(y0 + 0.1, y0).item()
    out, target = [torch.full((2, 3, 4, 4), 0.3)], torch.zeros(2, 3, 4, 4)
    assert trainer.heatmap_loss(out, target).item() == pytest.approx(16 * 0.09)
    assert trainer.heatmap_loss(out, target, "awing").item() == pytest.approx(16 * awing(torch.tensor([0.3]), y0).item())


@pytest.mark.parametrize("consistency, images_per_step", [(0.1, 8), (0.0, 4)])
def test_consistency_off_trains_one_view_per_face(helen_dir, tmp_path, monkeypatch, consistency, images_per_step):
    """The second view exists for the consistency term: without it a step forwards one view of
    each face (half the cost), with it both views."""
    samples = read_300w(helen_dir)[:10]
    seen = []
    forward_all = fan.FAN.forward_all

    def recording(self, x):
        seen.append(x.shape[0])
        return forward_all(self, x)

    monkeypatch.setattr(fan.FAN, "forward_all", recording)
    cfg = trainer.TrainConfig(epochs=1, batch_size=4, consistency=consistency, val_every=1, threads=1,
                              hard_seed=None)
    trainer.train(TINY, cfg, samples[:8], samples[8:], tmp_path, log=lambda _: None)
    assert seen[:2] == [images_per_step] * 2  # the two training steps (validation follows)


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


def test_first_stacks_is_the_intermediate_output(tmp_path):
    """A model cut to its first stack outputs exactly the full model's first-stack heatmaps."""
    torch.manual_seed(0)
    two = fan.FAN(fan.ModelConfig(stacks=2, width=32, input_size=64)).eval()
    one = fan.first_stacks(two, 1)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert one.config.stacks == 1 and not one.training
        assert torch.allclose(one(x), two.forward_all(x)[0], atol=1e-6)
        assert not torch.allclose(one(x), two(x), atol=1e-3)
    with pytest.raises(ValueError, match="choose 1..2"):
        fan.first_stacks(two, 3)


def test_init_with_fewer_stacks_keeps_the_first(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "two.pt", stacks=2, width=32, input_size=64)
    two = fan.load_checkpoint(ckpt)
    cfg, state = trainer.job_model(trainer.TrainJob(init=str(ckpt), stacks=1), 68)
    assert cfg.stacks == 1 and "l1.weight" not in state and torch.equal(state["l0.weight"], two.state_dict()["l0.weight"])
    assert trainer.job_model(trainer.TrainJob(init=str(ckpt)), 68)[0].stacks == 2  # no --stacks: the checkpoint's
    assert trainer.job_model(trainer.TrainJob(), 68)[0].stacks == 2  # from scratch: the default
    cfg, state = trainer.job_model(trainer.TrainJob(init=str(ckpt), input_size=128), 68)
    assert (cfg.stacks, cfg.input_size, cfg.heatmap_size) == (2, 128, 32) and fan.FAN(cfg).load_state_dict(state)
    with pytest.raises(trainer.TrainError, match="not add 3"):
        trainer.job_model(trainer.TrainJob(init=str(ckpt), stacks=3), 68)


def _fine_tune_cli(tmp_path, capsys, folders, batch_size):
    """shfan-train fine-tuning a tiny model for one epoch; `folders`: (flag, 300-W source, name,
    faces) -> `flag tmp_path/name` holding that source's first faces. Its stderr."""
    from shfan.cli import train as cli

    data_args = [a for flag, src, name, n in folders for a in (flag, small_300w(src, tmp_path / name, n))]
    save_tiny_checkpoint(tmp_path / "tiny.pt", stacks=TINY.stacks, width=TINY.width, input_size=TINY.input_size)
    cli.main([*map(str, data_args), "--init", str(tmp_path / "tiny.pt"), "--epochs", "1", "--batch-size",
              str(batch_size), "--threads", "1", "--no-tune", "--out", str(tmp_path / "run")])
    return capsys.readouterr().err


def test_cli_fine_tunes_with_extra_data(helen_dir, afw_dir, tmp_path, capsys):
    err = _fine_tune_cli(tmp_path, capsys, [("--data", helen_dir, "main", 4), ("--extra-data", afw_dir, "extra", 3)],
                         batch_size=2)
    assert "loading 6 training and 1 validation images" in err  # 4 main = 3 + 1 held out, all 3 extra trained
    assert fan.load_checkpoint(tmp_path / "run" / "best.pt").config == TINY  # architecture from --init


def test_a_fine_tune_resumes_without_naming_its_init_again(helen_dir, tmp_path, capsys):
    """A run started from --init (width 32, not the default 128) goes on with --resume alone:
    its sizes came from the init, which a later session need not have; an explicit size that
    differs is still refused."""
    from shfan.cli import train as cli

    _fine_tune_cli(tmp_path, capsys, [("--data", helen_dir, "main", 6)], batch_size=2)
    (tmp_path / "tiny.pt").unlink()
    args = ["--data", str(tmp_path / "main"), "--epochs", "2", "--batch-size", "2", "--threads", "1", "--no-tune",
            "--resume", "--out", str(tmp_path / "run")]
    cli.main(args)
    assert "resumed from" in capsys.readouterr().err
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["from_init"] and last["epoch"] == 2 and fan.ModelConfig.from_dict(last["config"]) == TINY
    with pytest.raises(SystemExit) as exc:
        cli.main([*args, "--stacks", "2"])
    assert exc.value.code == 1 and "another model" in capsys.readouterr().err


def test_cli_splits_each_data_folder_and_reports_per_subset(helen_dir, afw_dir, tmp_path, capsys):
    err = _fine_tune_cli(tmp_path, capsys, [("--data", helen_dir, "a", 10), ("--data", afw_dir, "b", 10)], batch_size=4)
    assert "loading 18 training and 2 validation images" in err  # 1 of each folder's 10 held out
    entry = json.loads((tmp_path / "run" / "history.json").read_text())[-1]
    assert set(k for k in entry if k.startswith("val_nme/")) == {"val_nme/a", "val_nme/b"}
    assert set(k for k in entry if k.startswith("val_hard_nme/")) == {"val_hard_nme/a", "val_hard_nme/b"}


def test_cli_refuses_fewer_faces_than_a_batch(helen_dir, tmp_path, capsys):
    from shfan.cli import train as cli

    a = small_300w(helen_dir, tmp_path / "a", 6)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--data", str(a), "--stacks", "1", "--width", "32", "--input-size", "64", "--epochs", "1",
                  "--batch-size", "8", "--threads", "1", "--out", str(tmp_path / "run")])
    assert exc.value.code != 0
    assert "fewer than one batch" in capsys.readouterr().err


def test_tune_and_save_scores_every_decoder(helen_dir, tmp_path):
    """The post-training tuning decodes argmax/fan too (their window/temperature are unused and
    must not be validated) and stores the subpixel choice in the checkpoint."""
    samples = read_300w(helen_dir)[:6]
    torch.manual_seed(0)
    fan.save_checkpoint(fan.FAN(TINY), tmp_path / "best.pt")
    report = trainer.tune_and_save(tmp_path / "best.pt", samples, torch.device("cpu"))
    keys = report["decoder_validation_nme"]
    assert "argmax w=1 tau=0.0" in keys and "fan w=1 tau=0.0" in keys and len(keys) == 2 + 18
    chosen = report["chosen"]
    cfg = fan.load_checkpoint(tmp_path / "best.pt").config
    assert (cfg.window, cfg.temperature) == (chosen["window"], chosen["temperature"])
    best = min((k for k in keys if k.startswith("subpixel")), key=keys.get)
    assert best == f"subpixel w={chosen['window']} tau={chosen['temperature']}"


class _Killed(Exception):
    pass


def _campaign_cfg(**more):
    """6 steps in 2 epochs of 3 (12 faces, batch 4): the horizon a campaign fixes."""
    return trainer.TrainConfig(epochs=99, batch_size=4, lr=2e-3, val_every=1, threads=1, hard_seed=None,
                               schedule_steps=6, **more)


def test_a_killed_run_resumes_at_its_batch_exactly(helen_dir, tmp_path, monkeypatch):
    """A run killed inside an epoch (after a mid-epoch last.pt) and resumed ends with the weights
    of a run that was never stopped: same batches, same views, same schedule."""
    samples = read_300w(helen_dir)[:16]
    train_s, val_s = samples[:12], samples[12:]
    trainer.train(TINY, _campaign_cfg(), train_s, val_s, tmp_path / "straight", log=lambda _: None)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)

    saves, real_save = [], fan.save_checkpoint

    def save_then_die(model, path, **extra):
        real_save(model, path, **extra)
        saves.append(extra.get("batch_in_epoch"))
        if extra.get("batch_in_epoch") == 2 and extra.get("epoch") == 1:
            raise _Killed  # killed after step 5 (epoch 2, batch 2), its checkpoint on disk

    monkeypatch.setattr(fan, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        trainer.train(TINY, _campaign_cfg(checkpoint_min=0.0), train_s, val_s, tmp_path / "killed",
                      log=lambda _: None)
    monkeypatch.setattr(fan, "save_checkpoint", real_save)
    assert 1 in saves and 2 in saves  # mid-epoch checkpoints were written
    logs = []
    trainer.train(TINY, _campaign_cfg(), train_s, val_s, tmp_path / "killed", resume=True, log=logs.append)
    assert any("at epoch 1, batch 2 (step 5 of 6)" in x for x in logs)
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=False)
    assert resumed["scheduler"]["last_epoch"] == straight["scheduler"]["last_epoch"] == 6
    for name, w in straight["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][name].float(), w.float(), atol=1e-6), name
    fresh = fan.FAN(TINY).state_dict()
    assert not torch.allclose(fresh["l0.weight"], straight["state_dict"]["l0.weight"], atol=1e-4)


def test_a_segment_stops_at_a_checkpoint_and_keeps_the_horizon(helen_dir, tmp_path):
    """--segment ends the run early (validated, last.pt mid-epoch) without shortening the
    schedule; --resume then runs the rest of the same horizon."""
    samples = read_300w(helen_dir)[:16]
    logs = []
    trainer.train(TINY, _campaign_cfg(segment_min=1e-4), samples[:12], samples[12:], tmp_path, log=logs.append)
    first = torch.load(tmp_path / "last.pt", weights_only=False)
    assert (first["epoch"], first["batch_in_epoch"], first["schedule_total"]) == (0, 1, 6)
    entry = json.loads(next(x for x in logs if x.startswith("{")))
    assert entry["partial"] and entry["steps"] == 1 and "val_nme_inter_ocular" in entry
    assert any("segment" in x and "step 1 of 6" in x for x in logs)
    logs.clear()
    trainer.train(TINY, _campaign_cfg(), samples[:12], samples[12:], tmp_path, resume=True, log=logs.append)
    done = torch.load(tmp_path / "last.pt", weights_only=False)
    assert done["scheduler"]["last_epoch"] == 6 and done["epoch"] == 2 and done["batch_in_epoch"] == 0
    steps = [json.loads(x)["steps"] for x in logs if x.startswith("{")]
    assert steps == [2, 3]  # the rest of epoch 1, then epoch 2
    assert done["history"][-1]["lr"] == pytest.approx(2e-3 * 0.01, rel=1e-6)  # the cosine's floor at the horizon


def test_resume_matches_optimizer_state_to_parameters_by_name(helen_dir, tmp_path):
    """A last.pt written by a network that registered its modules in another order (FAN before
    its stacking code was shared with FastFAN) resumes onto the right tensors: torch keys AdamW's
    state by position, so without re-indexing by name the first step fails or moves the wrong
    weights."""
    samples = read_300w(helen_dir)[:16]
    train_s, val_s = samples[:12], samples[12:]
    quiet = lambda _: None  # noqa: E731
    trainer.train(TINY, _campaign_cfg(), train_s, val_s, tmp_path / "straight", log=quiet)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    trainer.train(TINY, _campaign_cfg(segment_min=1e-4), train_s, val_s, tmp_path / "moved", log=quiet)
    last = tmp_path / "moved" / "last.pt"
    state = torch.load(last, weights_only=False)
    names = [n for n, _ in fan.FAN(TINY).named_parameters()]
    by_name = {n: state["optimizer"]["state"][i] for i, n in enumerate(names)}
    state["state_dict"] = dict(reversed(list(state["state_dict"].items())))  # the other network's order
    state["optimizer"]["state"] = {i: by_name[n] for i, n in enumerate(reversed(names))}
    torch.save(state, last)
    trainer.train(TINY, _campaign_cfg(), train_s, val_s, tmp_path / "moved", resume=True, log=quiet)
    resumed = torch.load(last, weights_only=False)
    assert resumed["scheduler"]["last_epoch"] == 6
    for name, w in straight["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][name].float(), w.float(), atol=1e-6), name


def test_a_last_pt_of_the_code_before_the_split_resumes_to_the_same_weights(helen_dir, tmp_path):
    """tests/checkpoints/segment_last.pt was written by train.py before it became the trainer and
    schedule objects (make_segment_last.py): a campaign's last.pt of that code resumes with this
    one to the weights that code reached (same batches, views, schedule and optimizer state)."""
    import shutil
    from pathlib import Path

    here = Path(__file__).resolve().parent / "checkpoints"
    model = fan.ModelConfig(stacks=1, width=8, input_size=64, arch="fast")
    samples = read_300w(helen_dir)[:16]
    shutil.copy(here / "segment_last.pt", tmp_path / "last.pt")
    logs = []
    # fp32: that code's arithmetic (auto would pick bf16 on a CPU with AMX, another run's weights)
    trainer.train(model, _campaign_cfg(precision="fp32"), samples[:12], samples[12:], tmp_path, resume=True,
                  log=logs.append)
    assert any("at epoch 0, batch 1 (step 1 of 6)" in x for x in logs)
    done = torch.load(tmp_path / "last.pt", weights_only=False)
    before = torch.load(here / "segment_last.pt", weights_only=False)
    assert sorted(set(done) - {"from_init"}) == sorted(before) and not done["from_init"]  # from_init: added since
    assert sorted(done["scheduler"]) == sorted(before["scheduler"])
    assert done["scheduler"]["last_epoch"] == 6 and done["scheduler"]["lr_lambdas"] == [
        {"total": 6, "steps_per_epoch": 3}]
    expected = torch.load(here / "segment_resumed_state.pt", weights_only=True)
    assert list(done["state_dict"]) == list(expected)
    for name, w in expected.items():
        assert torch.allclose(done["state_dict"][name].float(), w.float(), atol=1e-6), name


def test_extra_weight_scales_each_faces_heatmap_loss():
    """--extra-weight: a face's heatmap loss counts `weight` times, the mean still over the batch
    (0.5 halves a face's pull, it does not re-normalise the others up)."""
    out, target = [torch.full((2, 3, 4, 4), 0.3)], torch.zeros(2, 3, 4, 4)
    out[0][1] = 0.6  # face 1's error is twice face 0's: per-face losses 16*0.09 and 16*0.36
    plain = trainer.heatmap_loss(out, target).item()
    assert plain == pytest.approx(16 * (0.09 + 0.36) / 2)
    halved = trainer.heatmap_loss(out, target, weight=torch.tensor([1.0, 0.5])).item()
    assert halved == pytest.approx(16 * (0.09 + 0.5 * 0.36) / 2)
    assert trainer.heatmap_loss(out, target, weight=torch.ones(2)).item() == pytest.approx(plain)


def test_extra_weight_reaches_the_samples_of_its_folder(helen_dir, afw_dir, tmp_path):
    from shfan import train

    a, b = small_300w(helen_dir, tmp_path / "a", 4), small_300w(afw_dir, tmp_path / "b", 3)
    c = small_300w(afw_dir, tmp_path / "c", 2)
    job = train.TrainJob(data=[str(a)], extra_data=[str(b), str(c)], extra_weights=0.25)
    fit, *_ = train.read_job_data(job)
    assert [s.weight for s in fit] == [1.0] * 3 + [0.25] * 3 + [1.0] * 2  # c has no weight given: 1
    views = trainer.SiameseViews(fit, [s.load_image() for s in fit], TINY, augment.PRESETS["mild"], 0)
    assert views[3]["weight"] == np.float32(0.25) and views[0]["weight"] == np.float32(1.0)
    with pytest.raises(train.TrainError, match="2 --extra-weight for 1 --extra-data"):
        train.TrainJob(data=[str(a)], extra_data=[str(b)], extra_weights=[0.5, 0.5])
    with pytest.raises(train.TrainError, match="--extra-weight 0.0: a loss weight is in"):
        train.TrainJob(data=[str(a)], extra_data=[str(b)], extra_weights=[0.0])


def test_a_weighted_folder_trains_through_the_cli(helen_dir, afw_dir, tmp_path, capsys):
    """A half-weighted --extra-data trains through shfan-train with the data unchanged (same
    face count) and a smaller heatmap loss than the same run unweighted: the weight reaches
    the loss (dropped anywhere on the way, both runs would match to the bit)."""
    from shfan.cli import train as cli

    main, extra = small_300w(helen_dir, tmp_path / "main", 4), small_300w(afw_dir, tmp_path / "extra", 3)
    save_tiny_checkpoint(tmp_path / "tiny.pt", stacks=TINY.stacks, width=TINY.width, input_size=TINY.input_size)
    losses = []
    for name, weight in (("plain", []), ("half", ["--extra-weight", "0.5"])):
        cli.main(["--data", str(main), "--extra-data", str(extra), *weight, "--init", str(tmp_path / "tiny.pt"),
                  "--epochs", "1", "--batch-size", "6", "--threads", "1", "--no-tune", "--out", str(tmp_path / name)])
        assert "loading 6 training and 1 validation images" in capsys.readouterr().err
        losses.append(json.loads((tmp_path / name / "history.json").read_text())[-1]["loss_heatmap"])
    plain, half = losses  # one step of all 6 faces, 3 of them at half weight
    assert 0.5 * plain < half < plain


def test_precision_auto_is_bf16_where_the_hardware_has_it(tmp_path):
    from shfan.train import precision

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert {"amx_bf16", "avx512f"} <= precision.cpu_flags(info)
    assert precision.cpu_flags(tmp_path / "missing") == set()
    assert precision.use_bf16("auto", "cpu", {"avx512f", "amx_bf16"})
    assert precision.use_bf16("auto", "cpu", {"avx512_bf16"})
    assert not precision.use_bf16("auto", "cpu", {"avx512f", "avx2"})  # emulated bf16: slower than fp32
    assert precision.use_bf16("auto", "cuda", set())
    assert not precision.use_bf16("fp32", "cuda", {"amx_bf16"}) and precision.use_bf16("bf16", "cpu", set())


def test_a_bf16_step_trains_close_to_fp32_and_is_logged(helen_dir, tmp_path):
    """--precision bf16 runs the forward/backward under CPU autocast: the weights move like fp32's
    (same direction, within bf16's rounding) but not to the bit, and the run says which it used."""
    samples = read_300w(helen_dir)[:16]
    runs = {}
    for name in ("fp32", "bf16"):
        logs = []
        trainer.train(TINY, _campaign_cfg(precision=name), samples[:12], samples[12:],
                      tmp_path / name, log=logs.append)
        assert any(f"training arithmetic: {'bf16 autocast' if name == 'bf16' else 'fp32'} on cpu" in x for x in logs)
        runs[name] = torch.load(tmp_path / name / "last.pt", weights_only=False)["state_dict"]
    torch.manual_seed(0)
    start = fan.build(TINY).state_dict()  # both runs' first weights (seed 0, then the network)
    w = "l0.weight"
    moved32, moved16 = runs["fp32"][w] - start[w], runs["bf16"][w] - start[w]
    assert not torch.equal(runs["fp32"][w], runs["bf16"][w])  # autocast was on
    cos = torch.nn.functional.cosine_similarity(moved32.flatten(), moved16.flatten(), dim=0)
    assert cos > 0.9 and runs["bf16"][w].dtype == torch.float32  # the master weights stay fp32


def test_split_seed_keeps_the_held_out_faces_of_another_seed(helen_dir):
    """--seed 1 --split-seed 0 trains another seed on the faces seed 0 trained on: same validation faces."""
    from shfan.train import TrainJob, read_job_data

    def held_out(**kw):
        return [s.image_path for s in read_job_data(TrainJob(data=[helen_dir], **kw))[1]]

    seed0 = held_out(seed=0)
    assert held_out(seed=1, split_seed=0) == seed0
    assert held_out(seed=1) != seed0  # without it the split follows --seed (the faces another seed trained on)
