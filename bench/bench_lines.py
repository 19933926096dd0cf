"""The default model's outlines: each frame size tracing only the lines it uses, against tracing both.

    python bench/bench_lines.py                        # 360p, 480p, 720p, 1080p; 5 rounds; 1 thread
    python bench/bench_lines.py --sizes 720 --rounds 9

``flat_outlines`` (vidtoon/networks/modes.py) traces lines at full resolution below 660 lines and at half
resolution above 360; before, it traced both at every size and blended them with a weight that is 0 below
360 lines and 1 from 660 (the unused half multiplied by zero). The old form is rebuilt here from the same
parts. Timed per frame, alternated (old, new, old, new ...) in one process so that load changes on a busy
machine hit both alike, after one warm-up round; the table gives medians and new / old. Four things:
``flat_outlines`` alone and the whole default model, each in PyTorch (eager) and in ONNX Runtime (aligned
fp32 graphs from the TorchScript exporter, sessions with their shape fixed, as the engine makes them).
The outputs are compared too (max abs difference, new vs old, in [-1, 1] units).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_models import cpu_name  # noqa: E402
from bench.frames import sample_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_modes import _old_flat_outlines  # noqa: E402

#: frame sizes (multiples of 8, as the engine pads frames for the aligned graph: 854 -> 856)
SIZES = {360: (360, 640), 480: (480, 856), 720: (720, 1280), 1080: (1080, 1920)}


def old_flat_outlines(img: torch.Tensor, scale: torch.Tensor, low: float, high: float, steps: int,
                      gain: float) -> torch.Tensor:
    """``flat_outlines`` before this change: both tracings at every size, blended (the frozen copy that
    tests/test_modes.py checks the new code against)."""
    return _old_flat_outlines(img, scale, low, high, steps, gain)[0]


class Outlines(torch.nn.Module):
    """``flat_outlines`` of a frame with the default model's settings, its scale read from the frame."""

    def __init__(self, config: dict, old: bool) -> None:
        super().__init__()
        self.config, self.old = config, old

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        from vidtoon.networks import modes

        c = self.config
        fn = old_flat_outlines if self.old else modes.flat_outlines
        return fn(img, modes.frame_scale(img), c["line_low"], c["line_high"], c["hysteresis"], c.get("line_gain", 1.0))


def _with_old(old: bool, fn: Callable[[], object]) -> object:
    """``fn()`` with the generator calling the old (``old``) or the current ``flat_outlines``."""
    from vidtoon.networks import modes, toon

    toon.flat_outlines = old_flat_outlines if old else modes.flat_outlines
    try:
        return fn()
    finally:
        toon.flat_outlines = modes.flat_outlines


def _export(module: torch.nn.Module, path: Path, old: bool, whole: bool) -> Path:
    """An fp32 ONNX graph of ``module`` (the whole model: aligned, as the engine exports it; else plain)."""
    from vidtoon.engines.onnx_export import export_onnx

    if whole:
        _with_old(old, lambda: export_onnx(module, path, aligned=True, verify=False))
        return path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and folding remarks
        torch.onnx.export(module, (torch.rand(1, 3, 64, 80) * 2 - 1,), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"], opset_version=18,
                          dynamic_axes={"input": {2: "h", 3: "w"}, "output": {2: "h", 3: "w"}})
    return path


def _session(path: Path, shape: tuple[int, ...]):
    """A one-thread ONNX Runtime session with the input's shape fixed (as the engine's side-by-side ones)."""
    import onnxruntime as ort

    from vidtoon.engines.onnxruntime_engine import session_options

    opts = session_options(1)
    inp = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).get_inputs()[0]
    for name, value in zip(inp.shape, shape):
        if isinstance(name, str):
            opts.add_free_dimension_override_by_name(name, int(value))
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _runners(net: torch.nn.Module, x: torch.Tensor, img: torch.Tensor, tmp: Path) -> dict[str, dict[bool, Callable]]:
    """For each measured thing, a call per form (old: True / new: False) that returns the output."""
    runners: dict[str, dict[bool, Callable]] = {"flat_outlines": {}, "whole model": {}}
    for old in (True, False):
        tag = "old" if old else "new"
        lines = Outlines(net.config, old)
        runners["flat_outlines"][old] = {
            "torch": (lambda m=lines: m(img).numpy()),
            "onnxruntime": (lambda s=_session(_export(lines, tmp / f"l-{tag}.onnx", old, False), img.shape):
                            s.run(None, {"input": img.numpy()})[0]),
        }
        whole = _session(_export(net, tmp / f"m-{tag}.onnx", old, True), x.shape)
        runners["whole model"][old] = {
            "torch": (lambda o=old: _with_old(o, lambda: net(x).numpy())),
            "onnxruntime": (lambda s=whole: s.run(None, {"input": x.numpy()})[0]),
        }
    return runners


def main(argv: list[str] | None = None) -> None:
    """Print the alternated speed table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ONNX Runtime: 1, as the engine's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from vidtoon.models import load_generator

    net = load_generator("default").eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for size in args.sizes:
            h, w = SIZES[size]
            frame = sample_frames(1, h, w)[0]
            x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1.0  #
            _, out, _ = net(x, parts=True)  # the flattened image the outlines are traced on
            img = out.contiguous()
            for what, forms in _runners(net, x, img, Path(tmp)).items():
                for engine in ("torch", "onnxruntime"):
                    times: dict[bool, list[float]] = {True: [], False: []}
                    outs = {}
                    for r in range(args.rounds + 1):  # round 0 warms up
                        for old in (True, False):
                            start = time.perf_counter()
                            outs[old] = forms[old][engine]()
                            if r:
                                times[old].append(time.perf_counter() - start)
                    o, n = statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3
                    diff = float(np.abs(outs[True] - outs[False]).max())
                    rows.append((f"{h}x{w}", what, engine, o, n, n / o, diff))
                    print(f"  {rows[-1][0]} {what} {engine}: {o:.1f} -> {n:.1f} ms", file=sys.stderr, flush=True)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {args.threads} thread(s); ONNX Runtime 1 thread; "
          f"{args.rounds} alternated rounds, medians")
    print()
    print("| frame | what | engine | old (ms) | new (ms) | new / old | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for size, what, engine, o, n, ratio, diff in rows:
        print(f"| {size} | {what} | {engine} | {o:.1f} | {n:.1f} | **{ratio:.2f}** | {diff:.2g} |")


if __name__ == "__main__":
    main()
