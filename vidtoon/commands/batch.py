"""``vidtoon batch``: convert every video in a folder, resumably."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from vidtoon.commands._model_options import with_convert_params


@click.command("batch")
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the results, mirroring INPUT_DIR's subfolders (default: INPUT_DIR_toon beside it, "
                   "INPUT_DIR_compare with --compare).")
@click.option("-r", "--recursive", is_flag=True, help="Also convert videos in subfolders.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files matching this glob (relative path or file name, e.g. '*.mp4' or 'trip/*'); repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching this glob; repeatable.")
@click.option("-j", "--jobs", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Files converted in parallel, each with its own engine on the one loaded model; on the CPU "
                   "the cores are split between the jobs. On 2 busy CPU cores 2 jobs converted 1.2-1.5x "
                   "faster than 1 (bench/bench_batch_jobs.py); on a GPU it is not measured: start with 1.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the per-file results (status, frames, fps, time, errors) to this JSON file.")
@with_convert_params(skip=("overwrite",))
@click.option("--overwrite", is_flag=True,
              help="Convert again files whose output exists (default: skip them, so a re-run resumes).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (the final table is still printed).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def batch_cmd(input_dir: Path, output_dir: Path | None, recursive: bool, include: tuple[str, ...],
              exclude: tuple[str, ...], jobs: int, report: Path | None, overwrite: bool, quiet: bool,
              debug: bool, **convert_opts: Any) -> None:
    """Convert every video in INPUT_DIR (takes all of `vidtoon convert`'s options).

    Videos are found by their content, not only their extension. Outputs mirror the folder structure
    under the output folder. The batch is resumable: outputs that exist are skipped (an output only
    appears once complete, so an interrupted file is redone). A file that fails is reported and the
    others go on; the exit status is 0 only when every file succeeded.

    \b
    Examples:
      vidtoon batch holiday/ -r                     # writes holiday_toon/...
      vidtoon batch clips/ -o toon/ --include '*.mov' --max-side 1280 --report report.json
    """
    from rich.console import Console

    from vidtoon.batch import find_videos
    from vidtoon.errors import VidtoonError
    from vidtoon.options import ConvertOptions

    convert_opts["audio"] = not convert_opts.pop("no_audio")
    try:
        ConvertOptions(**convert_opts, overwrite=overwrite).validate()
    except VidtoonError as exc:
        raise click.UsageError(str(exc)) from None

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not input_dir.is_dir():
        raise VidtoonError(f"{input_dir} is not a folder (use vidtoon convert for one file)")
    suffix = "_compare" if convert_opts["compare"] else "_toon"
    out_dir = output_dir or input_dir.resolve().with_name(input_dir.resolve().name + suffix)
    with console.status("looking for videos...") as status:
        items, ignored = find_videos(
            input_dir, out_dir, recursive=recursive, include=include, exclude=exclude,
            codec=convert_opts["codec"], audio=convert_opts["audio"],
            on_probe=lambda rel: status.update(f"looking for videos: {rel}"))
    if not items:
        hint = "" if recursive else " (use --recursive for subfolders)"
        raise VidtoonError(f"no videos found in {input_dir}{hint}")
    if ignored:
        names = ", ".join(f"{p} ({why})" for p, why in ignored[:5]) + (" ..." if len(ignored) > 5 else "")
        console.print(f"[dim]ignored {len(ignored)} file(s) that are not videos: {names}[/dim]", markup=True)

    _run(items, out_dir, input_dir, convert_opts, jobs, overwrite, quiet, report, console)


def _run(items: list, out_dir: Path, input_dir: Path, convert_opts: dict[str, Any], jobs: int, overwrite: bool,
         quiet: bool, report: Path | None, console: Any) -> None:
    from rich.markup import escape

    from vidtoon.engines import create_engine
    from vidtoon import __version__
    from vidtoon.batch import run_batch, summarize, write_report
    from vidtoon.errors import VidtoonError
    from vidtoon.models import load_generator

    todo = [it for it in items if overwrite or not it.output.exists()]
    jobs = max(1, min(jobs, len(todo)))
    model, engine, device = convert_opts.pop("model"), convert_opts.pop("engine"), convert_opts.pop("device")
    strength, outline = convert_opts.pop("strength"), convert_opts.pop("outline")
    engines: list[Any] = []
    if todo and any(not it.problem for it in todo):
        generator = load_generator(model, "cpu", strength, outline)  # once for the whole batch
        engines = [create_engine(engine, generator, device=device) for _ in range(jobs)]
        if jobs > 1 and all(e.device == "cpu" for e in engines):
            import torch

            # share the cores between the jobs instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    else:
        generator = None
        engines = [None]

    started = time.time()
    progress, overall, per_file = _progress(console, quiet, items, todo)
    done_frames: dict[Path, int] = {}
    results: list = []
    results_so_far: list = []  # in completion order, for the report of an interrupted batch
    try:
        with progress:
            def on_start(item: Any) -> None:
                per_file[item.input] = progress.add_task(escape(str(item.rel)), total=item.frames)

            def on_progress(item: Any, done: int, total: int | None) -> None:
                task = per_file.get(item.input)
                if task is not None:
                    progress.update(task, completed=done, total=max(total or 0, done) or None)
                delta = done - done_frames.get(item.input, 0)
                done_frames[item.input] = done
                progress.update(overall, advance=delta)

            def on_done(item: Any, result: Any) -> None:
                task = per_file.pop(item.input, None)
                if task is not None:
                    progress.remove_task(task)
                if item in todo and result.status == "failed" and item.frames:
                    # count the frames a failed file will never deliver, so the ETA stays honest
                    progress.update(overall, advance=max(0, item.frames - done_frames.get(item.input, 0)))
                results_so_far.append(result)
                progress.update(overall, description=f"all files ({len(results_so_far)}/{len(items)})")

            results = run_batch(items, convert_opts, engines=engines, generator=generator, overwrite=overwrite,
                                on_start=on_start, on_progress=on_progress, on_done=on_done)
    except KeyboardInterrupt:
        if report is not None:
            write_report(report, results_so_far, _meta(input_dir, out_dir, model, engine, device, convert_opts,
                                                       started, __version__, interrupted=True))
        raise
    finally:
        for e in engines:
            if e is not None:
                e.close()

    _table(console, results)
    if report is not None:
        write_report(report, results, _meta(input_dir, out_dir, model, engine, device, convert_opts, started,
                                            __version__))
        console.print(f"report: {escape(str(report))}")
    counts = summarize(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(r.input for r in failed)
        raise VidtoonError(f"{len(failed)} of {len(results)} files failed: {names}")
    console.print(f"{counts['done']} converted, {counts['skipped']} already done, into {escape(str(out_dir))}")


def _progress(console: Any, quiet: bool, items: list, todo: list) -> tuple[Any, Any, dict]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("frames"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=console, transient=True, disable=quiet)
    total = sum(it.frames or 0 for it in todo if not it.problem) or None
    overall = progress.add_task(f"all files (0/{len(items)})", total=total)
    return progress, overall, {}


def _table(console: Any, results: list) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="vidtoon batch")
    table.add_column("file")
    table.add_column("frames", justify="right")
    table.add_column("fps", justify="right")
    table.add_column("time", justify="right")
    table.add_column("status")
    style = {"done": "green", "skipped": "dim", "failed": "red"}
    for r in results:
        status = {"done": "done", "skipped": "skipped (output exists)"}.get(r.status, f"failed: {r.error}")
        if r.status == "done" and r.warnings:
            status += f" ({len(r.warnings)} warning{'s' if len(r.warnings) > 1 else ''}: {r.warnings[0]})"
        table.add_row(escape(r.input), str(r.frames or ""), f"{r.fps:.1f}" if r.fps else "",
                      f"{r.seconds:.1f} s" if r.seconds else "", f"[{style[r.status]}]{escape(status)}[/]")
    Console(soft_wrap=False).print(table)


def _meta(input_dir: Path, out_dir: Path, model: str, engine: str, device: str, convert_opts: dict[str, Any],
          started: float, version: str, interrupted: bool = False) -> dict[str, Any]:
    return {
        "vidtoon": version,
        "input_dir": str(input_dir.resolve()),
        "output_dir": str(out_dir.resolve()),
        "model": model, "engine": engine, "device": device,
        "options": convert_opts,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
        "interrupted": interrupted,
    }
