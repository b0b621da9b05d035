"""Maintainer step: one training schedule run across sessions (the model campaign).

A session's machine is new each time and its background jobs end with it, so what a schedule
needs to go on is committed beside this script, in campaign/:

    campaign/NAME.json      the plan (shfan-train options, the fixed horizon) and a ledger of
                            segments (steps, wall time, validation clean/hard per subset)
    campaign/NAME.state.pt  the run's last.pt: fp32 weights, step, epoch and batch, schedule,
                            history, and AdamW's second moment in bfloat16 (it averages over
                            ~1,000 steps; loaded back as fp32 it moves a step by < 0.4 %). The
                            first moment (a ~10-step average) is not kept: it restarts at zero,
                            which keeps the file under 20 MB for the 3.2 M-parameter network

    python scripts/campaign.py start accurate --schedule-steps 11000 --init runs/seg192/last.pt -- \\
        --data ../shared/data/faces68/helen_train --data ../shared/data/faces68/lfpw_train \\
        --extra-data ../shared/data/faces68/afw --input-size 192 --loss awing --consistency 2.3 --lr 1e-4 --batch-size 8
    python scripts/campaign.py start fast --schedule-steps 8000 \
        --prepare "runs/pseudo/ytf=python scripts/pseudo_label.py --teacher compact --flip --images ... --out runs/pseudo/ytf" \
        -- --data ... --extra-data runs/pseudo/ytf --arch fast --stacks 2 --width 64
    python scripts/campaign.py run accurate --minutes 110   # each session: one segment, then commit campaign/
    python scripts/campaign.py pack accurate --minutes 40   # record what last.pt holds: after a run was
                                                            # killed, or while it runs (then commit campaign/)
    python scripts/campaign.py status accurate

Data made from ../shared (teacher labels: research data, never committed) is remade by the
plan's `--prepare PATH=COMMAND` steps when PATH is missing, before the segment.
`run` restores the committed state into runs/campaign/NAME/last.pt (unless the folder holds a
later step), runs `shfan-train --resume --schedule-steps N --segment M` on it, and packs the
result back with the segment's line in the ledger. A session's machine can go at any moment and
take runs/ with it: `pack` while the run goes on, and commit, to keep what it has done so far (the
run's own line then starts where that one ended).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # campaign/ and runs/campaign/ live here (--root: elsewhere)
CAMPAIGNS = ROOT / "campaign"
RUNS = ROOT / "runs" / "campaign"


def set_root(root: Path) -> None:
    global ROOT, CAMPAIGNS, RUNS
    ROOT, CAMPAIGNS, RUNS = root, root / "campaign", root / "runs" / "campaign"


def plan_path(name: str) -> Path:
    return CAMPAIGNS / f"{name}.json"


def state_path(name: str) -> Path:
    return CAMPAIGNS / f"{name}.state.pt"


def read_plan(name: str) -> dict:
    path = plan_path(name)
    if not path.is_file():
        raise SystemExit(f"error: no campaign {name!r} ({path} missing); start it with `campaign.py start {name} ...`")
    return json.loads(path.read_text())


def write_plan(name: str, plan: dict) -> None:
    from shfan.atomic import write_text

    CAMPAIGNS.mkdir(exist_ok=True)
    write_text(plan_path(name), json.dumps(plan, indent=1) + "\n")


def pack(last: Path, to: Path) -> dict:
    """last.pt -> the committed state (second moment in bfloat16, no first moment)."""
    import torch

    from shfan.atomic import atomic_path

    state = torch_load(last)
    for slot in state["optimizer"]["state"].values():
        slot.pop("exp_avg", None)
        slot["exp_avg_sq"] = slot["exp_avg_sq"].to(torch.bfloat16)
    with atomic_path(to) as tmp:
        torch.save(state, tmp)
    return state


def unpack(packed: Path, last: Path) -> None:
    """The committed state -> last.pt, unless last.pt already holds this step or a later one
    (the same session's run folder)."""
    import torch

    from shfan.atomic import atomic_path

    state = torch_load(packed)
    if last.is_file() and step_of(torch_load(last)) >= step_of(state):
        return
    for slot in state["optimizer"]["state"].values():
        slot["exp_avg_sq"] = slot["exp_avg_sq"].float()
        slot["exp_avg"] = torch.zeros_like(slot["exp_avg_sq"])
    last.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(last) as tmp:
        torch.save(state, tmp)


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def step_of(state: dict) -> int:
    return int(state["scheduler"]["last_epoch"])


def segment_record(state: dict, step_from: int, minutes: float) -> dict:
    """The ledger line of a segment: steps, wall time, the last validation of the run."""
    validated = [h for h in state["history"] if "val_nme_inter_ocular" in h]
    val = {k: round(v, 4) for k, v in (validated[-1] if validated else {}).items() if k.startswith("val_")}
    return {"date": datetime.date.today().isoformat(), "steps": [step_from, step_of(state)],
            "of": int(state["schedule_total"]), "epoch": state["epoch"], "batch_in_epoch": state.get("batch_in_epoch", 0),
            "minutes": round(minutes, 1), "validation": val, "machine": this_machine(state, step_from, minutes)}


def this_machine(state: dict, step_from: int, minutes: float) -> dict:
    """What a segment ran on: step times differ 5x between the machines sessions get (bf16 on a
    Xeon with AMX: 0.65 s a step for `compact` on one core; fp32 on an EPYC without AVX-512: 3.7 s)."""
    import platform

    import torch

    from shfan.train.precision import use_bf16

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = use_bf16(state.get("train_config", {}).get("precision", "auto"), device)
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    steps = step_of(state) - step_from
    return {"device": torch.cuda.get_device_name() if device == "cuda" else cpu, "arithmetic": "bf16" if bf16 else "fp32",
            "s_per_step": round(minutes * 60 / steps, 2) if steps > 0 else None}


def record(name: str, step_from: int, minutes: float) -> None:
    """Pack last.pt and add its ledger line (to the plan as it is on disk now: a `pack` made while
    a run went on has written a line that must stay)."""
    last = RUNS / name / "last.pt"
    state = pack(last, state_path(name))
    plan = read_plan(name)
    plan["segments"].append(segment_record(state, step_from, minutes))
    write_plan(name, plan)
    print(json.dumps(plan["segments"][-1]))


def start(args) -> None:
    if plan_path(args.name).exists():
        raise SystemExit(f"error: campaign {args.name!r} exists ({plan_path(args.name)}); `run` continues it")
    bad = [a for a in ("--resume", "--out", "--segment", "--schedule-steps", "--time-budget", "--init")
           if a in args.train_args]
    if bad:
        raise SystemExit(f"error: {', '.join(bad)}: the campaign sets these itself; leave them out of the options")
    prepare = []
    for step in args.prepare:
        creates, sep, command = step.partition("=")
        if not sep or not creates or not command.strip():
            raise SystemExit(f"error: --prepare {step!r}: give PATH=COMMAND")
        prepare.append({"creates": creates, "command": command.strip()})
    write_plan(args.name, {"name": args.name, "schedule_steps": args.schedule_steps, "init": args.init,
                           "prepare": prepare, "train_args": args.train_args, "segments": []})
    print(f"campaign {args.name}: {args.schedule_steps} steps planned; `campaign.py run {args.name} --minutes M` "
          "trains one segment")


def prepare(plan: dict) -> None:
    """Run the plan's data steps whose output is missing (from the repository root)."""
    for step in plan.get("prepare", []):
        if (ROOT / step["creates"]).exists():
            continue
        print(f"preparing {step['creates']}: {step['command']}", flush=True)
        code = subprocess.call(step["command"].replace("{python}", sys.executable), shell=True, cwd=ROOT)
        if code or not (ROOT / step["creates"]).exists():
            raise SystemExit(f"error: preparing {step['creates']} failed (exit {code}): {step['command']}")


def run(args) -> None:
    plan = read_plan(args.name)
    prepare(plan)
    out, last = RUNS / args.name, RUNS / args.name / "last.pt"
    if state_path(args.name).is_file():
        unpack(state_path(args.name), last)
    step_from = step_of(torch_load(last)) if last.is_file() else 0
    cmd = [sys.executable, "-m", "shfan.cli.train", *plan["train_args"], "--out", str(out), "--resume",
           "--schedule-steps", str(plan["schedule_steps"]), "--segment", str(args.minutes), "--no-tune"]
    if plan.get("init"):  # on a resume it names where the sizes came from (its weights are not read)
        cmd += ["--init", plan["init"]]
    print(" ".join(cmd), flush=True)
    seen, t0 = len(plan["segments"]), time.time()
    code = subprocess.call(cmd, cwd=ROOT)
    step_from, minutes = after_packs(read_plan(args.name)["segments"][seen:], step_from, (time.time() - t0) / 60)
    if last.is_file() and step_of(torch_load(last)) > step_from:  # a run that failed at once adds no line
        record(args.name, step_from, minutes)
    if code:
        raise SystemExit(code)


def pack_only(args) -> None:
    plan = read_plan(args.name)
    last = RUNS / args.name / "last.pt"
    if not last.is_file():
        raise SystemExit(f"error: {last} missing: nothing to pack")
    step_from = plan["segments"][-1]["steps"][1] if plan["segments"] else 0
    record(args.name, step_from, args.minutes)


def after_packs(packed: list[dict], step_from: int, minutes: float) -> tuple[int, float]:
    """Where a run's own ledger line starts when `pack` recorded part of it while it ran (a save
    mid-session, so that a session which ends abruptly loses only the steps since): after the last
    packed step, with the packed minutes taken off."""
    if not packed:
        return step_from, minutes
    return packed[-1]["steps"][1], max(0.0, minutes - sum(seg["minutes"] for seg in packed))


def status(args) -> None:
    plan = read_plan(args.name)
    print(json.dumps(plan, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="where campaign/ and runs/campaign/ are (the repository)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="write the plan of a new campaign: start NAME ... -- shfan-train's options")
    s.add_argument("name")
    s.add_argument("--schedule-steps", type=int, required=True, help="the whole campaign's cosine horizon")
    s.add_argument("--init", help="weights of the first segment (later ones resume)")
    s.add_argument("--prepare", action="append", default=[], metavar="PATH=COMMAND",
                   help="data the options use that is remade, not committed: COMMAND runs (in a shell, from the "
                        "repository, {python} = this Python) when PATH is missing; name a file written last")
    r = sub.add_parser("run", help="train one segment and record it")
    r.add_argument("name")
    r.add_argument("--minutes", type=float, required=True)
    p = sub.add_parser("pack", help="record what runs/campaign/NAME/last.pt holds (after a killed run, or while one runs)")
    p.add_argument("name")
    p.add_argument("--minutes", type=float, default=0.0, help="the segment's wall time so far, if known")
    st = sub.add_parser("status", help="print the plan and the ledger")
    st.add_argument("name")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # start NAME ... -- shfan-train's options
    args = ap.parse_args(argv[:cut])
    args.train_args = argv[cut + 1:]
    set_root(args.root.resolve())
    {"start": start, "run": run, "pack": pack_only, "status": status}[args.cmd](args)


if __name__ == "__main__":
    main()
