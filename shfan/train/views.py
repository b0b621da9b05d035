"""The training batches: two random views of each face with their targets and the view-to-view
mapping, made per face on the CPU (SiameseViews through a DataLoader) or in batches on the
device (shfan.device_augment)."""

from __future__ import annotations

import numpy as np

from shfan import augment, geometry
from shfan.contracts import ModelConfig


class SiameseViews:
    """Each item: two random views of one face with targets and the view-to-view mapping (a
    map-style dataset for torch's DataLoader: __len__ and __getitem__)."""

    def __init__(self, samples, images, model_cfg: ModelConfig, aug: augment.AugmentConfig, seed: int):
        self.samples, self.images, self.cfg, self.aug, self.seed = samples, images, model_cfg, aug, seed
        self.epoch = 0

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        s, img, cfg = self.samples[i], self.images[i], self.cfg
        views = [augment.make_view(rng, img, s.points, s.box, cfg.input_size, self.aug) for _ in range(2)]
        scale = cfg.heatmap_size / cfg.input_size
        out = {}
        for n, (crop, pts, m, perm) in enumerate(views, 1):
            out[f"image{n}"] = crop
            out[f"points{n}"] = pts * scale  # heatmap px, channel order of the view
            out[f"unperm{n}"] = np.argsort(perm)
        m1, m2 = views[0][2], views[1][2]
        # crop-2 px -> crop-1 px, for the consistency term
        out["view2_to_view1"] = geometry.compose(m1, geometry.invert(m2)).astype(np.float32)
        out["weight"] = np.float32(s.weight)
        return out


class EpochBatches:
    """Each epoch's batches (`batches(epoch, skip)`), views on the device when `cfg.device_augment`
    says so (auto: on CUDA, where per-face CPU augmentation starves the GPU), else SiameseViews."""

    def __init__(self, cfg, model_cfg: ModelConfig, samples, images, device, steps_per_epoch: int, log):
        import torch

        self.cfg, self.model_cfg, self.device, self.steps_per_epoch = cfg, model_cfg, device, steps_per_epoch
        self.on_device = cfg.device_augment == "on" or (cfg.device_augment == "auto" and device.type == "cuda")
        if self.on_device:
            from shfan import device_augment

            self.canvases = device_augment.Canvases(images, samples, 2 * model_cfg.input_size, device)
            self.gen = torch.Generator(device=device)
            log(f"views made on {device.type} in batches ({self.canvases.images.numel() / 2**20:.0f} MiB of canvases)")
        else:
            self.data = SiameseViews(samples, images, model_cfg, cfg.augment, cfg.seed)

    def __call__(self, epoch: int, skip: int = 0):
        """The epoch's batches from batch `skip` on (a resumed run). The CPU views of face i in
        epoch e depend on (seed, e, i) only, so a resumed epoch sees the batches it would have."""
        import torch

        cfg = self.cfg
        if self.on_device:  # the device generator's stream is not replayed: a resumed epoch is a new draw
            from shfan import device_augment

            self.gen.manual_seed(cfg.seed * 100003 + epoch)
            order = torch.randperm(len(self.canvases), generator=self.gen, device=self.device)
            for i in range(skip, self.steps_per_epoch):
                yield device_augment.siamese_batch(self.gen, self.canvases,
                                                   order[i * cfg.batch_size:(i + 1) * cfg.batch_size],
                                                   self.model_cfg.input_size, self.model_cfg.heatmap_size, cfg.augment)
            return
        from torch.utils.data import DataLoader

        self.data.epoch = epoch
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        yield from DataLoader(self.data, batch_size=cfg.batch_size, sampler=order[skip * cfg.batch_size:],
                              drop_last=True, num_workers=cfg.workers, worker_init_fn=_quiet_worker,
                              persistent_workers=False)


def _quiet_worker(_):
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
