"""FAN model: shapes, face-alignment parameter names, and every checkpoint format."""

import pytest
import torch

from shfan import model as fan

from conftest import assert_each_raises, randomize_batchnorm

SMALL = fan.ModelConfig(stacks=2, width=64, landmarks=68, input_size=64)


def test_shapes_and_stacks():
    m = fan.FAN(SMALL).eval()
    outs = m.forward_all(torch.rand(2, 3, 64, 64))
    assert len(outs) == 2 and outs[-1].shape == (2, 68, 16, 16)


def test_face_alignment_parameter_names():
    names = set(fan.FAN(fan.ModelConfig(stacks=4)).state_dict())
    for key in ["conv1.weight", "bn1.running_mean", "conv2.bn1.weight", "conv4.conv3.weight",
                "m0.b1_4.conv1.weight", "m3.b2_plus_1.bn3.bias", "top_m_3.conv1.weight",
                "conv_last3.weight", "bn_end3.weight", "l3.weight", "bl2.weight", "al2.weight"]:
        assert key in names, key
    assert "bl3.weight" not in names and "al3.weight" not in names


def _reference_output(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_checkpoint_formats_roundtrip(tmp_path):
    torch.manual_seed(0)
    cfg = fan.ModelConfig(stacks=2, width=64, landmarks=98, input_size=128, window=7, temperature=6.0)
    m = fan.FAN(cfg).eval()
    x = torch.rand(1, 3, 128, 128)
    ref = _reference_output(m, x)

    ours = tmp_path / "ours.pt"
    fan.save_checkpoint(m, ours)
    loaded = fan.load_checkpoint(ours)
    assert loaded.config == cfg
    torch.testing.assert_close(_reference_output(loaded, x), ref)

    # face-alignment style: plain state dict in a .pth.tar, architecture inferred from weights
    plain = tmp_path / "2DFAN-like.pth.tar"
    torch.save(m.state_dict(), plain)
    loaded = fan.load_checkpoint(plain, input_size=128)
    assert (loaded.config.stacks, loaded.config.width, loaded.config.landmarks) == (2, 64, 98)
    torch.testing.assert_close(_reference_output(loaded, x), ref)

    # face-alignment's TorchScript release format
    scripted = tmp_path / "2DFAN-like.zip"
    torch.jit.trace(m, x).save(str(scripted))
    loaded = fan.load_checkpoint(scripted, input_size=128)
    torch.testing.assert_close(_reference_output(loaded, x), ref)


def test_bad_checkpoints_are_clear(tmp_path):
    junk, other = tmp_path / "junk.pt", tmp_path / "other.pt"
    junk.write_bytes(b"not a checkpoint")
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    assert_each_raises(fan.CheckpointError, fan.load_checkpoint, [(tmp_path / "missing.pt", "no such checkpoint"),
                                                                 (junk, "cannot be read"), (other, "not a FAN")])


def test_config_validation():
    with pytest.raises(ValueError, match="landmarks"):
        fan.ModelConfig(landmarks=5)
    with pytest.raises(ValueError, match="multiple of 64"):
        fan.ModelConfig(input_size=100)


def test_fast_arch_folds_every_batchnorm_and_round_trips(tmp_path):
    """The fast network (conv -> BN -> ReLU throughout): heatmaps at 1/4 of the input, every
    stack supervised, a checkpoint that loads as the same network, and an exported graph with no
    BatchNormalization left (each folded into its convolution: a fully integer CPU int8 file)."""
    pytest.importorskip("onnx")
    from shfan.builder.export import export_onnx
    from shfan.model import FastFAN, ModelConfig, build, load_checkpoint, save_checkpoint

    cfg = ModelConfig(stacks=2, width=32, input_size=64, arch="fast")
    torch.manual_seed(0)
    model = build(cfg).eval()
    assert isinstance(model, FastFAN)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        outs = model.forward_all(x)
        assert [tuple(o.shape) for o in outs] == [(2, 68, 16, 16)] * 2
        randomize_batchnorm(model)
        save_checkpoint(model, tmp_path / "fast.pt")
        loaded = load_checkpoint(tmp_path / "fast.pt")
        assert loaded.config.arch == "fast" and torch.allclose(loaded(x), model(x), atol=1e-6)
    ops = {n.op_type for n in export_onnx(model).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    fan_ops = {n.op_type for n in export_onnx(build(ModelConfig(stacks=1, width=32, input_size=64)).eval()).graph.node}
    assert "BatchNormalization" in fan_ops  # the pre-activation FAN keeps some: what the fast arch removes
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="resnet")
