"""Quantization-aware fine-tuning (shfan.train.qat): the rounding is ONNX Runtime's, it sits
where the CPU int8 file rounds, it comes off without a trace, and a --qat run keeps its ranges."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from shfan import model as fan
from shfan import train as trainer
from shfan.datasets import read_300w
from shfan.train import qat

FAST = fan.ModelConfig(arch="fast", stacks=1, width=16, input_size=64)


def _model(seed=0):
    torch.manual_seed(seed)
    m = fan.build(FAST).eval()
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):  # statistics a trained model would have
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return m


def test_weights_round_as_onnxruntimes_reduce_range_int8():
    import onnx
    from onnxruntime.quantization.quant_utils import quantize_data

    w = torch.randn(6, 4, 3, 3) * torch.linspace(0.01, 2.0, 6).view(-1, 1, 1, 1)
    ours = qat.fake_quant_weight(w).numpy()
    for c in range(6):
        zero, scale, q = quantize_data(w[c].numpy().ravel(), onnx.TensorProto.INT8, True, reduce_range=True)
        assert int(zero) == 0 and q.min() >= -64 and q.max() <= 64
        np.testing.assert_allclose(ours[c].ravel(), q.astype(np.float32) * np.float32(scale), rtol=0, atol=1e-6)
    assert not np.allclose(ours, w.numpy(), atol=1e-4)  # it did round


def test_activations_round_as_onnxruntimes_uint8_with_clipping():
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    x = torch.linspace(-3.0, 9.0, 1001)
    lo, hi = -1.5, 6.0
    zero, scale = compute_scale_zp(np.float32(lo), np.float32(hi), np.uint8(0), np.uint8(255))
    zero, scale = int(zero), float(scale)
    expected = (np.clip(np.rint(x.numpy() / scale) + zero, 0, 255) - zero) * scale
    np.testing.assert_allclose(qat.fake_quant_uint8(x, lo, hi).numpy(), expected, atol=1e-5)
    assert qat.fake_quant_uint8(x, lo, hi).max() == pytest.approx(6.0, abs=scale)  # clipped above


def test_uint8_range_is_the_percentile_of_abs_inside_the_observed_range():
    relu_like = np.abs(np.random.default_rng(0).standard_normal(100_000))
    assert qat.uint8_range(relu_like, 0.0, float(relu_like.max()), 99.0) == (0.0, pytest.approx(np.percentile(relu_like, 99)))
    lo, hi = qat.uint8_range(np.array([1.0, 2.0, 3.0]), -0.5, 3.0, 100.0)
    assert (lo, hi) == (-0.5, 3.0)  # a range never goes past what was seen


def test_points_are_the_tensors_the_cpu_int8_file_rounds():
    m = _model()
    names = {name for name, _, _ in qat.points(m)}
    convs = [n for n, x in m.named_modules() if isinstance(x, nn.Conv2d)]
    assert {f"{n}:in" for n in convs} <= names  # every convolution's input
    assert "m0.b1_4.conv2.1:out" in names  # conv -> BN before the residual Add
    assert "m0.b1_4.conv1.1:out" not in names and "m0.b1_4.conv1.0:out" not in names  # conv -> BN -> ReLU: one tensor
    assert "l0:out" in names  # the heatmaps
    assert len(names) == len(convs) + sum(":out" in n for n in names)


def test_attach_rounds_and_detach_leaves_the_model_as_it_was():
    m = _model()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        before = m(x).clone()
    keys = list(m.state_dict())
    fq = qat.FakeQuant(m)
    with pytest.raises(ValueError, match="calibrate first"):
        fq.attach()
    fq.calibrate([torch.rand(8, 3, 64, 64) for _ in range(2)])
    assert len(fq.ranges) == len(qat.points(m))
    fq.attach()
    m.train()
    fq.freeze_batchnorm()
    assert not any(b.training for b in m.modules() if isinstance(b, nn.BatchNorm2d))
    with torch.no_grad():
        rounded = m(x)
        with fq.suspended():
            inside = m(x)
    assert list(m.state_dict()) == keys  # checkpoints keep their keys
    assert torch.equal(inside, before)
    error = (rounded - before).abs().mean() / before.abs().mean()
    assert 1e-4 < error < 0.2  # rounded, and close
    fq.detach()
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), before)


def test_gradients_pass_through_the_rounding():
    m = _model()
    fq = qat.FakeQuant(m)
    fq.calibrate([torch.rand(8, 3, 64, 64)])
    fq.attach()
    m.forward_all(torch.rand(2, 3, 64, 64))[-1].square().mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.slow
def test_a_qat_run_keeps_its_ranges_and_resumes_with_them(helen_dir, tmp_path):
    samples = read_300w(helen_dir)[:16]
    cfg = dict(epochs=99, batch_size=4, lr=1e-4, val_every=1, threads=1, hard_seed=None, schedule_steps=6, qat="cpu")
    logs = []
    trainer.train(FAST, trainer.TrainConfig(**cfg, segment_min=1e-4), samples[:12], samples[12:], tmp_path,
                  log=logs.append)
    assert any("--qat cpu: int8 ranges of" in x for x in logs)
    first = torch.load(tmp_path / "last.pt", weights_only=False)
    assert len(first["qat_ranges"]) == len(qat.points(fan.build(FAST)))
    logs.clear()
    trainer.train(FAST, trainer.TrainConfig(**cfg), samples[:12], samples[12:], tmp_path, resume=True, log=logs.append)
    assert not any("int8 ranges of" in x for x in logs)  # measured once, kept for the schedule
    done = torch.load(tmp_path / "last.pt", weights_only=False)
    assert done["qat_ranges"] == first["qat_ranges"] and done["scheduler"]["last_epoch"] == 6
    assert all("val_nme_inter_ocular" in json.loads(x) for x in logs if x.startswith("{"))
    model = fan.load_checkpoint(tmp_path / "last.pt")  # a plain checkpoint: the rounding is not in it
    assert model.config == FAST


def test_a_pre_activation_batchnorm_is_rounded_at_its_input():
    """FAN's BN -> ReLU -> conv: the CPU file makes the BN a depthwise conv (its input rounded)
    and drops the ReLU into the next rounding (the conv's input), so the BN output is not a point."""
    names = {name for name, _, _ in qat.points(fan.FAN(fan.ModelConfig(stacks=1, width=32, input_size=64)))}
    assert {"conv2.bn1:in", "conv2.conv1:in", "conv2.conv1:out", "conv2.downsample.0:in"} <= names
    assert "conv2.bn1:out" not in names and "conv2.downsample.0:out" not in names
