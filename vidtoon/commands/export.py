"""``vidtoon export``: write a generator as an ONNX file or a TensorRT engine, for use outside vidtoon."""
from __future__ import annotations

import os
import time
from pathlib import Path

import click

from vidtoon.errors import VidtoonError
from vidtoon.fileio import check_creatable, check_replaceable, write_bytes
from vidtoon.progress import activity


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT (e.g. 1280x720)", param_hint="--size") from None
    if w < 8 or h < 8:
        raise click.BadParameter("width and height must be at least 8", param_hint="--size")
    return w, h


@click.command("export")
@click.option("--model", "-m", default="default", show_default=True, help="Shipped model name or checkpoint path.")
@click.option("--engine", type=click.Choice(["onnx", "tensorrt"]), required=True, help="What to write.")
@click.option("--fp16", is_flag=True, help="Half precision (for GPUs; TensorRT engines are fast only in fp16).")
@click.option("--output", "-o", required=True, type=click.Path(),
              help="File to write (its folder is created if missing), or a folder to write MODEL.onnx/.engine in.")
@click.option("--size", default="1280x720", show_default=True, help="(tensorrt) frame size WIDTHxHEIGHT it is built for.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1, 256), help="(tensorrt) largest batch.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No spinner and no lines (errors only).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def export_cmd(model: str, engine: str, fp16: bool, output: str, size: str, batch: int, overwrite: bool,
               quiet: bool, debug: bool) -> None:
    """Export a generator to ONNX (dynamic batch/height/width, checked against PyTorch) or a TensorRT engine.

    The ONNX graph takes and returns `input`/`output`: N x 3 x H x W RGB in [-1, 1] (float32, or float16
    with --fp16), any H and W of at least 8. A TensorRT engine is tied to the GPU model and TensorRT version
    it was built with, and to the frame size given by --size.
    """
    out = Path(output)
    if out.is_dir() or output.endswith(("/", os.sep)):  # a folder: the default name in it, as every command
        out = out / f"{Path(model).stem or 'model'}{'.onnx' if engine == 'onnx' else '.engine'}"
    check_replaceable(out, overwrite)  # before minutes of export or engine building
    try:
        check_creatable(out.parent)  # created when missing, as for every command's output
    except VidtoonError as exc:
        raise VidtoonError(f"cannot write {out}: {exc}") from None
    width, height = _parse_size(size) if engine == "tensorrt" else (0, 0)

    from vidtoon.models import load_generator

    net = load_generator(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    precision = "fp16" if fp16 else "fp32"
    if engine == "onnx":
        _export_onnx(net, out, fp16, quiet)
    else:
        _export_tensorrt(net, out, fp16, width, height, batch, quiet)
    if not quiet:
        click.echo(f"Wrote {out} ({engine}, {precision})")


def _export_onnx(net: object, out: Path, fp16: bool, quiet: bool = False) -> None:
    from vidtoon.engines import engine_class
    from vidtoon.engines.onnx_export import export_onnx

    engine_class("onnxruntime")  # the check needs onnxruntime: fail with the pip extra if it is missing
    start = time.perf_counter()
    try:
        with activity("Exporting to ONNX and checking it against PyTorch", quiet):  # tens of seconds on a CPU
            report = export_onnx(net, out, fp16=fp16)  # type: ignore[arg-type]
    except OSError as exc:
        raise VidtoonError(f"cannot write {out}: {exc.strerror or exc}") from exc
    if quiet:
        return
    click.echo(f"Checked against PyTorch: max abs difference {report.max_abs_diff:.2g} (tolerance {report.atol:g}, "
               f"[-1, 1] scale); exported in {time.perf_counter() - start:.0f} s")


def _export_tensorrt(net: object, out: Path, fp16: bool, width: int, height: int, batch: int,
                     quiet: bool = False) -> None:
    import tempfile

    import torch

    from vidtoon.engines import engine_class
    from vidtoon.engines.onnx_export import export_onnx

    engine_class("tensorrt")  # names `pip install 'vidtoon[tensorrt]'` when TensorRT is missing
    if not torch.cuda.is_available():
        raise VidtoonError("building a TensorRT engine needs a CUDA GPU (export --engine onnx works anywhere)")
    from vidtoon.engines.tensorrt_engine import build_plan, profile_shapes

    if not quiet:
        click.echo(f"Building a TensorRT engine for {width}x{height}, batch up to {batch}; this takes a few minutes",
                   err=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "generator.onnx"
        try:
            with activity("Exporting to ONNX", quiet):
                export_onnx(net, onnx_path, fp16=fp16, controls=False)  # type: ignore[arg-type]
        except ValueError as exc:  # the ONNX export's own check against PyTorch
            raise VidtoonError(f"export check failed: {exc}") from exc
        with activity("Building the TensorRT engine", quiet):
            plan = build_plan(onnx_path, profile_shapes(height, width, batch))
    try:
        write_bytes(out, plan)
    except OSError as exc:
        raise VidtoonError(f"cannot write {out}: {exc.strerror or exc}") from exc
