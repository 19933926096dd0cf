"""One process of the 2-process training test (tests/test_trainer_ddp.py): ``python ddp_worker.py SPEC.json RANK``.

Trains as ``torchrun`` would run ``vidtoon train`` (WORLD_SIZE, RANK, LOCAL_RANK set), then resumes the run;
the rendezvous is a file (no server socket) and gloo talks over the loopback interface only. It records, per
phase, the process-group backend the trainer asked for, a hash of every crop batch it drew, and its
generator's weights, into ``OUT/rank<RANK>.json`` and ``OUT/rank<RANK>-<phase>.pt``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import vidtoon.trainer.loop as loop
from vidtoon.trainer.data import PairSampler
from vidtoon.trainer.options import TrainOptions


def main(spec_path: str, rank: int) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    os.environ.update(WORLD_SIZE=str(spec["world"]), RANK=str(rank), LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    record: dict = {"backend": [], "crops": {}, "run": []}
    phase = {"name": ""}

    real_init = dist.init_process_group

    def init(backend: str, **kw) -> None:
        record["backend"].append(backend)
        real_init(backend, init_method=f"file://{out / ('rendezvous-' + phase['name'])}", rank=rank,
                  world_size=spec["world"], **kw)

    real_sample = PairSampler.sample

    def sample(self: PairSampler, batch: int):
        views = real_sample(self, batch)
        record["crops"][phase["name"]].append(hashlib.sha1(views[0].tobytes()).hexdigest())
        return views

    generators: list[torch.nn.Module] = []
    real_build = loop.build_generator

    def build(*args, **kw):
        generators.append(real_build(*args, **kw))
        return generators[-1]

    dist.init_process_group = init  # type: ignore[assignment]
    PairSampler.sample = sample  # type: ignore[method-assign]
    loop.build_generator = build
    opts = TrainOptions(**{k: tuple(v) if k == "betas" else v for k, v in spec["options"].items()})
    run = None
    for name, kw in (("first", {"stop_at": spec["stop_at"]}), ("resumed", {})):
        phase["name"] = name
        record["crops"][name] = []
        run = loop.train(opts, resume=run, log=lambda m: None, **kw)
        record["run"].append(str(run))
        torch.save(generators[-1].state_dict(), out / f"rank{rank}-{name}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], int(sys.argv[2]))
