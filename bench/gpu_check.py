"""The GPU path of vidtoon, checked and timed on one machine in about four minutes (run by bench/gpu_check.sh).

Steps, each printed as PASS/FAIL/SKIP lines as it ends (a failing step does not stop the next ones):

1. ``env``: torch, CUDA device, what ``--engine auto`` picks (``vidtoon info`` goes to the log);
2. ``pytest``: the ``gpu``-marked tests;
3. ``clips``: 720p and 1080p clips (90 frames) and a 4K one (40), H.264 with AAC audio, made here;
4. ``convert``: 720p and 1080p through the CLI with the shipped ``default`` model (and ``hq`` when this build
   ships it), each with ``--engine torch --device cuda`` and ``--engine auto``: frame count, every pts and
   every audio packet identical to the input's;
5. ``psnr``: the engine's fp16 CUDA output against the CPU float32 engine on decoded frames of both clips
   (tolerance: PSNR >= 45 dB and no pixel more than 4 levels off; measured on the CPU, fp16 is within 1);
6. ``timing``: convert (torch, CUDA, stabilizer off, and on) against decode + encode alone (a pass-through
   engine that claims the GPU, so the encoder gets the same threads) at 720p, 1080p and 4K, best of two
   each; peak GPU memory of each convert (torch allocator). With a GPU engine the stabilizer's flow runs in
   its own thread and its warp and blend on the GPU (vidtoon.stabilize_device); the targets: 1080p convert
   >= 0.8x decode + encode, without and with the stabilizer;
7. ``train``: ``vidtoon train`` with AMP for 100 steps on generated images, then ``--resume`` to 200: the
   checkpoint reaches step 200 with a GradScaler state and the CUDA RNG, losses finite.

``--cpu-dry-run`` runs the same steps on the CPU with tiny sizes (CUDA-only checks become the CPU's
equivalents: fp16 on the CPU for the PSNR, no AMP), to check this script itself anywhere.
Writes ``summary.md`` and ``results.json`` into ``--out`` after every step; logs go to ``--out/logs``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # for bench.frames, after the installed vidtoon (the repository's must not shadow it)

from bench.frames import make_clip, synthetic_frame  # noqa: E402

#: clip sizes and lengths: (label, width, height, frames) on the GPU, and in the CPU dry run
GPU_CLIPS = [("720p", 1280, 720, 90), ("1080p", 1920, 1080, 90), ("4K", 3840, 2160, 40)]
CPU_CLIPS = [("720p", 160, 90, 16), ("1080p", 192, 108, 16), ("4K", 256, 144, 8)]
PSNR_MIN, MAX_LEVELS = 45.0, 4


class Check:
    """Collects PASS/FAIL/SKIP lines and figures; rewrites the summary after every step."""

    def __init__(self, out: Path, deadline: float, dry: bool) -> None:
        self.out, self.deadline, self.dry = out, deadline, dry
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.lines: list[tuple[str, str, str]] = []
        self.figures: dict[str, object] = {}

    def record(self, name: str, ok: bool | None, detail: str = "") -> bool:
        status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        self.lines.append((status, name, detail))
        print(f"{status} {name}: {detail}", flush=True)
        return bool(ok)

    def left(self, cap: float, keep: float = 2.0) -> float:
        """A timeout for a subprocess: at most ``cap`` s, and ``keep`` s before the deadline (at least 10)."""
        return max(10.0, min(cap, self.deadline - time.time() - keep))

    def step(self, name: str, fn: Callable[[], None], need_s: float) -> None:
        left = self.deadline - time.time()
        if left < need_s:
            self.record(name, None, f"not run: {left:.0f} s left of the budget, needs about {need_s:.0f}")
            return
        t0 = time.time()
        log = self.logs / f"{name}.log"
        try:
            with log.open("a") as f, contextlib.redirect_stdout(Tee(f)), contextlib.redirect_stderr(Tee(f)):
                fn()
        except Exception as exc:  # a failed step is reported and the next one runs
            self.record(name, False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            with log.open("a") as f:
                traceback.print_exc(file=f)
        self.figures[f"seconds.{name}"] = round(time.time() - t0, 1)
        self.write()

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps({"checks": self.lines, "figures": self.figures}, indent=1))
        (self.out / "summary.md").write_text(summary(self))


class Tee(io.TextIOBase):
    """Writes to a log file and to the real stdout (so the device call's output tail shows progress)."""

    def __init__(self, f: io.TextIOBase) -> None:
        self.f = f

    def write(self, s: str) -> int:
        self.f.write(s)
        sys.__stdout__.write(s)
        return len(s)

    def flush(self) -> None:
        self.f.flush()
        sys.__stdout__.flush()


def summary(c: Check) -> str:
    fig = c.figures
    rows = ["| check | result | detail |", "|---|---|---|"] + [f"| {n} | {s} | {d} |" for s, n, d in c.lines]
    timing = ["", "| input | frames | decode+encode fps | convert fps (no stabilizer) | ratio | convert fps (stabilizer) | ratio | peak GPU MiB |",
              "|---|---|---|---|---|---|---|---|"]
    for label, *_ in GPU_CLIPS:
        t = fig.get(f"timing.{label}")
        if isinstance(t, dict):
            timing.append(f"| {label} | {t['frames']} | {t['floor_fps']:.1f} | {t['convert_fps']:.1f} | {t['ratio']:.2f} | "
                          f"{t['stabilized_fps']:.1f} | {t['stabilized_ratio']:.2f} | {t['peak_gpu_mib']:.0f} |")
    head = [f"# vidtoon GPU check{' (CPU dry run)' if c.dry else ''}", "", str(fig.get("machine", "")), ""]
    tail = ["", "```", json.dumps({k: v for k, v in fig.items() if not k.startswith("timing.")}, indent=1), "```"]
    return "\n".join(head + rows + (timing if len(timing) > 3 else []) + tail) + "\n"


def frames_of(path: Path, n: int | None = None) -> np.ndarray:
    with av.open(str(path)) as box:
        return np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(n or 10**9), box.decode(video=0))])


def pts_of(path: Path) -> list[int]:
    with av.open(str(path)) as box:
        return [f.pts for f in box.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as box:
        return [bytes(p) for p in box.demux(box.streams.audio[0]) if p.size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def cli(*argv: str) -> int:
    """``vidtoon ARGV`` in this process (torch and the model stay loaded); returns the exit code."""
    from vidtoon.cli import main

    try:
        main([str(a) for a in argv])
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)


class _Steps:
    """The steps of :func:`run`, sharing what the machine is and the clips they make."""

    def __init__(self, c: Check, dry: bool) -> None:
        import torch

        self.c, self.dry = c, dry
        self.cuda = torch.cuda.is_available() and not dry
        self.dev = "cuda" if self.cuda else "cpu"
        self.clips_spec = CPU_CLIPS if dry else GPU_CLIPS
        self.work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gpu_check_work"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.clips: dict[str, Path] = {}

    def env(self) -> None:
        import torch

        import vidtoon
        from vidtoon.engines import choose_engine

        c, cuda, dry = self.c, self.cuda, self.dry

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
        c.figures["machine"] = (f"{name}; torch {torch.__version__} (CUDA {torch.version.cuda}); PyAV {av.__version__}; "
                                f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
                                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        c.figures["vidtoon"] = vidtoon.__file__
        auto = choose_engine("auto")
        c.figures["auto"] = f"{auto[0]} on {auto[1]}: {auto[2]}"
        cli("info")
        c.record("env", cuda or dry, c.figures["machine"])
        installed = not Path(vidtoon.__file__).resolve().is_relative_to(REPO)
        c.record("vidtoon is the installed copy", installed, vidtoon.__file__)

    def pytest_gpu(self) -> None:
        c, dry = self.c, self.dry
        timeout = c.left(70, keep=100)  # leaves time for the steps after it
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-x",
                               str(REPO / "tests")], cwd=REPO, capture_output=True, text=True, timeout=timeout)
        print(proc.stdout[-20000:], proc.stderr[-5000:])
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        c.figures["pytest"] = last
        c.record("pytest -m gpu", proc.returncode == 0 and ("passed" in last or dry), last)

    def make_clips(self) -> None:
        c, work, clips, clips_spec = self.c, self.work, self.clips, self.clips_spec
        for label, w, h, n in clips_spec:
            clips[label] = make_clip(work / f"in-{label}.mp4", h, w, n / 25, audio=True)
        c.record("clips", True, ", ".join(f"{k} {len(pts_of(p))} frames" for k, p in clips.items()))

    def converts(self) -> None:
        from vidtoon.models import shipped_models

        c, dev, work, clips = self.c, self.dev, self.work, self.clips
        engine_args = [("torch", ["--engine", "torch", "--device", dev]), ("auto", ["--engine", "auto"])]
        models = ["default"] + (["hq"] if "hq" in shipped_models() else [])
        c.figures["convert_models"] = models
        for label in ("720p", "1080p"):
            src = clips[label]
            src_pts, src_audio = pts_of(src), audio_packets(src)
            for model in models:
                for name, args in engine_args:
                    out = work / f"out-{label}-{model}-{name}.mp4"
                    code = cli("convert", src, "-o", out, "--model", model, *args, "--overwrite", "-q")
                    out_pts = pts_of(out) if code == 0 else []
                    same_frames, same_pts = len(out_pts) == len(src_pts), out_pts == src_pts
                    same_audio = code == 0 and audio_packets(out) == src_audio
                    c.record(f"convert {label} --model {model} --engine {name}",
                             code == 0 and same_frames and same_pts and same_audio,
                             f"exit {code}, {len(out_pts)} of {len(src_pts)} frames, pts identical: {same_pts}, "
                             f"audio packets identical: {same_audio}")

    def compare(self) -> None:
        from vidtoon.engines.torch_engine import TorchEngine
        from vidtoon.models import load_generator

        c, dev, clips = self.c, self.dev, self.clips

        cpu = TorchEngine(load_generator("default", "cpu"), device="cpu")
        # the GPU engine as convert runs it (fp16, submit); in the dry run the CPU in fp16 stands in
        fast = TorchEngine(load_generator("default", "cpu"), device=dev, half=True)
        for label in ("720p", "1080p"):
            x = frames_of(clips[label], 8)
            ref = np.concatenate([cpu.infer(x[i:i + 4]) for i in range(0, len(x), 4)])
            out = np.concatenate([fast.submit(x[i:i + 4])() for i in range(0, len(x), 4)])
            value, worst = psnr(out, ref), int(np.abs(out.astype(int) - ref.astype(int)).max())
            c.figures[f"psnr.{label}"] = {"psnr_db": round(value, 2), "max_levels": worst,
                                          "mean_levels": round(float(np.abs(out.astype(int) - ref.astype(int)).mean()), 4)}
            c.record(f"fp16 vs CPU float32 {label}", value >= PSNR_MIN and worst <= MAX_LEVELS,
                     f"PSNR {value:.1f} dB (>= {PSNR_MIN}), max {worst} levels (<= {MAX_LEVELS})")
        cpu.close()
        fast.close()

    def timing(self) -> None:
        import torch

        from vidtoon.engines.base import Engine
        from vidtoon.engines.torch_engine import TorchEngine
        from vidtoon.models import load_generator
        from vidtoon.pipeline import _device_blender, convert

        c, cuda, dev, dry, work, clips = self.c, self.cuda, self.dev, self.dry, self.work, self.clips
        clips_spec = self.clips_spec

        class PassThrough(Engine):
            """decode + encode alone; claims the engine's device so the encoder gets the same threads."""

            name = "pass-through"
            device = "cuda:0 (pass-through)" if cuda else "cpu"

            def infer(self, frames: np.ndarray) -> np.ndarray:
                return frames

        engine = TorchEngine(load_generator("default", "cpu"), device=dev)
        floor_engine = PassThrough()
        blender = _device_blender(engine)
        c.record("stabilizer warps and blends on the engine's device", (blender is not None) == cuda,
                 f"{type(blender).__name__ if blender is not None else 'OpenCV in the encoding thread'}"
                 f"{f' on {blender.device}' if blender is not None else ''}")
        for label, *_ in clips_spec:
            src, dst = clips[label], work / f"timed-{label}.mp4"

            def fps(eng: Engine, stabilize: bool = False) -> float:
                t0 = time.perf_counter()
                result = convert(src, dst, engine=eng, overwrite=True, stabilize=stabilize)
                return result.frames / (time.perf_counter() - t0)

            convert(src, dst, engine=engine, overwrite=True, end=0.4)  # warm-up: CUDA init, cuDNN autotuning
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            floor, conv = max(fps(floor_engine), fps(floor_engine)), max(fps(engine), fps(engine))
            stab = fps(engine, stabilize=True)
            peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
            c.figures[f"timing.{label}"] = {"frames": len(pts_of(src)), "floor_fps": floor, "convert_fps": conv,
                                            "ratio": conv / floor, "stabilized_fps": stab,
                                            "stabilized_ratio": stab / floor, "peak_gpu_mib": peak}
            c.record(f"timing {label}", True, f"convert {conv:.1f} fps vs decode+encode {floor:.1f} fps "
                     f"({conv / floor:.2f}x; stabilizer on {stab / floor:.2f}x), peak GPU {peak:.0f} MiB")
        t = c.figures["timing.1080p"]
        c.record("1080p convert >= 0.8x decode+encode", None if dry else t["ratio"] >= 0.8,
                 f"{t['ratio']:.2f}x" + (" (CPU dry run: not a goal here)" if dry else ""))
        c.record("1080p convert with the stabilizer >= 0.8x decode+encode", None if dry else t["stabilized_ratio"] >= 0.8,
                 f"{t['stabilized_ratio']:.2f}x (was 0.47x with the warp and blend on the CPU)"
                 + (" (CPU dry run: not a goal here)" if dry else ""))
        engine.close()

    def train(self) -> None:
        import cv2
        import torch

        c, dev, dry, work = self.c, self.dev, self.dry, self.work

        rng = np.random.default_rng(0)
        photos, cartoons = work / "photos", work / "cartoons"
        for folder in (photos, cartoons):
            folder.mkdir(exist_ok=True)
        for i in range(24):
            img = synthetic_frame(240, 320, rng)
            noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(photos / f"p{i:02d}.png"), noisy)
            flat = cv2.Canny(img, 50, 150)
            toon = img // 32 * 32
            toon[cv2.dilate(flat, np.ones((2, 2), np.uint8)) > 0] = 0
            cv2.imwrite(str(cartoons / f"c{i:02d}.png"), toon)
        runs = work / "runs"
        size = (["--g-config", "width=8", "--g-config", "width_low=8", "--g-config", "n_res=1", "--crop", "32",
                 "--batch", "2", "--d-width", "4"] if dry else ["--crop", "128", "--batch", "8"])
        steps = (2, 2, 4) if dry else (50, 50, 150)  # init steps, adversarial steps, adversarial steps after the resume
        base = [sys.executable, "-m", "vidtoon", "train"]
        first = base + ["--photos", photos, "--cartoons", cartoons, "--out", runs, "--init-steps", str(steps[0]),
                        "--steps", str(steps[1]), "--checkpoint-every", "50", "--sample-every", "100",
                        "--device", dev, *size]
        t0 = time.time()
        proc = subprocess.run([str(a) for a in first], capture_output=True, text=True, timeout=c.left(70))
        print(proc.stdout[-5000:], proc.stderr[-5000:])
        run_dir = sorted(runs.iterdir())[-1] if runs.is_dir() and any(runs.iterdir()) else None
        c.record(f"train {steps[0] + steps[1]} steps", proc.returncode == 0 and run_dir is not None, f"exit {proc.returncode}, {time.time() - t0:.0f} s")
        t0 = time.time()
        proc = subprocess.run([str(a) for a in base + ["--resume", run_dir, "--steps", str(steps[2])]],
                              capture_output=True, text=True, timeout=c.left(70))
        print(proc.stdout[-5000:], proc.stderr[-5000:])
        ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
        with (run_dir / "losses.csv").open(newline="") as f:
            speeds = [float(r["it_per_s"]) for r in csv.DictReader(f) if r.get("it_per_s")]
        amp = bool(ckpt.get("scaler")) and "cuda" in ckpt["rng"]
        total = steps[0] + steps[2]
        c.figures["train"] = {"step": ckpt["step"], "scaler": ckpt.get("scaler"), "it_per_s_last": speeds[-1] if speeds else None}
        c.record("train --resume", proc.returncode == 0 and ckpt["step"] == total and (amp or dry)
                 and "resumed" in proc.stderr + proc.stdout,
                 f"exit {proc.returncode}, step {ckpt['step']} (want {total}), AMP scaler + CUDA RNG saved: {amp}, "
                 f"{speeds[-1] if speeds else float('nan'):.1f} it/s, {time.time() - t0:.0f} s")


def run(c: Check, dry: bool) -> None:
    """Run every step (each skipped when the deadline is too near for it)."""
    steps = _Steps(c, dry)
    c.step("env", steps.env, 5)
    c.step("pytest", steps.pytest_gpu, 20)
    c.step("clips", steps.make_clips, 10)
    if steps.clips:
        c.step("convert", steps.converts, 15)
        c.step("psnr", steps.compare, 10)
        c.step("timing", steps.timing, 20)
    c.step("train", steps.train, 25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=time.time() + 235, help="Unix time by which to finish.")
    parser.add_argument("--cpu-dry-run", action="store_true", help="Same steps on the CPU with tiny sizes.")
    args = parser.parse_args()
    c = Check(args.out, args.deadline, args.cpu_dry_run)
    run(c, args.cpu_dry_run)
    c.write()
    print("\n" + (args.out / "summary.md").read_text())
    fails = [n for s, n, _ in c.lines if s != "PASS"]
    print(f"{len(c.lines) - len(fails)} of {len(c.lines)} checks passed" + (f"; not passed: {', '.join(fails)}" if fails else ""))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
