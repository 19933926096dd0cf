"""``vidtoon live``: a live cartoon preview of the webcam (or any video source)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from vidtoon.commands._model_options import engine_from_options, model_options


@click.command("live")
@click.option("--camera", type=click.IntRange(min=0), default=0, show_default=True,
              help="Camera index (/dev/videoN on Linux).")
@click.option("--source", default=None, metavar="PATH|URL",
              help="Any other source OpenCV reads instead of a camera: a device path, a video file "
                   "(played at its own frame rate) or a stream URL (rtsp://, http://).")
@model_options
@click.option("--max-side", type=click.IntRange(min=0), default=480, show_default=True,
              help="Stylize at this longer side (pixels) to keep up with the camera; 0: the source size.")
@click.option("--window/--no-window", default=None,
              help="Show the preview window (default: when a display is available; headless otherwise).")
@click.option("--side-by-side", is_flag=True, help="Start with the original and the cartoon side by side.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record the cartoon (video only, no sound) to this .mp4/.mkv/.mov from the start.")
@click.option("--overwrite", is_flag=True, help="Replace the --record file if it exists.")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Stop after this many stylized frames (default: until q, Ctrl-C or the end of the source).")
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where the s (snapshot) and r (record) keys write their files.")
@click.option("--no-fps", is_flag=True, help="Do not draw the FPS counter on the window.")
@click.option("-q", "--quiet", is_flag=True, help="No status line and no messages while the model starts (the summary stays).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def live_cmd(camera: int, source: str | None, model: str, strength: float, outline: float, faces: bool, engine: str,
             device: str, max_side: int, window: bool | None, side_by_side: bool, record: Path | None, overwrite: bool,
             frames: int | None, save_dir: Path, no_fps: bool, quiet: bool, debug: bool) -> None:
    """Show a live cartoon of the webcam in a window.

    A capture thread keeps only the newest camera frame and the engine always works on it, so the
    picture never lags: when stylizing is slower than the camera, frames are dropped, not queued.
    --max-side trades picture size for frame rate.

    \b
    Keys in the window:
      q / Esc   quit
      v         toggle cartoon / original and cartoon side by side
      s         save a snapshot (PNG of what is shown) in --save-dir
      r         start / stop recording to --save-dir (video only: the microphone is not recorded)

    Without a display (or with --no-window) it runs headless: use --record FILE and --frames N, or stop
    it with Ctrl-C (the recording is finished properly). Recordings are stamped with the capture time
    of each frame, so they play at real speed at the frame rate actually achieved.
    """
    from rich.console import Console
    from rich.markup import escape

    from vidtoon.live import LiveOptions, LiveSession

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    options = LiveOptions(camera=camera, source=source, max_side=max_side or None, window=window,
                          side_by_side=side_by_side, record=record, overwrite=overwrite, frames=frames, save_dir=save_dir,
                          show_fps=not no_fps)
    options.validate()
    status: Any = console.status("starting...") if not quiet else contextlib.nullcontext()

    def on_status(stats, fps: float) -> None:  # type: ignore[no-untyped-def]
        if quiet:
            return
        rec = "  [red]recording[/red]" if stats.recordings or record else ""
        status.update(f"{escape(stats.source)}: {stats.frames} frames, {fps:.1f} fps at "
                      f"{stats.size[0]}x{stats.size[1]}{rec}")

    session = LiveSession(None, options, on_status)
    session.open()  # the camera (or source), the display and --record first: before a model export
    try:
        # faces are found on every 3rd frame (held in between): detection is no free lunch at camera rates
        with engine_from_options(model, engine, device, strength, outline, quiet=quiet, faces=faces,
                                 face_every=3) as eng:
            session.engine = eng
            with status:
                stats = session.run()
    finally:
        session.release()
    ended = {"frames": f"stopped after --frames {frames}", "end of source": "end of the source"}
    console.print(
        f"{escape(stats.source)}: {stats.frames} frames stylized at {stats.size[0]}x{stats.size[1]} in "
        f"{stats.seconds:.1f} s: [bold]{stats.fps:.1f} fps[/bold] (source {stats.source_fps:.1f} fps, "
        f"{stats.dropped} of {stats.captured} frames dropped to stay live; {ended.get(stats.ended, stats.ended)})"
    )
    if not stats.windowed and window is None:
        console.print("[dim]no display: ran without a window[/dim]")
    for path in stats.snapshots:
        console.print(f"snapshot: {escape(str(path))}")
    for path in stats.recordings:
        console.print(f"recording: {escape(str(path))}")
    if stats.ended == "interrupted":
        raise KeyboardInterrupt  # exit 130, after the summary and with the recording finished
