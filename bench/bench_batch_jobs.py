"""Does ``vidtoon batch --jobs N`` help? Converts the same folder of clips with 1, 2, ... parallel jobs.

Each job has its own engine on the one loaded generator; with N jobs on the CPU, torch gets cores/N threads
each (what ``vidtoon batch`` does). Prints wall time, overall frames per second and the speed-up over one
job, measured in one run on this machine.

    python bench/bench_batch_jobs.py                      # 4 clips of 2 s at 360p, jobs 1 and 2
    python bench/bench_batch_jobs.py --height 540 --clips 6 --jobs 1 2 1x1 2x2

Without ``--model`` the default fast generator carries random weights (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import make_clip, media_clips  # noqa: E402
from vidtoon.engines import create_engine  # noqa: E402
from vidtoon.batch import find_videos, run_batch  # noqa: E402
from vidtoon.models import load_generator  # noqa: E402
from vidtoon.networks import build_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4, help="number of clips in the folder")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    ap.add_argument("--height", type=int, default=360, help="clip height (16:9)")
    ap.add_argument("--jobs", nargs="+", default=["1", "2"],
                    help="configurations to compare: N jobs (torch gets cores/N threads each) or NxT (T threads each)")
    ap.add_argument("--model", default=None, help="checkpoint (default: random-weight fast generator)")
    args = ap.parse_args()

    generator = load_generator(args.model) if args.model else build_generator("fast").eval()
    width = args.height * 16 // 9 // 2 * 2
    sources = media_clips()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(args.clips):
            make_clip(src / f"clip{i}.mp4", args.height, width, args.seconds,
                      source=sources[i % len(sources)] if sources else None)
        rows = []
        for k, spec in enumerate(args.jobs):
            jobs, _, threads = spec.partition("x")
            jobs = int(jobs)
            threads = int(threads) if threads else max(1, cores // jobs)
            out = Path(tmp) / f"out{k}"
            items, _ = find_videos(src, out)
            torch.set_num_threads(threads)
            engines = [create_engine("torch", generator, device="cpu") for _ in range(jobs)]
            t0 = time.perf_counter()
            results = run_batch(items, {}, engines=engines)
            wall = time.perf_counter() - t0
            frames = sum(r.frames for r in results)
            failed = [r.input for r in results if r.status != "done"]
            if failed:
                raise SystemExit(f"conversion failed for {failed}")
            rows.append((jobs, threads, wall, frames / wall))
    base = rows[0][3]
    print(f"\n{args.clips} clips x {args.seconds:g} s at {width}x{args.height}, {cores} cores, "
          f"torch {torch.__version__}\n")
    print("| jobs | torch threads/job | wall (s) | fps (all files) | vs first row |")
    print("|---:|---:|---:|---:|---:|")
    for jobs, threads, wall, fps in rows:
        print(f"| {jobs} | {threads} | {wall:.1f} | {fps:.1f} | {fps / base:.2f}x |")


if __name__ == "__main__":
    main()
