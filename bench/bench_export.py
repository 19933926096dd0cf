"""ONNX export of the default model: the exporter's own optimizer (``optimize=True``, what vidtoon used before)
vs no optimizer plus constant folding (what :func:`vidtoon.engines.onnx_export.export_onnx` does now).

    nice -n 10 python bench/bench_export.py [--model default] [--rounds 2]

Alternated rounds in one process; prints the export time of each and the 720p ONNX Runtime run time of the
graph each wrote (one thread, best of 5), and their ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def _export(net: torch.nn.Module, optimize: bool) -> bytes:
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.optimizer import fold_constants_ir

    from vidtoon.engines import onnx_export as ox

    model = ox._Controlled(ox.exportable(net, aligned=True))
    frames, dims = ox._example(net, False, True)
    args = (frames, torch.tensor(0.5), torch.tensor(1.5))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, args, input_names=["input", *ox.CONTROL_INPUTS], output_names=["output"],
                                    opset_version=ox.OPSET, dynamo=True, external_data=False, optimize=optimize,
                                    dynamic_shapes={"x": dims, "strength": None, "outline": None})
        if not optimize:
            fold_constants_ir(program.model)
            RemoveUnusedNodesPass()(program.model)
    return program.model_proto.SerializeToString()


def _run_ms(data: bytes) -> float:
    import onnxruntime as ort

    from vidtoon.engines import onnx_export as ox
    from vidtoon.engines.onnxruntime_engine import session_options

    opts = session_options(1)
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 720, 1280), dtype=np.float32) * 2 - 1
    feed = {"input": x, **ox.control_feed(1.0, 1.0)}
    session.run(None, feed)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from vidtoon.models import load_generator

    net = load_generator(args.model)
    times: dict[bool, list[float]] = {True: [], False: []}
    runs: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for optimize in (True, False):
            t = time.perf_counter()
            data = _export(net, optimize)
            times[optimize].append(time.perf_counter() - t)
            runs[optimize].append(_run_ms(data))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"model {args.model}, aligned fp32 graph, {cpu}, torch {torch.__version__}, {args.rounds} alternated rounds")
    print("| export | export time (s), each round | 720p run, 1 thread (ms) |")
    print("|---|---|---|")
    for optimize, name in ((True, "optimize=True (before)"), (False, "no optimizer + folding (now)")):
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[optimize])} | "
              f"{', '.join(f'{r:.1f}' for r in runs[optimize])} |")
    ratio = sum(times[False]) / sum(times[True])
    run_ratio = sum(runs[False]) / sum(runs[True])
    print(f"export time now / before: {ratio:.2f}; run time now / before: {run_ratio:.2f}")


if __name__ == "__main__":
    main()
