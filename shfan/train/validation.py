"""Scoring during and after training, through the pytorch backend's seam (runtime/backends/pytorch,
what shfan-eval --backend pytorch runs): validation NME (clean and hard views, per subset) and the
subpixel decoder's window/temperature tuned on validation heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shfan import evaluate


def load_images(samples):
    return [s.load_image() for s in samples]


def torch_infer(model, device, method="subpixel"):
    """Predictor for shfan.evaluate from a live PyTorch model: the pytorch backend's infer, so
    training validation decodes exactly as shfan-eval --backend pytorch does."""
    from shfan.runtime.backends.pytorch.runner import TorchBackend

    return TorchBackend(model, device, method).infer


def tune_decoder(model, device, samples, images, windows=(3, 5, 7), temperatures=(3, 6, 9, 12, 16, 24)):
    """Pick window/temperature by validation NME: the heatmaps once, from the pytorch backend's
    network half (TorchBackend.infer_heatmaps, the seam validation scores through), then every
    decoder setting on them."""
    from shfan import codec, metrics
    from shfan.runtime.backends.pytorch.runner import TorchBackend

    cfg = model.config
    crops, mats = evaluate.crops_for(samples, cfg.input_size, images)
    network = TorchBackend(model, device)
    hms = np.concatenate([network.infer_heatmaps(c) for c in evaluate.batched(crops, 16)])
    gt = np.stack([s.points for s in samples])
    scale = cfg.input_size / cfg.heatmap_size
    results = {}
    for method, grid in [("argmax", [(1, 0.0)]), ("fan", [(1, 0.0)]),
                         ("subpixel", [(w, t) for w in windows for t in temperatures])]:
        for w, t in grid:
            pts, _ = codec.decode(hms, method, w, t)
            results[(method, w, t)] = float(metrics.nme_per_face(evaluate.to_image(pts * scale, mats), gt).mean())
    best = min((k for k in results if k[0] == "subpixel"), key=results.get)
    return best[1], best[2], results


def validate(model, device, samples, images, input_size, names=None, hard_seed=None) -> dict:
    """Clean (and hard) validation NME_io, overall and per subset name; FR@10 on the hard set."""
    from shfan import metrics

    gt = np.stack([s.points for s in samples])
    out = {}
    kinds = [("", None)] + ([("hard_", hard_seed)] if hard_seed is not None else [])
    for prefix, seed in kinds:
        pred = evaluate.predict(torch_infer(model, device), samples, input_size, images=images, hard=seed)
        per_face = metrics.nme_per_face(pred, gt, "inter_ocular")
        out[f"val_{prefix}nme_inter_ocular"] = float(per_face.mean())
        if prefix:
            out[f"val_{prefix}fr10"] = float((per_face > 10.0).mean())
        if names is not None and len(set(names)) > 1:
            for name in sorted(set(names)):
                sel = np.array([n == name for n in names])
                out[f"val_{prefix}nme/{name}"] = float(per_face[sel].mean())
    return out


def tune_and_save(best: Path, val_samples, device) -> dict:
    """Tune the subpixel decoder on validation and store the choice (and the whole table) in
    the checkpoint, so every backend decodes with it."""
    import dataclasses

    import torch

    from shfan import model as fan_model

    model = fan_model.load_checkpoint(best)
    window, tau, results = tune_decoder(model, device, val_samples, load_images(val_samples))
    model.config = dataclasses.replace(model.config, window=window, temperature=tau)
    saved = torch.load(best, map_location="cpu", weights_only=False)
    extra = {k: v for k, v in saved.items() if k not in ("format", "config", "state_dict", "decoder_tuning")}
    fan_model.save_checkpoint(model, best, decoder_tuning={f"{m}/w{w}/t{t}": v for (m, w, t), v in results.items()},
                              **extra)
    return {"decoder_validation_nme": {f"{m} w={w} tau={t}": round(v, 4) for (m, w, t), v in results.items()},
            "chosen": {"window": window, "temperature": tau}}
