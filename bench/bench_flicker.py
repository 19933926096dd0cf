"""Flicker benchmark: warping error (Lai et al. 2018) of input, stylized and stabilized video, and the
stabilizer's cost next to the generator's.

For each shared clip (``/work/shared/media`` or ``$VIDTOON_MEDIA``) it prints the warping error of
(a) the input itself (the reference level), (b) the stylization, frame by frame, (c) the stylization run
through :class:`vidtoon.stabilize.Stabilizer`, and the ratio (c)/(b) (target <= 0.6). (c-a)/(b-a) is the
share of the flicker the stylization *added* that is left: on clips whose own motion the flow cannot
follow (water), (a) is a floor close to (b) and this is the fairer figure. Then it times, in one
run on the same frames, the generator and the stabilizer at 720p (ms/frame) and the end-to-end fps cost of
the stabilizer when both run one after the other (target <= 15%).

The stylization is the shipped default model when ``vidtoon.load_generator("default")`` works. Until it
ships, it is a stand-in that flickers on purpose, the way a per-frame GAN does: a FastGenerator with random
output weights whose every weight is perturbed afresh for each frame, plus a small per-frame colour jitter.
The table says which one ran.

With ``--frames-dir`` it also saves before/after PNGs of three frames per clip, whole and as a
full-resolution crop around the fastest motion: 2x2 grids of input, stylized / stabilized,
4 x |stabilized - stylized| (a ghost or smear would show as a bright trail in the last panel).

    python bench/bench_flicker.py [--frames 60] [--frames-dir /tmp/flicker_frames]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import media_clips
from vidtoon.engines.torch_engine import TorchEngine
from vidtoon.errors import VidtoonError
from vidtoon.metrics import warping_errors
from vidtoon.networks import FastGenerator
from vidtoon.stabilize import Stabilizer


class FlickeryStylizer:
    """Per-frame stylization for the benchmark: the default model, or a deliberately flickering stand-in."""

    def __init__(self, jitter: float = 0.1, seed: int = 0, model: str = "default") -> None:
        try:
            import vidtoon

            net = vidtoon.load_generator(model, faces=False)  # the network's own flicker, as before
            self.name = f"model {model}"
            self.perturb = False
        except VidtoonError:
            torch.manual_seed(seed)
            net = FastGenerator()
            with torch.no_grad():  # a fixed random "style" on top of the identity start
                net.out.weight.normal_(0.0, 0.05)
                net.out.bias.normal_(0.0, 0.02)
            self.name = f"stand-in: FastGenerator, weights perturbed {jitter:.0%} per frame + colour jitter"
            self.perturb = True
        self.engine = TorchEngine(net)
        self.base = {k: v.clone() for k, v in self.engine.net.state_dict().items()}
        self.jitter = jitter
        self.rng = torch.Generator().manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if not self.perturb:
            return self.engine.infer(frame[None])[0]
        with torch.no_grad():
            for key, value in self.engine.net.state_dict().items():
                base = self.base[key]
                noise = torch.randn(base.shape, generator=self.rng) * (self.jitter * float(base.std()))
                value.copy_(base + noise if base.numel() > 1 else base)
        out = self.engine.infer(frame[None])[0].astype(np.int16)
        out += self.np_rng.normal(0.0, 3.0, size=3).round().astype(np.int16)  # per-frame colour shift
        return np.clip(out, 0, 255).astype(np.uint8)


def decode(path: Path, limit: int) -> list[np.ndarray]:
    """The first ``limit`` frames of ``path`` as RGB arrays."""
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(limit), box.decode(stream))]


def save_panels(folder: Path, name: str, frames: list[np.ndarray], toon: list[np.ndarray],
                stab: list[np.ndarray], picks: list[int]) -> list[Path]:
    """For each frame in ``picks`` save a 2x2 grid (input, stylized / stabilized, 4x difference) of the
    whole frame, and the same grid of a full-resolution crop around the fastest motion, where ghosts would be.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in picks:
        diff = np.clip(np.abs(stab[i].astype(np.int16) - toon[i]) * 4, 0, 255).astype(np.uint8)
        panels = [frames[i], toon[i], stab[i], diff]
        h, w = frames[i].shape[:2]
        # crop centred on where the input changed most since the previous frame
        motion = cv2.absdiff(frames[i], frames[max(i - 1, 0)]).max(axis=2).astype(np.float32)
        motion = cv2.blur(motion, (61, 61))
        cy, cx = np.unravel_index(int(np.argmax(motion)), motion.shape)
        ch, cw = min(h, 270), min(w, 400)
        y0 = int(np.clip(cy - ch // 2, 0, h - ch))
        x0 = int(np.clip(cx - cw // 2, 0, w - cw))
        for suffix, views in (("full", panels), ("crop", [p[y0 : y0 + ch, x0 : x0 + cw] for p in panels])):
            grid = np.concatenate([np.concatenate(views[:2], axis=1), np.concatenate(views[2:], axis=1)], axis=0)
            scale = min(1.0, 1600 / grid.shape[1])
            grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            path = folder / f"{name}_{i:03d}_{suffix}.png"
            cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
            written.append(path)
    return written


def time_720p(stylize: FlickeryStylizer, frames: list[np.ndarray], strength: float, repeats: int) -> tuple[float, float]:
    """(generator ms/frame, stabilizer ms/frame) on ``frames`` resized to 1280x720.

    The two are timed alternately on the same frames, so that load from other processes hits both alike;
    medians, because such load comes in bursts.
    """
    frames = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_AREA) for f in frames]
    stab = Stabilizer(strength=strength)
    gen_t, stab_t = [], []
    # the engine alone: the stand-in's per-frame weight perturbation is not part of a generator's cost
    engine = stylize.engine
    engine.infer(frames[0][None])  # warm-up
    for _ in range(repeats):
        stab.reset()
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            toon = engine.infer(f[None])[0]
            t1 = time.perf_counter()
            stab.apply(f, toon)
            t2 = time.perf_counter()
            gen_t.append(t1 - t0)
            if i > 0:  # the first frame after a reset only copies
                stab_t.append(t2 - t1)
    return 1000 * float(np.median(gen_t)), 1000 * float(np.median(stab_t))


def e2e_720p(clip: Path, strength: float, repeats: int, model: str = "default") -> tuple[float, float]:
    """(fps without, fps with the stabilizer) of ``vidtoon convert`` on ``clip`` (the real pipeline, the
    default model on the engine ``auto`` picks), runs alternated so that outside load hits both alike;
    the best run of each (load only ever slows a run down)."""
    import tempfile

    from vidtoon.engines import create_engine
    from vidtoon.models import load_generator
    from vidtoon.pipeline import convert

    fps: dict[bool, list[float]] = {False: [], True: []}
    net = load_generator(model)
    with tempfile.TemporaryDirectory() as tmp, create_engine("auto", net, device="cpu") as engine:
        dst = Path(tmp) / "out.mp4"
        for _ in range(repeats):
            for stab in (False, True):
                result = convert(clip, dst, engine=engine, generator=net, overwrite=True, stabilize=stab,
                                 stabilize_strength=strength)
                fps[stab].append(result.fps)
    return max(fps[False]), max(fps[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (default 60)")
    parser.add_argument("--strength", type=float, default=0.6, help="stabilizer strength (default 0.6)")
    parser.add_argument("--frames-dir", type=Path, default=None, help="save before/after PNGs here")
    parser.add_argument("--timing-frames", type=int, default=20, help="720p frames timed (default 20; 0: no timing)")
    parser.add_argument("--e2e-repeats", type=int, default=2, help="end-to-end convert runs each way (0: skip)")
    parser.add_argument("--model", default="default", help="the model to measure (name or path; default: default)")
    args = parser.parse_args()

    clips = media_clips()
    if not clips:
        sys.exit("no media clips found (set VIDTOON_MEDIA to a folder of videos)")
    stylize = FlickeryStylizer(model=args.model)
    print(f"stylization: {stylize.name}; stabilizer strength {args.strength}; "
          f"torch threads {torch.get_num_threads()}, OpenCV threads {cv2.getNumThreads()}")
    print()
    print(f"{'clip':<24} {'size':>9} {'frames':>6} {'(a) input':>10} {'(b) toon':>10} {'(c) stab':>10} "
          f"{'c/b':>6} {'(c-a)/(b-a)':>11} {'blended':>8} {'cuts':>5}")
    ratios = []
    timing_source: list[np.ndarray] = []
    for clip in clips:
        frames = decode(clip, args.frames)
        toon = [stylize(f) for f in frames]
        stab_obj = Stabilizer(strength=args.strength)
        stab = [stab_obj.apply(f, t) for f, t in zip(frames, toon)]
        e_in, e_toon, e_stab = warping_errors(frames, frames, toon, stab)
        ratios.append(e_stab / e_toon)
        h, w = frames[0].shape[:2]
        # meaningless when the stylization is already steadier than the input (it smooths the texture away)
        excess = f"{(e_stab - e_in) / (e_toon - e_in):.3f}" if e_toon > e_in else "-"
        print(f"{clip.name:<24} {w:>4}x{h:<4} {len(frames):>6} {e_in:>10.6f} {e_toon:>10.6f} {e_stab:>10.6f} "
              f"{e_stab / e_toon:>6.3f} {excess:>11} {stab_obj.blended:>8} "
              f"{stab_obj.cuts:>5}")
        if args.frames_dir is not None:
            n = len(frames)
            save_panels(args.frames_dir, clip.stem, frames, toon, stab, [n // 4, n // 2, n - 1])
        if not timing_source or h >= 720:
            timing_source = frames[: args.timing_frames]
    print(f"{'mean ratio':<24} {'':>9} {'':>6} {'':>10} {'':>10} {'':>10} {float(np.mean(ratios)):>6.3f}")
    print()
    if not timing_source:  # --timing-frames 0: the warping errors only
        return
    gen_ms, stab_ms = time_720p(stylize, timing_source, args.strength, repeats=1)
    cost = stab_ms / (gen_ms + stab_ms)
    print("720p (1280x720), measured interleaved on the same frames:")
    print(f"  generator   {gen_ms:8.1f} ms/frame  ({stylize.engine.name}, {stylize.engine.device})")
    print(f"  stabilizer  {stab_ms:8.1f} ms/frame")
    print(f"  end-to-end fps: {1000 / gen_ms:.2f} -> {1000 / (gen_ms + stab_ms):.2f}  (cost {cost:.1%}, "
          f"stages run one after the other)")
    big = [c for c in clips if av.open(str(c)).streams.video[0].height >= 720]
    if big and args.e2e_repeats:
        plain, stab = e2e_720p(big[0], args.strength, args.e2e_repeats, args.model)
        print(f"  vidtoon convert {big[0].name} (default model, auto engine, the stabilizer overlapped with "
              f"inference): {plain:.2f} -> {stab:.2f} fps (cost {1 - stab / plain:.1%}; target <= 15%)")
    if args.frames_dir is not None:
        print(f"\nbefore/after PNGs in {args.frames_dir}")


if __name__ == "__main__":
    main()
