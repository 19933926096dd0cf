"""Two models on the same clip: whole ``vidtoon convert`` speed, alternated runs in one process.

    python bench/bench_models.py                                  # classic vs default, 720p, 3 rounds
    python bench/bench_models.py --models classic default --rounds 5 --clip path.mp4
    python bench/bench_models.py --models default default:no-faces   # the cost of drawing faces back

Each round converts the clip once with every model, in turn (A B A B ...), so load changes on a noisy
machine hit both alike; the table gives the median fps of each and the ratio to the first model. The clip
is ``../shared/media/bigbuckbunny.mp4`` (720p, 132 frames) when present, else a generated 720p clip.
A model given as ``NAME:no-faces`` converts without drawing faces back (``--no-faces``).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "bigbuckbunny.mp4"


def cpu_name() -> str:
    """The CPU model (lscpu's 'Model name'), for the table's header."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> None:
    """Print the alternated speed table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["classic", "default"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clip", type=Path, help="input video (default: the shared 720p clip or a generated one)")
    ap.add_argument("--no-stabilize", action="store_true", help="time without the flicker stabilizer")
    args = ap.parse_args(argv)

    import vidtoon
    from vidtoon.engines import create_engine
    from vidtoon.models import load_generator

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or (SHARED_CLIP if SHARED_CLIP.is_file() else None)
        if clip is None:
            from mediagen import make_video

            clip = Path(tmp) / "clip.mp4"
            make_video(clip, frames=100, size=(1280, 720))
        engines = {m: create_engine("auto", load_generator(m.partition(":")[0]), device="cpu") for m in args.models}
        fps: dict[str, list[float]] = {m: [] for m in args.models}
        frames = 0
        for r in range(args.rounds + 1):  # round 0 warms up (exports, caches) and is not counted
            for m, eng in engines.items():
                t0 = time.perf_counter()
                res = vidtoon.convert(str(clip), str(Path(tmp) / "out.mp4"), engine=eng, overwrite=True,
                                      stabilize=not args.no_stabilize, faces=not m.endswith(":no-faces"))
                if r:
                    fps[m].append(res.frames / (time.perf_counter() - t0))
                frames = res.frames
        for eng in engines.values():
            eng.close()
    first = statistics.median(fps[args.models[0]])
    print(f"{cpu_name()}, {frames} frames of {clip.name}, engine {next(iter(engines.values())).name}, "
          f"stabilizer {'off' if args.no_stabilize else 'on'}, {args.rounds} alternated rounds")
    print("| model | convert fps (median) | each round | ratio to " + args.models[0] + " |")
    print("|---|---|---|---|")
    for m in args.models:
        med = statistics.median(fps[m])
        print(f"| {m} | {med:.2f} | {', '.join(f'{v:.2f}' for v in fps[m])} | {med / first:.3f} |")


if __name__ == "__main__":
    main()
