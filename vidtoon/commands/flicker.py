"""``vidtoon flicker IN OUT``: how much a converted video flickers, next to its input.

Prints the warping error (Lai et al. 2018, see :mod:`vidtoon.metrics`) of OUT measured along the motion of
IN, and of IN itself as the reference level. Nothing is written.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from vidtoon.commands.convert import TimeParam
from vidtoon.errors import VidtoonError


def _frames(path: Path, size: tuple[int, int] | None = None, start: float = 0.0) -> Iterator:
    """Decode the first video stream of ``path`` as RGB arrays, resized to ``size`` (w, h) if given, from
    ``start`` seconds after its first frame (as ``convert --start`` counts)."""
    import av
    import cv2

    from vidtoon.video.reader import open_container

    try:
        box = open_container(path)
    except FileNotFoundError:
        raise VidtoonError(f"{path}: no such file") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise VidtoonError(f"{path}: not a readable video ({exc.strerror or 'unknown reason'})") from None
    with box:
        if not box.streams.video:
            raise VidtoonError(f"{path}: has no video stream")
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 90000)
        first: Fraction | None = None  # the first frame's time: --start counts from it, as convert's does
        skip = Fraction(start).limit_denominator(1_000_000)
        try:
            if skip:
                first = _seek(box, stream, tb, skip, path)
            for frame in box.decode(stream):
                if skip:
                    if frame.pts is None:
                        raise VidtoonError(f"{path}: frames without timestamps: --start cannot find its time")
                    first = frame.pts * tb if first is None else first
                    if frame.pts * tb - first < skip:
                        continue
                rgb = frame.to_ndarray(format="rgb24")
                if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
                    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                yield rgb
        except av.error.FFmpegError as exc:
            raise VidtoonError(f"{path}: decoding failed ({exc})") from None


def _seek(box: Any, stream: Any, tb: Fraction, skip: Fraction, path: Path) -> Fraction:
    """The time of the first frame of ``stream``; the container is left at the keyframe at or before
    ``skip`` seconds after it, so a late --start does not decode the whole video before it (where the
    container cannot seek, decoding starts again from the beginning)."""
    import av

    frame = next(box.decode(stream), None)
    if frame is None or frame.pts is None:
        raise VidtoonError(f"{path}: frames without timestamps: --start cannot find its time")
    first = frame.pts * tb
    try:
        box.seek(int((first + skip) / tb), stream=stream, backward=True)
    except av.error.FFmpegError:
        box.seek(0)
    return first


def _probe_size(path: Path) -> tuple[int, int]:
    """(width, height) of the first decoded frame of ``path``; errors name the file."""
    first = next(_frames(path), None)
    if first is None:
        raise VidtoonError(f"{path}: has no video frames")
    return first.shape[1], first.shape[0]


@click.command("flicker")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--max-frames", type=click.IntRange(min=2), default=None,
              help="Compare only the first N frames (the metric runs at about 5 frames/s on 720p).")
@click.option("--start", type=TimeParam(), default=0.0,
              help="Where OUT begins in IN, for a conversion made with `convert --start` (seconds or [h:]m:s).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def flicker_cmd(input_path: Path, output_path: Path, max_frames: int | None, start: float, debug: bool) -> None:
    """Measure the flicker of OUT (a conversion of IN) as its warping error along IN's motion.

    The warping error (Lai et al. 2018) warps each output frame onto the previous one with the optical flow
    of the input and averages the squared colour difference (RGB in [0, 1]) over the pixels the flow
    explains. Lower is steadier; IN's own value is the level of a video that does not flicker at all.
    """
    from vidtoon.metrics import warping_errors

    in_size, out_size = _probe_size(input_path), _probe_size(output_path)
    _check_same_picture(in_size, out_size)
    # flow is computed on the input brought to the output's size (a --max-side conversion), so the output is
    # measured as it is
    source = _frames(input_path, out_size, start)
    target = _frames(output_path)
    if max_frames is not None:
        source, target = itertools.islice(source, max_frames), itertools.islice(target, max_frames)
    counted, counted_in = _Counter(target), _Counter(source)
    a, b = itertools.tee(counted_in)
    try:
        e_in, e_out = warping_errors(a, b, counted)
    except ValueError as exc:
        if "number of frames" not in str(exc):
            raise VidtoonError(f"cannot compare IN and OUT: {exc}") from None
        # said in the command's own terms (the metric names its clips "the input", "output 1", "output 2")
        short, n, other = ("OUT", counted.count, "IN") if counted.count < counted_in.count else ("IN", counted_in.count, "OUT")
        raise VidtoonError(f"{short} ended after {n} frames while {other} goes on: OUT must be a conversion of IN, "
                           "frame for frame (--max-frames N compares only the first N; --start T, a conversion "
                           "that began at T)") from None
    click.echo("Warping error (mean squared RGB difference in [0, 1] along the input's motion; lower is steadier)")
    click.echo(f"  input   {e_in:.6f}  {input_path}  (reference level)")
    ratio = f"{e_out / e_in:.2f}x the input" if e_in > 0 else "the input is 0"
    click.echo(f"  output  {e_out:.6f}  {output_path}  ({ratio})")
    note = f"; input resized from {in_size[0]}x{in_size[1]}" if in_size != out_size else ""
    note += f"; input from {start:g} s" if start else ""
    click.echo(f"  {counted.count} frames at {out_size[0]}x{out_size[1]}{note}")


def _check_same_picture(in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
    """Refuse an OUT that is not IN's picture at some scale: another aspect (a ``--compare`` video holds two
    pictures) would be stretched and measured as nonsense. A ``--max-side`` conversion (same aspect, sides
    rounded to even numbers) is fine."""
    (iw, ih), (ow, oh) = in_size, out_size
    if abs(iw * oh - ow * ih) > 2 * max(iw, ih, ow, oh):  # within the rounding of a downscale to even sides
        raise VidtoonError(f"IN is {iw}x{ih} and OUT {ow}x{oh}: not the same picture (OUT must be a plain "
                           "conversion of IN, not a --compare video)")


class _Counter:
    """Pass frames through, counting them."""

    def __init__(self, frames: Iterator) -> None:
        self.frames, self.count = frames, 0

    def __iter__(self) -> Iterator:
        for frame in self.frames:
            self.count += 1
            yield frame
