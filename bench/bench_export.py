"""ONNX export of a shipped model: the TorchScript exporter (what
:func:`vidtoon.engines.onnx_export.export_onnx` tries first) vs the dynamo exporter (its fall-back, and what
vidtoon used alone before 2026-12-02).

    nice -n 10 python bench/bench_export.py [--model default] [--rounds 2]

Alternated rounds in one process; prints the export time of each (aligned fp32 graph with control inputs,
as the ONNX Runtime engine on a CPU uses) and the 720p ONNX Runtime run time of the graph each wrote (one
thread, best of 5), and their ratios.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch


def _export(net: torch.nn.Module, exporter: str) -> bytes:
    from vidtoon.engines import onnx_export as ox

    model = ox._Controlled(ox.exportable(net, aligned=True))
    example = ox._example(net, False, True)
    m = ox.size_multiple(net)
    if exporter == "torchscript":
        proto = ox._trace_torchscript(model, example, True, sides=(f"{m}*h", f"{m}*w"))
    else:
        proto = ox._trace(model, example, True)
    return proto.SerializeToString()


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
    names = ("dynamo", "torchscript")
    times: dict[str, list[float]] = {n: [] for n in names}
    runs: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            t = time.perf_counter()
            data = _export(net, name)
            times[name].append(time.perf_counter() - t)
            runs[name].append(_run_ms(data))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"model {args.model}, aligned fp32 graph, {cpu}, torch {torch.__version__}, {args.rounds} alternated rounds")
    print("| exporter | export time (s), each round | 720p run, 1 thread (ms) |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {', '.join(f'{r:.1f}' for r in runs[name])} |")
    print(f"export time torchscript / dynamo: {sum(times['torchscript']) / sum(times['dynamo']):.3f}; "
          f"run time torchscript / dynamo: {sum(runs['torchscript']) / sum(runs['dynamo']):.2f}")


if __name__ == "__main__":
    main()
