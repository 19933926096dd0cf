"""How long `vidtoon convert` takes to start converting: the first run of a model (ONNX export) and later
runs with other --strength values (no new export: the controls are inputs of the exported graph).

    python bench/bench_startup.py [--video samples/bbb.mp4] [--engine onnxruntime]

Runs the real CLI in a fresh cache folder, three times (strength 1.0, 0.6, 0.7), and prints each run's
"started in" (from the summary line: model loading + engine start, export included) and its wall time.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(Path(__file__).resolve().parents[1] / "samples" / "bbb.mp4"))
    ap.add_argument("--engine", default="onnxruntime")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "VIDTOON_CACHE_DIR": str(Path(tmp) / "cache")}
        for strength in ("1.0", "0.6", "0.7"):
            out = Path(tmp) / f"out_{strength}.mp4"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "vidtoon", "convert", args.video, "-o", str(out),
                                   "--engine", args.engine, "--strength", strength],
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                sys.exit(f"convert failed: {proc.stderr}")
            started = re.search(r"started in ([\d.]+) s", proc.stdout)
            exported = "Exported" in proc.stderr
            rows.append((strength, float(started.group(1)) if started else float("nan"), wall, exported))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"{Path(args.video).name}, engine {args.engine}, {cpu}, {os.cpu_count()} CPUs")
    print("| run | --strength | started in (s) | whole run (s) | exported |")
    print("|---|---|---|---|---|")
    for i, (strength, started, wall, exported) in enumerate(rows, 1):
        print(f"| {i} | {strength} | {started:.1f} | {wall:.1f} | {'yes' if exported else 'no'} |")


if __name__ == "__main__":
    main()
