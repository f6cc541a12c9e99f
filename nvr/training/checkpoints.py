"""Training checkpoints: resume a killed run and end bit-identical to an uninterrupted one.

Every ``save_every`` steps, ``<out_dir>.work/ckpt-<step>/`` (atomic) holds the trainable
weights (all, or only the LoRA adapters), optimizer, scheduler, each rank's RNG state and
``state.json`` (step, data position, log rows, a fingerprint of the run). A new call resumes
from the latest checkpoint when the fingerprint matches (same model, data and stage config)
and refuses another run's checkpoint. Bit-identity on CPU needs the same torch thread count
(float reductions depend on it; a different count on resume is logged as a warning).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import atomic_dir, write_json
from ..runtime import log


def rng_state(device: torch.device):
    st = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st, device: torch.device) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


_CKPT = re.compile(r"^ckpt-(\d+)$")


def work_dir(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".work")


def latest_checkpoint(work: Path) -> Path | None:
    if not work.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in work.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))
             and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def run_fingerprint(model_ref, examples, cfg, settings) -> str:
    h = hashlib.sha256()
    c = dataclasses.asdict(cfg)
    c.pop("save_every")
    h.update(json.dumps([str(model_ref), c, settings], sort_keys=True, default=str).encode())
    for ex in examples:
        h.update(json.dumps([ex.query, ex.positive, ex.negatives]).encode())
    return h.hexdigest()[:16]


def save_checkpoint(work, step, model, opt, sched, rows, fp, dist, position, keep=2):
    import torch.distributed as tdist
    from safetensors.torch import save_file

    rng = rng_state(model.device)
    rngs = [rng]
    if dist.world > 1:
        rngs = [None] * dist.world
        tdist.all_gather_object(rngs, {k: v.cpu() for k, v in rng.items()})
    if dist.rank == 0:
        with atomic_dir(work / f"ckpt-{step}") as tmp:
            save_file({k: v.cpu() for k, v in model.trainable_state_dict().items()}, str(tmp / "trainable.safetensors"))
            torch.save(opt.state_dict(), tmp / "optimizer.pt")
            torch.save(sched.state_dict(), tmp / "scheduler.pt")
            torch.save(rngs, tmp / "rng.pt")
            write_json(tmp / "state.json", {"step": step, "fingerprint": fp, "world_size": dist.world,
                                            "position": position, "rows": rows,
                                            "threads": torch.get_num_threads()})
        old = sorted((int(m.group(1)), p) for p in work.iterdir() if (m := _CKPT.match(p.name)))
        for _, p in old[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    dist.barrier()


def load_checkpoint(ckpt: Path, model, opt, sched, fp, dist) -> tuple[int, list]:
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    if state["fingerprint"] != fp:
        raise ConfigError(f"{ckpt}: checkpoint belongs to another run (different model, data or train config); "
                          f"delete {ckpt.parent} to start over")
    model.load_trainable_state_dict({k: v.to(model.device) for k, v in load_file(str(ckpt / "trainable.safetensors")).items()})
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=model.device, weights_only=True))
    sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rngs = torch.load(ckpt / "rng.pt", weights_only=True)
    if state.get("threads") not in (None, torch.get_num_threads()):
        log.warning("%s: saved with %s torch threads, now %s: results will not be bit-identical to an "
                    "uninterrupted run", ckpt, state["threads"], torch.get_num_threads())
    if state.get("world_size") == dist.world:
        set_rng_state(rngs[dist.rank], model.device)
    else:
        log.warning("%s: saved with %s ranks, now %s: dropout RNG reseeded", ckpt, state.get("world_size"), dist.world)
    return int(state["step"]), list(state["rows"])
