"""Model-alone speed of every CPU engine, and how closely ONNX Runtime agrees with PyTorch on real frames.

    python bench/bench_engines.py                      # fast + paper generator, 360p/720p/1080p, 1 and 2 threads
    python bench/bench_engines.py --arch fast --sizes 720 --threads 2
    python bench/bench_engines.py --model path/to/checkpoint.pt   # agreement measured on trained weights

Speed does not depend on the weights, so without ``--model`` the generators get random weights (the fast
generator's zero-initialised last layer perturbed so that it does real work). Prints two tables:

1. fps per (generator, size, engine, threads): median over timed calls after one warm-up call;
2. ONNX Runtime vs PyTorch on frames of ``/work/shared/media`` (or smooth synthetic frames): max and mean
   abs difference in uint8 levels, and the share of pixels that differ at all.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import sample_frames
from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine
from vidtoon.engines.torch_engine import TorchEngine
from vidtoon.networks import build_generator

SIZES = {360: (360, 640), 540: (540, 960), 720: (720, 1280), 1080: (1080, 1920)}


def make_generator(arch: str, model: str | None) -> torch.nn.Module:
    """The trained generator at ``model``, or ``arch`` with random (non-identity) weights."""
    if model:
        from vidtoon.models import load_generator

        return load_generator(model)
    torch.manual_seed(0)
    net = build_generator(arch)
    if arch == "fast":
        torch.nn.init.normal_(net.out.weight, 0, 0.02)
    return net.eval()


def time_engine(engine, frame: np.ndarray, budget_s: float, min_calls: int = 2, max_calls: int = 20) -> float:
    """Frames per second of ``engine.infer`` on one frame: median of timed calls after a warm-up."""
    batch = frame[None]
    engine.infer(batch)  # warm-up: allocations, ORT's first-run kernel choices
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        engine.infer(batch)
        times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times)


def speed_table(args: argparse.Namespace) -> list[tuple]:
    rows = []
    for arch in args.arch:
        net = make_generator(arch, args.model if arch == args.arch[0] else None)
        sizes = [s for s in args.sizes if arch == "fast" or s <= args.paper_max_size]
        for size in sizes:
            h, w = SIZES[size]
            frame = sample_frames(1, h, w)[0]
            for threads in args.threads:
                torch.set_num_threads(threads)
                engines = {
                    "torch": lambda net=net: TorchEngine(net),
                    "onnxruntime": lambda net=net, threads=threads: OnnxRuntimeEngine(net, threads=threads),
                }
                for name in args.engines:
                    with engines[name]() as eng:
                        fps = time_engine(eng, frame, args.seconds if arch == "fast" else 0.0, min_calls=3 if arch == "fast" else 1)
                    rows.append((arch, f"{size}p", name, threads, fps))
                    print(f"  {arch:10s} {size:>5}p {name:12s} {threads} thr  {fps:8.2f} fps", flush=True)
    return rows


def agreement(args: argparse.Namespace) -> list[tuple]:
    """ORT vs torch on real frames, in uint8 levels."""
    rows = []
    torch.set_num_threads(max(args.threads))
    for arch in args.arch:
        net = make_generator(arch, args.model if arch == args.arch[0] else None)
        h, w = SIZES[args.agree_size] if arch == "fast" else (180, 320)
        frames = sample_frames(args.agree_frames, h, w)
        with TorchEngine(net) as te, OnnxRuntimeEngine(net, threads=max(args.threads)) as oe:
            ref = np.concatenate([te.infer(f[None]) for f in frames]).astype(np.int16)
            out = np.concatenate([oe.infer(f[None]) for f in frames]).astype(np.int16)
        diff = np.abs(out - ref)
        rows.append((arch, f"{h}p x{len(frames)}", int(diff.max()), float(diff.mean()), float((diff > 0).mean())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["fast", "cartoongan"])
    ap.add_argument("--model", help="checkpoint for the first --arch (agreement on trained weights)")
    ap.add_argument("--sizes", nargs="+", type=int, default=[360, 720, 1080], choices=sorted(SIZES))
    ap.add_argument("--paper-max-size", type=int, default=1080, help="largest size timed for the paper generator")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"])
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per cell (fast generator)")
    ap.add_argument("--agree-frames", type=int, default=12, help="real frames for the agreement check")
    ap.add_argument("--agree-size", type=int, default=720, choices=sorted(SIZES), help="their size (fast generator)")
    ap.add_argument("--agree-only", action="store_true", help="skip the speed table")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, {__import__('os').cpu_count()} CPUs")
    rows = [] if args.agree_only else speed_table(args)
    print("\n| generator | size | engine | threads | fps |\n|---|---|---|---:|---:|")
    for arch, size, name, threads, fps in rows:
        print(f"| {arch} | {size} | {name} | {threads} | {fps:.2f} |")
    print("\n| generator | ORT vs torch | engine | threads | speed-up |\n|---|---|---|---:|---:|")
    base = {(a, s, t): f for a, s, n, t, f in rows if n == "torch"}
    for arch, size, name, threads, fps in rows:
        if name != "torch" and (arch, size, threads) in base:
            print(f"| {arch} | {size} | {name} | {threads} | {fps / base[arch, size, threads]:.2f}x |")
    if "onnxruntime" in args.engines and "torch" in args.engines:
        print("\n| generator | frames | max abs diff (levels) | mean abs diff | pixels differing |\n|---|---|---:|---:|---:|")
        for arch, what, mx, mean, share in agreement(args):
            print(f"| {arch} | {what} | {mx} | {mean:.4f} | {share:.2%} |")


if __name__ == "__main__":
    main()
