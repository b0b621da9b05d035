"""Writes the committed resume fixture (run from the repository root; needs ../shared's helen_train):

    segment_last.pt           OUT/last.pt of a 1-step --segment of a tiny FastFAN (fast, 1 stack,
                              width 8, 64 px) on helen_train's first 12 faces, horizon 6 steps
    segment_resumed_state.pt  the weights after --resume ran the other 5 steps

Written at commit 141bcb6 (train.py before the trainer/schedule split), so
test_a_last_pt_of_the_code_before_the_split_resumes_to_the_same_weights holds every later
trainer to the checkpoint format and resume semantics of the campaign's last.pt files.
"""

import shutil
import sys
from pathlib import Path

import torch

from shfan import model as fan
from shfan import train as trainer
from shfan.datasets import read_300w

HERE = Path(__file__).resolve().parent
MODEL = fan.ModelConfig(stacks=1, width=8, input_size=64, arch="fast")
HELEN = HERE.parents[1].parent / "shared" / "data" / "faces68" / "helen_train"


def config(**more):
    return trainer.TrainConfig(epochs=99, batch_size=4, lr=2e-3, val_every=1, threads=1, hard_seed=None,
                               schedule_steps=6, **more)


def main(out: Path):
    samples = read_300w(HELEN)[:16]
    trainer.train(MODEL, config(segment_min=1e-4), samples[:12], samples[12:], out, log=print)
    shutil.copy(out / "last.pt", HERE / "segment_last.pt")
    trainer.train(MODEL, config(), samples[:12], samples[12:], out, resume=True, log=print)
    torch.save(torch.load(out / "last.pt", weights_only=False)["state_dict"], HERE / "segment_resumed_state.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/segment_fixture"))
