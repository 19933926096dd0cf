"""Training on two processes (DistributedDataParallel over gloo on the CPU), as ``torchrun`` runs it.

Each process is tests/ddp_worker.py; they rendezvous through a file. One run of 3 steps, then a resume to
step 4: a checkpoint appears, the ranks' weights agree, and the ranks draw different crops (also after the
resume, when every rank used to restore rank 0's random state).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from test_trainer import TINY_G, _write_images
from vidtoon.trainer import data as data_mod
from vidtoon.trainer.loop import backend_for

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


@pytest.mark.slow
def test_two_processes_train_resume_and_agree(tmp_path: Path) -> None:
    photos = _write_images(tmp_path / "photos", 5, 0, False)
    cartoons = _write_images(tmp_path / "cartoons", 5, 1, True)
    options = dict(photos=str(photos), cartoons=str(cartoons), out=str(tmp_path / "runs"), g_config=TINY_G,
                   d_width=4, crop=32, batch=2, init_steps=2, steps=2, sample_every=2, checkpoint_every=2,
                   log_every=1, threads=1, device="cpu")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"out": str(tmp_path), "world": 2, "stop_at": 3, "options": options}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(spec), str(rank)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    try:
        logs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-3000:]
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert records[0]["backend"] == records[1]["backend"] == ["gloo", "gloo"]
    # every rank knows the run folder rank 0 made, and the run went on to its end after the resume
    assert records[0]["run"] == records[1]["run"] and len(set(records[0]["run"])) == 1
    ckpt = torch.load(Path(records[0]["run"][0]) / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["step"] == 4
    for phase in ("first", "resumed"):
        w0, w1 = (torch.load(tmp_path / f"rank{r}-{phase}.pt") for r in range(2))
        assert all(torch.equal(w0[k], w1[k]) for k in w0), phase
        c0, c1 = records[0]["crops"][phase], records[1]["crops"][phase]
        assert len(c0) == len(c1) > 0
        assert not set(c0) & set(c1), f"ranks drew the same crops ({phase})"
    assert all(torch.equal(ckpt["params"][k], w0[k]) for k in w0)


def test_backend_is_gloo_unless_the_device_is_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # GPUs present, CPU training asked for
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 1)) == "nccl"


def test_cache_entries_written_at_once_by_two_writers(tmp_path: Path, monkeypatch) -> None:
    """Two writers of the same entries (the processes of one run) never take each other's temporary file."""
    images = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20)]
    both_wrote = threading.Barrier(2, timeout=10)
    real_imwrite = cv2.imwrite

    def imwrite(path, img):  # both have written their temporary file before either renames it
        ok = real_imwrite(path, img)
        both_wrote.wait()
        return ok

    monkeypatch.setattr(data_mod.cv2, "imwrite", imwrite)
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = data_mod.cached(images, lambda im: 255 - im, "t", tmp_path / "c", workers=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        assert res is not None and [int(r[0, 0, 0]) for r in res] == [245, 235]
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".png", ".png"]  # no temporary files left


def test_cache_parts_start_at_their_share(tmp_path: Path) -> None:
    seen: list[int] = []
    images = [np.full((8, 8, 3), v, np.uint8) for v in range(4)]
    out = data_mod.cached(images, lambda im: seen.append(int(im[0, 0, 0])) or im, "t", tmp_path, part=(1, 2),
                          workers=1)
    assert seen == [2, 3, 0, 1] and [int(o[0, 0, 0]) for o in out] == [0, 1, 2, 3]


def test_cache_threads_keep_the_order_and_reuse_entries(tmp_path: Path) -> None:
    calls: list[int] = []
    images = [np.full((8, 8, 3), v, np.uint8) for v in range(12)]
    out = data_mod.cached(images, lambda im: calls.append(1) or 255 - im, "t", tmp_path, workers=4)
    assert [int(o[0, 0, 0]) for o in out] == [255 - v for v in range(12)] and len(calls) == 12
    again = data_mod.cached(images, lambda im: calls.append(1) or im, "t", tmp_path, workers=4)
    assert [int(o[0, 0, 0]) for o in again] == [255 - v for v in range(12)] and len(calls) == 12  # from the cache
