"""A rich progress bar for conversions (frames, fps, ETA) on stderr, and the one-line summary."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

ProgressCallback = Callable[[int, "int | None"], None]


class _FpsColumn(ProgressColumn):
    """Frames per second, smoothed over rich's recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} fps" if speed else "  ... fps", style="progress.data.speed")


@contextmanager
def progress_bar(label: str, quiet: bool = False, console: Console | None = None) -> Iterator[ProgressCallback | None]:
    """Yield a ``progress(done, total)`` callback drawing a bar, or None when ``quiet`` or not on a terminal.

    ``total`` may be None (unknown length: the bar pulses). The bar is removed when the block ends, so
    that only the summary line stays on screen.
    """
    console = console or Console(stderr=True)
    if quiet or not console.is_terminal:
        # no bar when quiet, nor in logs and pipes (a live bar only makes sense on a terminal)
        yield None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        _FpsColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    # the bar starts on the first report, so that errors found before any work print only their line
    bar: Progress | None = None
    task = None

    def update(done: int, total: int | None) -> None:
        nonlocal bar, task
        if bar is None:
            bar = Progress(*columns, console=console, transient=True)
            bar.start()
            task = bar.add_task(label, total=total)
        # an estimate can be short (VFR, wrong header): never let the bar claim more than 100 %
        if total is not None and done > total:
            total = done
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


@contextmanager
def activity(label: str, quiet: bool = False, console: Console | None = None) -> Iterator[None]:
    """A spinner with the time spent, on stderr, while the block runs (a long step without a count: an
    export, a build). Nothing when ``quiet`` or not on a terminal; removed when the block ends."""
    console = console or Console(stderr=True)
    if quiet or not console.is_terminal:
        yield
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as spinner:
        spinner.add_task(label, total=None)
        yield


def format_size(n: int) -> str:
    """Bytes in human units (KiB, MiB, GiB)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def summary_line(output: str, frames: int, seconds: float, fps: float, size_bytes: int,
                 startup: float | None = None) -> str:
    """The line printed after a conversion: what was written, how many frames, how fast, how big, and how long
    the start took (loading the model and its engine, an ONNX export on a model's first run)."""
    start = "" if startup is None else f"; started in {startup:.1f} s"
    return f"Wrote {output}: {frames} frames in {seconds:.1f} s ({fps:.1f} fps), {format_size(size_bytes)}{start}"
