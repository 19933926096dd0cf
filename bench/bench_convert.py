"""End-to-end benchmark of ``vidtoon convert`` against its floor, its ceiling and the naive way.

For each input size (360p/720p/1080p H.264 clips generated here with PyAV from the shared media, or
synthetic) and each generator it measures, in one run on this machine:

- **floor**: the conversion pipeline with an identity engine: decode + encode alone, overlapped;
- **model alone**: ``engine.infer`` in a loop on decoded frames, batch as in convert, per engine (fps);
- **convert**: ``vidtoon.pipeline.convert`` end to end with that engine (model loaded beforehand);
- **naive**: how the peers do it: OpenCV reads a frame, PyTorch eager stylizes it, OpenCV writes it;

and prints the ratios convert / model alone (goal >= 0.9) and convert / naive (goal >= 3), with the peak
resident memory of each run (sampled /proc RSS of this process, MiB). The paper generator (~0.1 fps at
720p on a 2-core CPU) is timed on ``--paper-frames`` frames at 360p only. ``--length-check 1 5`` adds the
memory-flatness check: convert a 1-minute and a 5-minute 360p clip and compare peak RSS.

    python bench/bench_convert.py                        # a few minutes on a 2-core CPU
    python bench/bench_convert.py --sizes 720 --seconds 2 --no-paper
    python bench/bench_convert.py --sizes 720 --no-paper --pairs 4   # + convert / naive, back to back
    python bench/bench_convert.py --write bench/RESULTS.md

The fast generator is the shipped default model (its architecture is what users run; ``--model random``
times random weights of the plain default size instead); the paper generator carries random weights
(speed does not depend on them).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import make_clip, media_clips
from vidtoon.engines import create_engine
from vidtoon.engines.base import Engine, check_batch
from vidtoon.networks import build_generator
from vidtoon.pipeline import convert

SIZES = {360: (640, 360), 720: (1280, 720), 1080: (1920, 1080)}


class IdentityEngine(Engine):
    """Returns its input: the pipeline with this engine costs decode + encode only (the floor)."""

    name = "identity"

    def infer(self, frames: np.ndarray) -> np.ndarray:
        check_batch(frames)
        return frames


class PeakRSS:
    """Samples this process's resident memory every 20 ms while active; ``peak`` in MiB."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page / 2**20

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @contextmanager
    def watch(self) -> Iterator[PeakRSS]:
        self.peak = self._rss()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()


@dataclass
class Row:
    generator: str
    size: str
    frames: int
    floor: float = float("nan")
    model: dict[str, float] = field(default_factory=dict)
    e2e: dict[str, float] = field(default_factory=dict)
    naive: float = float("nan")
    rss: dict[str, float] = field(default_factory=dict)
    stabilized: float = float("nan")  # convert as users run it: the flicker stabilizer on (the default)
    pairs: list[float] = field(default_factory=list)  # convert / naive of back-to-back pairs (--pairs)


def make_generator(arch: str, model: str | None) -> torch.nn.Module:
    if model and model != "random":
        from vidtoon.models import load_generator

        return load_generator(model)
    torch.manual_seed(0)
    net = build_generator(arch)
    for p in net.parameters():  # random, non-identity weights (the fast generator starts near identity)
        p.data.add_(torch.randn_like(p) * 0.02)
    return net.eval()


def decoded_frames(path: Path, n: int) -> np.ndarray:
    with av.open(str(path)) as box:
        out = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), box.decode(video=0))]
    return np.stack(out)


def model_alone(engine: Engine, frames: np.ndarray, batch: int, budget_s: float, min_calls: int = 2) -> float:
    """fps of ``engine.infer`` on batches of real frames: one warm-up batch (when ``min_calls`` > 1), then
    at least ``min_calls`` batches and ``budget_s`` seconds."""
    if min_calls > 1:
        engine.infer(frames[:batch])
    batches = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    done, calls, start = 0, 0, time.perf_counter()
    while True:
        for b in batches:
            engine.infer(b)
            done, calls = done + len(b), calls + 1
            if calls >= min_calls and time.perf_counter() - start > budget_s:
                return done / (time.perf_counter() - start)


def run_convert(src: Path, engine: Engine, net: torch.nn.Module, out_dir: Path, rss: PeakRSS, batch: int | None = None,
                stabilize: bool = False) -> tuple[float, int]:
    """(fps, frames) of the real pipeline, wall clock around the whole call.

    The stabilizer is off unless asked for: the floor and the convert / model ratio compare the pipeline
    with the model alone; the "+ stabilizer" column is convert with its default on.
    """
    dst = out_dir / f"{src.stem}-{engine.name}.mp4"
    with rss.watch():
        start = time.perf_counter()
        result = convert(src, dst, engine=engine, generator=net, overwrite=True, batch_size=batch, stabilize=stabilize)
        seconds = time.perf_counter() - start
    dst.unlink(missing_ok=True)
    return result.frames / seconds, result.frames


def naive(src: Path, net: torch.nn.Module, out_dir: Path, rss: PeakRSS, limit: int | None = None) -> float:
    """OpenCV read -> PyTorch eager on one frame -> OpenCV write, one frame at a time (the peers' loop)."""
    cap = cv2.VideoCapture(str(src))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    dst = out_dir / f"{src.stem}-naive.mp4"
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS) or 25, (w, h))
    n = 0
    with rss.watch(), torch.inference_mode():
        start = time.perf_counter()
        while limit is None or n < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            x = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 127.5 - 1
            y = ((net(x)[0] + 1) * 127.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
            writer.write(cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
            n += 1
        writer.release()
        seconds = time.perf_counter() - start
    cap.release()
    dst.unlink(missing_ok=True)
    return n / seconds


def bench_size(arch: str, net: torch.nn.Module, src: Path, label: str, engines: list[str], args: argparse.Namespace,
               tmp: Path) -> Row:
    rss = PeakRSS()
    frames = decoded_frames(src, 48 if arch == "fast" else args.paper_frames)
    row = Row(arch, label, len(frames))
    row.floor, _ = run_convert(src, IdentityEngine(), net, tmp, rss)
    row.rss["floor"] = rss.peak
    for name in engines:
        with create_engine(name, net, device="cpu") as engine:
            batch = getattr(engine, "preferred_batch_size", None) or 4
            if arch == "fast":
                row.model[name] = model_alone(engine, frames, batch, args.model_seconds)
            else:
                # seconds per frame: one cold call says enough, a warm-up would double the cost
                row.model[name] = model_alone(engine, frames, 1, 0.0, min_calls=1)
            if name in (args.convert_engines or engines):
                row.e2e[name], row.frames = run_convert(src, engine, net, tmp, rss, batch)
                row.rss[name] = rss.peak
                if name == (args.convert_engines or engines)[0]:
                    row.stabilized, _ = run_convert(src, engine, net, tmp, rss, batch, stabilize=True)
        print(f"  {arch} {label} {name}: model {row.model[name]:.2f} fps, convert {row.e2e.get(name, float('nan')):.2f} fps, "
              f"peak {row.rss.get(name, float('nan')):.0f} MiB", flush=True)
    row.naive = naive(src, net, tmp, rss)
    row.rss["naive"] = rss.peak
    print(f"  {arch} {label} floor {row.floor:.1f} fps, naive {row.naive:.2f} fps", flush=True)
    if args.pairs and arch == "fast":
        row.pairs = paired_ratios(src, net, tmp, args.pairs, (args.convert_engines or engines)[0])
    return row


def paired_ratios(src: Path, net: torch.nn.Module, tmp: Path, pairs: int, name: str) -> list[float]:
    """convert / naive from ``pairs`` back-to-back pairs of runs (the order alternating): on a noisy machine the
    single runs above, minutes apart, can see different machine speeds."""
    rss, ratios = PeakRSS(), []
    with create_engine(name, net, device="cpu") as engine:
        batch = getattr(engine, "preferred_batch_size", None) or 4
        run_convert(src, engine, net, tmp, rss, batch)  # warm: the sessions for this size
        for i in range(pairs):
            if i % 2:
                n = naive(src, net, tmp, rss)
                c, _ = run_convert(src, engine, net, tmp, rss, batch)
            else:
                c, _ = run_convert(src, engine, net, tmp, rss, batch)
                n = naive(src, net, tmp, rss)
            ratios.append(c / n)
            print(f"  pair {i + 1}: convert {c:.2f} fps, naive {n:.2f} fps, {c / n:.2f}x", flush=True)
    return ratios


def table(rows: list[Row], engines: list[str]) -> str:
    head = ["generator", "input", "frames", "floor (decode+encode)"]
    head += [f"model alone: {e}" for e in engines] + [f"convert: {e}" for e in engines]
    head += [f"convert + stabilizer: {engines[0]}", "naive", "convert/model", "convert/naive", "peak RSS MiB (floor / " + " / ".join(engines) + " / naive)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best = max(r.e2e, key=r.e2e.__getitem__)
        cells = [r.generator, r.size, str(r.frames), f"{r.floor:.1f}"]
        cells += [f"{r.model[e]:.2f}" for e in engines] + [f"{r.e2e[e]:.2f}" if e in r.e2e else "-" for e in engines]
        cells += [f"{r.stabilized:.2f}", f"{r.naive:.2f}", f"{r.e2e[best] / r.model[best]:.2f} ({best})", f"{r.e2e[best] / r.naive:.1f}x ({best})"]
        cells.append(" / ".join(f"{r.rss[k]:.0f}" if k in r.rss else "-" for k in ["floor", *engines, "naive"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def length_check(net: torch.nn.Module, tmp: Path, source: Path | None, lengths: list[float]) -> str:
    """Peak RSS of convert on a short and a long 360p clip (memory must not grow with length)."""
    rss = PeakRSS()
    out = ["| clip | frames | convert fps | peak RSS MiB |", "|---|---:|---:|---:|"]
    peaks = []
    with create_engine("auto", net, device="cpu") as engine:
        for minutes in lengths:
            clip = make_clip(tmp / f"long{minutes}.mp4", 360, 640, 60 * minutes, source=source)
            fps, n = run_convert(clip, engine, net, tmp, rss, stabilize=True)  # as users run it
            peaks.append(rss.peak)
            out.append(f"| {minutes:g} min 360p | {n} | {fps:.1f} | {rss.peak:.0f} |")
            clip.unlink()
    out.append(f"\n{lengths[-1]:g} min / {lengths[0]:g} min peak RSS: {peaks[-1] / peaks[0]:.3f} (goal: within 10%)")
    return "\n".join(out)


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; "
            f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
            f"{__import__('onnxruntime').__version__}, PyAV {av.__version__}, OpenCV {cv2.__version__}; load average at start {load:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[360, 720, 1080], choices=sorted(SIZES))
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the generated clips (fast generator)")
    ap.add_argument("--engines", nargs="+", default=["onnxruntime", "torch"])
    ap.add_argument("--convert-engines", nargs="+", help="engines timed end to end (default: all of --engines)")
    ap.add_argument("--model", default="default", help="the fast generator to time: a model name or checkpoint "
                    "(default: the shipped default model; \"random\": random weights of the default size)")
    ap.add_argument("--model-seconds", type=float, default=4.0, help="timing budget of each model-alone measure")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper generator")
    ap.add_argument("--paper-frames", type=int, default=6, help="frames (at 360p) for the paper generator")
    ap.add_argument("--length-check", nargs=2, type=float, metavar=("MIN1", "MIN2"),
                    help="also compare peak RSS of convert on 360p clips of these lengths in minutes (e.g. 1 5)")
    ap.add_argument("--pairs", type=int, default=0, help="also time convert (the first --convert-engines) and naive "
                    "back to back this many times, the order alternating, and print each pair's ratio and the median")
    ap.add_argument("--torch-threads", type=int, help="torch intra-op threads for the torch engine and the naive "
                    "baseline (default: torch's own, all cores; on a loaded machine 1 is faster and fairer)")
    ap.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    args = ap.parse_args()

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    info = machine() + f"; torch threads {torch.get_num_threads()}"
    print(info, flush=True)
    clips = media_clips()
    source = next((c for c in clips if c.suffix == ".mp4"), clips[0] if clips else None)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vidtoon-bench-") as tmpdir:
        tmp = Path(tmpdir)
        fast = make_generator("fast", args.model)
        for size in args.sizes:
            w, h = SIZES[size]
            src = make_clip(tmp / f"in{size}.mp4", h, w, args.seconds, source=source)
            rows.append(bench_size("fast", fast, src, f"{size}p", args.engines, args, tmp))
        if not args.no_paper:
            paper = make_generator("cartoongan", None)
            src = make_clip(tmp / "paper360.mp4", 360, 640, args.paper_frames / 25, source=source)
            rows.append(bench_size("cartoongan", paper, src, "360p", args.engines, args, tmp))
        extra = length_check(fast, tmp, source, args.length_check) if args.length_check else ""
    text = table(rows, args.engines)
    for r in rows:
        if r.pairs:
            text += (f"\n\n{r.generator} {r.size}, convert / naive in {len(r.pairs)} back-to-back pairs: "
                     f"{', '.join(f'{x:.2f}' for x in r.pairs)} (median {statistics.median(r.pairs):.2f}x)")
    print("\n" + text + ("\n\n" + extra if extra else ""))
    if args.write:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        args.write.write_text(
            f"# vidtoon benchmark results\n\n`python bench/bench_convert.py {' '.join(sys.argv[1:])}` on {stamp}\n\n"
            f"Machine: {info}\n\nfps unless noted; input source: {source.name if source else 'synthetic frames'}.\n\n"
            f"{text}\n" + (f"\n{extra}\n" if extra else "")
        )


if __name__ == "__main__":
    main()
