"""``vidtoon convert``: turn one video into a cartoon video."""
from __future__ import annotations

import re
from typing import Any

import click

from vidtoon.options import NVENC_PRESETS, PRESETS, ConvertOptions

#: the defaults of every option: ConvertOptions is where they are set
_D = ConvertOptions()

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")

#: ``--engine``'s values: ``auto`` and vidtoon.engines.ENGINES' names (not imported here: the CLI starts without
#: the engines; tests/test_bad_input.py checks that the two agree)
ENGINE_CHOICES = ["auto", "torch", "onnxruntime", "tensorrt"]


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N (a usage error otherwise, as for any mistyped option)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N")
    return value


class TimeParam(click.ParamType):
    """A time as seconds (``12.5``) or a clock (``1:02.5``, ``0:01:02``)."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        m = _CLOCK.match(text)
        try:
            if m:
                hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
                if minutes >= 60 and m.group(1) is not None or seconds >= 60:
                    raise ValueError
                return hours * 3600 + minutes * 60 + seconds
            return float(text)
        except ValueError:
            self.fail(f"{text!r} is not a time (use seconds like 12.5 or a clock like 1:02.5)", param, ctx)


@click.command("convert")
@click.argument("input", type=click.Path(path_type=str))
@click.option("-o", "--output", type=click.Path(path_type=str), default=None,
              help="Output file (.mp4, .mkv, .mov, .webm). Default: <name>_toon.mp4 beside the input, or the "
                   "input's container when MP4 cannot hold its audio/subtitles.")
@click.option("--model", default=_D.model, show_default=True, help="Shipped model name or checkpoint path.")
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=_D.strength, show_default=True,
              help="How cartoon: 0 = the photo, 1 = the full look (flattening, tones, palette and outlines "
                   "all scale inside the network).")
@click.option("--outline", type=click.FloatRange(0.0, 2.0), default=_D.outline, show_default=True,
              help="Outline amount: 0 = none, 1 = as trained, 2 = bolder.")
@click.option("--faces/--no-faces", default=_D.faces, show_default=True,
              help="Draw eyes, nose and mouth back into the faces a face detector (MTCNN) finds, which the "
                   "flat cartoon regions would blank out.")
@click.option("--engine", type=click.Choice(ENGINE_CHOICES), default=_D.engine, show_default=True,
              help="Inference backend (see `vidtoon info`).")
@click.option("--device", default=_D.device, show_default=True, callback=_check_device,
              help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=_D.batch_size,
              help="Frames per inference call (default: the engine's choice: two per core for ONNX Runtime on "
                   "the CPU, run side by side, one per core at a time; 4 for PyTorch on the CPU, 8 on a GPU).")
@click.option("--max-side", type=click.IntRange(min=16), default=_D.max_side,
              help="Downscale so the longer side is at most this many pixels (default: keep the size).")
@click.option("--crf", type=click.IntRange(0, 63), default=_D.crf, show_default=True,
              help="Encoder quality (lower is better and bigger).")
@click.option("--preset", type=click.Choice(PRESETS + NVENC_PRESETS), default=_D.preset, show_default=True,
              help="Encoder speed/size trade-off.")
@click.option("--codec", default=_D.codec,
              help="Video encoder: libx264, libx265, h264_nvenc, libvpx-vp9, libsvtav1, ... (default: the output's "
                   "own: libvpx-vp9 for .webm, as ffmpeg picks; libx264 for .mp4, .mkv, .mov).")
@click.option("--start", type=TimeParam(), default=_D.start, help="Convert from this time (seconds or [h:]m:s).")
@click.option("--end", type=TimeParam(), default=_D.end, help="Convert up to this time (exclusive).")
@click.option("--no-audio", "no_audio", is_flag=True, help="Drop the audio tracks.")
@click.option("--stabilize/--no-stabilize", default=_D.stabilize, show_default=True,
              help="Reduce frame-to-frame flicker of the stylization (optical-flow guided; about 11% slower at 720p).")
@click.option("--stabilize-strength", type=click.FloatRange(0.0, 1.0, max_open=True), default=_D.stabilize_strength,
              show_default=True, help="How steady --stabilize makes the result (0 up to, not including, 1).")
@click.option("--compare", is_flag=True,
              help="Write the original and the cartoon side by side (one above the other for portrait "
                   "pictures) in one output, named <name>_compare.<ext> by default.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def convert_cmd(input: str, output: str | None, no_audio: bool, quiet: bool, debug: bool, **fields: Any) -> None:
    """Turn a video into a cartoon video.

    Timing (every frame's timestamp, variable frame rates), frame count, size, rotation, aspect ratio and
    colors are kept; audio tracks are copied untouched (re-encoded to the container's own codec, AAC or
    Opus for WebM, only when the output container cannot hold them). The output appears only when complete.

    \b
    Examples:
      vidtoon convert holiday.mp4                    # writes holiday_toon.mp4
      vidtoon convert talk.mkv -o talk.mp4 --start 1:00 --end 1:30
      vidtoon convert clip.mov --max-side 1280 --crf 20
      vidtoon convert holiday.mp4 --compare          # before/after: holiday_compare.mp4
    """
    from rich.console import Console

    from vidtoon.errors import VidtoonError
    from vidtoon.pipeline import convert
    from vidtoon.progress import progress_bar, summary_line

    try:  # the options are built once, here, and handed to the library as they are
        opts = ConvertOptions(audio=not no_audio, **fields).validate()
    except VidtoonError as exc:
        raise click.UsageError(str(exc)) from None

    console = Console(stderr=True, highlight=False)
    with progress_bar("Converting", quiet=quiet, console=console) as progress:
        result = convert(input, output, opts, progress=progress, quiet=quiet)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    if not quiet:
        click.echo(summary_line(str(result.output), result.frames, result.seconds, result.fps, result.size_bytes,
                                result.startup_seconds))
