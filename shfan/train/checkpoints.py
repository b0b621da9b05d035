"""OUT/last.pt, the checkpoint `--resume` and scripts/campaign.py continue from: reading it,
and matching its optimizer state to the model's parameters. Its keys (format, config, state_dict,
optimizer, scheduler, epoch, batch_in_epoch, best_nme, history, schedule_total, train_config) are
written by Trainer.checkpoint; the LR scheduler's state holds the Schedule's plain attributes
({'total', 'steps_per_epoch'}), never a reference to its class."""

from __future__ import annotations

import json
from pathlib import Path

from shfan.train.config import TrainError


def read_last(last: Path) -> dict:
    """OUT/last.pt as a dict; TrainError (one line) when it is damaged."""
    import torch

    try:
        state = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a checkpoint: pickle/zip errors of many kinds
        raise TrainError(f"{last} cannot be read ({type(exc).__name__}); it is damaged: resume from a copy, "
                         "or start afresh without --resume") from None
    if not isinstance(state, dict):
        raise TrainError(f"{last} is not a training checkpoint; start afresh without --resume, or use another --out")
    return state


def optimizer_state_in_model_order(state: dict, model) -> dict:
    """The checkpoint's optimizer state, re-indexed to `model.parameters()` order.

    torch keys an optimizer's state by the parameter's position, but the checkpoint's weights by
    name: when the network's code registers its modules in another order (FAN's stacking code
    was shared with FastFAN in session 10 and each stack's output layers moved after the
    hourglasses), a position-keyed state lands on the wrong tensors and AdamW fails on the first
    step. The saved state_dict lists the parameters in the order of the model that saved them,
    which names each position."""
    names = [name for name, _ in model.named_parameters()]
    saved_order = [k for k in state["state_dict"] if k in set(names)]
    opt_state = state["optimizer"]
    if saved_order == names or len(saved_order) != len(names):
        return opt_state  # same order (or another model: load_state_dict refuses it)
    index_of = {name: i for i, name in enumerate(saved_order)}
    moved = {i: opt_state["state"][index_of[name]] for i, name in enumerate(names)
             if index_of[name] in opt_state["state"]}
    return {**opt_state, "state": moved}


def arch_text(cfg) -> str:
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else (cfg or {})
    keys = ("stacks", "width", "input_size", "landmarks")
    return ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg) or "unknown architecture"


def jsonable(d):
    return json.loads(json.dumps(d, default=str))
