"""What does Ray cost on one machine? The same folder with local ``batch --jobs 1``, ``--jobs 2`` and ``--ray local``.

Each configuration is timed end to end as ``vidtoon batch`` runs it: loading the model (and, for Ray, starting
a local cluster and its workers, each loading the model) included. For Ray it also splits the time into
start-up (call to the first file handed out), per-file overhead (the driver's time from handing a file out
to having its result, minus the conversion time the worker measured: scheduling, transfer, polling) and
shut-down. Prints a Markdown table.

    python bench/bench_batch_ray.py                        # 8 clips of 2 s at 360p, PyTorch on the CPU
    python bench/bench_batch_ray.py --clips 16 --height 540 --engine onnxruntime

Without ``--model`` the default fast generator carries random weights (speed does not depend on them).
Ray runs with RAY_USAGE_STATS_ENABLED=0 and on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

# before Ray is imported: keep the local cluster on 127.0.0.1, report nothing, write no token to ~/.ray
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import make_clip, media_clips  # noqa: E402
from vidtoon.batch import find_videos, run_batch  # noqa: E402
from vidtoon.batch_ray import RayOptions, run_batch_ray  # noqa: E402


def _local(src: Path, out: Path, model: str, engine: str, jobs: int) -> float:
    """Wall seconds of a local batch with ``jobs`` engines, as ``vidtoon batch --jobs`` runs it."""
    import torch

    from vidtoon.engines import create_engine
    from vidtoon.models import load_generator

    t0 = time.perf_counter()
    generator = load_generator(model, "cpu")
    engines = [create_engine(engine, generator, device="cpu") for _ in range(jobs)]
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    results = run_batch(find_videos(src, out)[0], {}, engines=engines, generator=generator)
    wall = time.perf_counter() - t0
    _check(results)
    return wall


def _ray(src: Path, out: Path, model: str, engine: str, workers: int) -> tuple[float, float, list[float], float]:
    """(wall, start-up, per-file overheads, shut-down) seconds of ``--ray local`` with ``workers`` workers."""
    started: dict[Path, float] = {}
    overheads: list[float] = []
    last_done = [0.0]

    def on_start(item) -> None:  # type: ignore[no-untyped-def]
        started.setdefault(item.input, time.perf_counter())  # a retry would count from the first attempt

    def on_done(item, result) -> None:  # type: ignore[no-untyped-def]
        last_done[0] = time.perf_counter()
        if result.status == "done":
            overheads.append(last_done[0] - started[item.input] - result.seconds)

    t0 = time.perf_counter()
    results = run_batch_ray(find_videos(src, out)[0], {}, model=model, engine=engine, device="cpu",
                            ray_options=RayOptions("local", workers=workers), on_start=on_start, on_done=on_done)
    wall = time.perf_counter() - t0
    _check(results)
    return wall, min(started.values()) - t0, overheads, t0 + wall - last_done[0]


def _check(results: list) -> None:
    failed = [f"{r.input}: {r.error}" for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"conversion failed: {failed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8, help="number of clips in the folder")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    ap.add_argument("--height", type=int, default=360, help="clip height (16:9)")
    ap.add_argument("--engine", default="torch", help="engine of every configuration")
    ap.add_argument("--model", default=None, help="checkpoint (default: random-weight fast generator)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all configurations (the median is shown)")
    args = ap.parse_args()

    import torch

    from vidtoon.models import export_generator
    from vidtoon.networks import build_generator

    load = os.getloadavg()[0]
    width = args.height * 16 // 9 // 2 * 2
    sources = media_clips()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(export_generator(build_generator("fast").eval(), "fast", Path(tmp) / "fast.pt"))
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(args.clips):
            make_clip(src / f"clip{i}.mp4", args.height, width, args.seconds,
                      source=sources[i % len(sources)] if sources else None)
        walls: dict[str, list[float]] = {}
        ray_runs: list[tuple[float, float, list[float], float]] = []
        workers = min(2, cores)
        for r in range(args.repeat):  # interleaved, so that a change in the machine's load hits every row
            for j in (1, 2):
                walls.setdefault(f"local --jobs {j}", []).append(
                    _local(src, Path(tmp) / f"jobs{j}-{r}", model, args.engine, j))
            ray_runs.append(_ray(src, Path(tmp) / f"ray-{r}", model, args.engine, workers))
        walls[f"--ray local ({workers} workers)"] = [run[0] for run in ray_runs]

    print(f"\n{args.clips} clips x {args.seconds:g} s at {width}x{args.height}, engine {args.engine}, {cores} cores, "
          f"torch {torch.__version__}, ray {__import__('ray').__version__}; median of {args.repeat} interleaved "
          f"run(s), load average at start {load:.1f}\n")
    print("| configuration | wall (s) | files/min | vs --jobs 2 | Ray start-up (s) | Ray overhead/file (s, mean / max) "
          "| Ray shut-down (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = statistics.median(walls["local --jobs 2"])
    for name, runs in walls.items():
        wall = statistics.median(runs)
        extra = "| | | |"
        if name.startswith("--ray"):
            overheads = [o for run in ray_runs for o in run[2]]
            extra = (f"| {statistics.median(run[1] for run in ray_runs):.1f} | {statistics.mean(overheads):.2f} / "
                     f"{max(overheads):.2f} | {statistics.median(run[3] for run in ray_runs):.1f} |")
        print(f"| {name} | {wall:.1f} | {args.clips / wall * 60:.1f} | {base / wall:.2f}x {extra}")


if __name__ == "__main__":
    main()
