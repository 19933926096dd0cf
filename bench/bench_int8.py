"""Static int8 quantization of the default model for ONNX Runtime on the CPU: is it faster, does it keep the look?

The default model's convolutions are quantized with ``onnxruntime.quantization.quantize_static`` (QDQ format,
per-channel int8 weights, uint8 activations), calibrated on frames of the shared clips, then timed against
the fp32 export at 720p, batch 1, alternately on the same frames. Prints ms/frame for both, the PSNR of the
int8 output against fp32, and writes ``--side-by-side`` (input | fp32 | int8) when given.

    python bench/bench_int8.py [--side-by-side /tmp/int8.jpg]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import media_clips
from vidtoon.engines.onnx_export import export_onnx
from vidtoon.engines.onnxruntime_engine import session_options
from vidtoon.models import load_generator


def _frames(path: Path, n: int, step: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as box:
        for i, frame in enumerate(box.decode(video=0)):
            if i % step == 0:
                rgb = frame.to_ndarray(format="rgb24")
                out.append(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if size else rgb)
            if len(out) == n:
                break
    return out


def _nchw(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0


def _rgb(y: np.ndarray) -> np.ndarray:
    return ((y[0].transpose(1, 2, 0) + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side-by-side", type=Path, help="write input | fp32 | int8 of one frame here")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    clips = media_clips()
    big = [c for c in clips if av.open(str(c)).streams.video[0].height >= 720]
    if not big:
        sys.exit("needs a 720p clip among the shared media (set VIDTOON_MEDIA)")
    calib = [f for c in clips if c not in big for f in _frames(c, 6, 5, (640, 360))] or _frames(big[0], 12, 7, (640, 360))
    test = _frames(big[0], 6, 20)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": _nchw(f)} for f in calib])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(load_generator("default"), fp32)
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
        sessions = {k: ort.InferenceSession(str(p), session_options(2), providers=["CPUExecutionProvider"])
                    for k, p in (("fp32", fp32), ("int8", int8))}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        outs: dict[str, list[np.ndarray]] = {k: [] for k in sessions}
        for s in sessions.values():
            s.run(None, {"input": _nchw(test[0])})  # warm-up
        for rep in range(args.repeats):
            for k, s in sessions.items():  # alternated, so outside load hits both alike
                for f in test:
                    t0 = time.perf_counter()
                    y = s.run(None, {"input": _nchw(f)})[0]
                    times[k].append(time.perf_counter() - t0)
                    if rep == 0:
                        outs[k].append(_rgb(y))
    for k, t in times.items():
        print(f"{k}: {1000 * float(np.median(t)):.1f} ms/frame at {test[0].shape[1]}x{test[0].shape[0]} (median)")
    psnr = [cv2.PSNR(a, b) for a, b in zip(outs["fp32"], outs["int8"])]
    print(f"int8 / fp32 time: {np.median(times['int8']) / np.median(times['fp32']):.2f}; "
          f"PSNR int8 vs fp32: {np.mean(psnr):.1f} dB (min {np.min(psnr):.1f})")
    if args.side_by_side:
        grid = np.concatenate([test[2], outs["fp32"][2], outs["int8"][2]], 1)
        cv2.imwrite(str(args.side_by_side), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        print(f"side by side: {args.side_by_side}")


if __name__ == "__main__":
    main()
