"""Train toon variants side by side on a lent GPU for a fixed wall-clock budget; pack each run into
$OUT/<name>.tar (last checkpoint, the checkpoint at the end of the init phase, losses, last sample grids).

    python3 bench/gpu_train.py SECONDS NAME=ADV[:SURF[:FLAT[:CONTENT]]] [NAME=... ...]

Each NAME=... is one run (loss weights: adversarial, surface target, flatness prior, content), all run as
separate processes on the one GPU. Data: $PHOTOS and $CARTOONS (default .gpu/data/photos and
.gpu/data/cartoons: the training split of ../shared/data, copied into a git-ignored folder that travels
with the device call, about 27 MB); $INIT_STEPS, $BATCH, $DEVICE, $THREADS, $SAMPLE_EVERY as read below.
This is how the runs of MODEL_CARD.md ("Training") were made, e.g. `... 430 a=0 b=0.2 c=1.0` and, with
INIT_STEPS=0, `... 140 g1=1:0:0:0.02 g2=1:5:0:0.02 g3=3:0:0:0.02 g4=1:0:5:0.02`.
"""
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

KINDS = ("tw-map-composite", "map-composite", "theme-synthetic-scene", "svg-scene", "svg-scene+objects",
         "background-composite", "mission-preview")


def one(budget: float, name: str, adv: float, surf: float = 50.0, flat: float = 5.0, con: float = 0.02) -> None:
    from vidtoon.trainer.loop import train
    from vidtoon.trainer.options import TrainOptions

    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(f"/tmp/runs_{name}")
    init_steps = int(os.environ.get("INIT_STEPS", 1500))
    opts = TrainOptions(
        photos=os.environ.get("PHOTOS", ".gpu/data/photos"),
        cartoons=os.environ.get("CARTOONS", ".gpu/data/cartoons"), out=str(runs), arch="toon", target="toon",
        cartoon_kinds=KINDS, holdout=0.2, batch=int(os.environ.get("BATCH", 32)), crop=128,
        init_steps=init_steps, steps=100000, init_lr=1e-3, lr=2e-4, lr_decay_every=4000,
        surface_weight=surf, flat_weight=flat, content_weight=con, adv_weight=adv,
        sample_every=int(os.environ.get("SAMPLE_EVERY", 500)), checkpoint_every=500, log_every=50,
        device=os.environ.get("DEVICE", "cuda"), amp=False, threads=int(os.environ.get("THREADS", 4)),
    )
    t0 = time.time()
    timer = threading.Timer(budget, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    state = {"last": 0.0, "run": None}

    def progress(step, total, row):
        if state["run"] is None:
            state["run"] = sorted(runs.glob("*-toon"))[-1]
        ckpt = state["run"] / "checkpoints" / "latest.pt"
        if step == init_steps + 1 and ckpt.is_file():  # the checkpoint at the end of the init phase
            shutil.copy(state["run"] / "checkpoints" / "latest.pt", runs / "init.pt")
        if time.time() - state["last"] > 20:
            state["last"] = time.time()
            print(f"[{name}] {time.time() - t0:5.0f}s step {step} {row['phase']} surf {row['loss_surf']:.4f} "
                  f"con {row['loss_con']:.3f} adv {row['loss_adv']:.3f} D {row['loss_d']:.3f} "
                  f"d_real {row['d_real']:.2f} d_fake {row['d_fake']:.2f}", flush=True)

    try:
        run = train(opts, progress=progress, log=lambda m: print(f"[{name}] {m}", flush=True))
    except KeyboardInterrupt:
        run = sorted(runs.glob("*-toon"))[-1]
    finally:
        timer.cancel()
    print(f"[{name}] trained {time.time() - t0:.0f} s: {run}", flush=True)
    with tarfile.open(out / f"{name}.tar", "w") as tar:
        tar.add(run / "checkpoints" / "latest.pt", arcname="latest.pt")
        if (runs / "init.pt").is_file():
            tar.add(runs / "init.pt", arcname="init.pt")
        tar.add(run / "losses.csv", arcname="losses.csv")
        for p in sorted((run / "results").glob("*.png"))[-2:]:
            tar.add(p, arcname=p.name)


if __name__ == "__main__":
    budget = float(sys.argv[1])
    if len(sys.argv) == 4 and sys.argv[2] == "--one":
        name, weights = sys.argv[3].split("=")
        one(budget, name, *[float(w) for w in weights.split(":")])
        sys.exit(0)
    procs = [subprocess.Popen([sys.executable, __file__, str(budget), "--one", spec]) for spec in sys.argv[2:]]
    sys.exit(max(p.wait() for p in procs))
