"""``vidtoon batch``: convert every video in a folder, resumably."""
from __future__ import annotations

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
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Convert on a Ray cluster (pip install 'vidtoon[ray]'): auto (the cluster this machine "
                   "belongs to, or RAY_ADDRESS), HOST:PORT, or local (start one here). Inputs, outputs and "
                   "the model must be on storage every node sees, under the same paths.")
@click.option("--ray-workers", type=click.IntRange(1), default=None, metavar="N",
              help="Ray workers, each loading the model once and converting one file at a time "
                   "(default: one per CPU of the cluster, or per --ray-gpus of its GPUs).")
@click.option("--ray-gpus", type=click.FloatRange(0), default=None, metavar="F",
              help="GPUs per Ray worker; fractions share a GPU (default: 1 when the cluster has GPUs, else 0).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the per-file results (status, frames, fps, time, errors) to this JSON file.")
@with_convert_params(skip=("overwrite",))
@click.option("--overwrite", is_flag=True,
              help="Convert again files whose output exists (default: skip them, so a re-run resumes).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (the final table is still printed).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def batch_cmd(input_dir: Path, output_dir: Path | None, recursive: bool, include: tuple[str, ...],
              exclude: tuple[str, ...], jobs: int, ray_address: str | None, ray_workers: int | None,
              ray_gpus: float | None, report: Path | None, overwrite: bool, quiet: bool, debug: bool,
              **convert_opts: Any) -> None:
    """Convert every video in INPUT_DIR (takes all of `vidtoon convert`'s options).

    Videos are found by their content, not only their extension. Outputs mirror the folder structure
    under the output folder. The batch is resumable: outputs that exist are skipped (an output only
    appears once complete, so an interrupted file is redone). A file that fails is reported and the
    others go on; the exit status is 0 only when every file succeeded.

    \b
    Examples:
      vidtoon batch holiday/ -r                     # writes holiday_toon/...
      vidtoon batch clips/ -o toon/ --include '*.mov' --max-side 1280 --report report.json
      vidtoon batch /shared/clips -o /shared/toon --ray auto   # on the Ray cluster of this machine
    """
    from rich.console import Console
    from rich.markup import escape

    from vidtoon.batch import find_videos
    from vidtoon.errors import VidtoonError
    from vidtoon.options import ConvertOptions

    ray = None
    try:  # the options are built once, here, and handed to the library as they are
        audio = not convert_opts.pop("no_audio")
        options = ConvertOptions(**convert_opts, audio=audio, overwrite=overwrite).validate()
        if ray_address is not None:
            from vidtoon.batch_ray import RayOptions

            if jobs != 1:
                raise VidtoonError("--jobs is for a batch on this machine: with --ray, use --ray-workers")
            ray = RayOptions(ray_address, ray_workers, ray_gpus, verbose=debug).validate()
        elif ray_workers is not None or ray_gpus is not None:
            raise VidtoonError("--ray-workers and --ray-gpus need --ray ADDRESS")
    except VidtoonError as exc:
        raise click.UsageError(str(exc)) from None

    if ray is not None:
        from vidtoon.batch_ray import import_ray

        import_ray()  # a missing extra is said before the folder is searched
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not input_dir.is_dir():
        raise VidtoonError(f"{input_dir} is not a folder (use vidtoon convert for one file)")
    suffix = "_compare" if options.compare else "_toon"
    out_dir = output_dir or input_dir.resolve().with_name(input_dir.resolve().name + suffix)
    with console.status("looking for videos...") as status:
        items, ignored = find_videos(
            input_dir, out_dir, recursive=recursive, include=include, exclude=exclude,
            codec=options.codec, audio=options.audio,
            on_probe=lambda rel: status.update(f"looking for videos: {rel}"))
    if not items:
        hints = [] if recursive else ["use --recursive for subfolders"]
        outputs = sum("vidtoon output" in why for _, why in ignored)
        if outputs:
            hints.append(f"{outputs} file(s) named like vidtoon outputs (*_toon, *_compare) skipped: --include them")
        raise VidtoonError(f"no videos found in {input_dir}" + (f" ({'; '.join(hints)})" if hints else ""))
    if ignored:
        names = ", ".join(f"{p} ({why})" for p, why in ignored[:5]) + (" ..." if len(ignored) > 5 else "")
        console.print(f"[dim]skipped {len(ignored)} file(s): {escape(names)}[/dim]", markup=True)

    _run(items, out_dir, input_dir, options, jobs, ray, quiet, report, console)


def _run(items: list, out_dir: Path, input_dir: Path, options: Any, jobs: int, ray: Any, quiet: bool,
         report: Path | None, console: Any) -> None:
    from rich.markup import escape

    from vidtoon.batch import Tally, convert_batch, report_meta, summarize, write_report
    from vidtoon.errors import VidtoonError

    started = time.time()
    tally = Tally(items, options.overwrite)
    progress, overall, per_file = _progress(console, quiet, len(items), tally.total)
    try:
        with progress:
            def on_start(item: Any) -> None:
                if item.input in per_file:  # a retry (its Ray worker died)
                    progress.remove_task(per_file.pop(item.input))
                progress.update(overall, advance=tally.started(item))
                per_file[item.input] = progress.add_task(escape(str(item.rel)), total=item.frames)

            def on_progress(item: Any, done: int, total: int | None) -> None:
                task = per_file.get(item.input)
                if task is not None:
                    progress.update(task, completed=done, total=max(total or 0, done) or None)
                progress.update(overall, advance=tally.progressed(item, done))

            def on_done(item: Any, result: Any) -> None:
                task = per_file.pop(item.input, None)
                if task is not None:
                    progress.remove_task(task)
                progress.update(overall, advance=tally.finished(item, result),
                                description=f"all files ({len(tally.results)}/{len(items)})")

            results = convert_batch(items, options, jobs=jobs, ray=ray, on_start=on_start, on_progress=on_progress,
                                    on_done=on_done, on_message=lambda text: console.print(escape(text)),
                                    quiet=quiet)
    except KeyboardInterrupt:
        if report is not None:
            write_report(report, tally.results, report_meta(input_dir, out_dir, options, ray, started, True))
        counts = summarize(tally.results)
        console.print(f"Stopped after {len(tally.results)} of {len(items)} files ({counts['done']} converted, "
                      f"{counts['skipped']} already done, {counts['failed']} failed); the same command again "
                      "resumes: finished outputs are kept and skipped, the interrupted file is redone")
        raise

    _table(console, results, show_worker=ray is not None)
    if report is not None:
        write_report(report, results, report_meta(input_dir, out_dir, options, ray, started))
        console.print(f"report: {escape(str(report))}")
    counts = summarize(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(r.input for r in failed)
        raise VidtoonError(f"{len(failed)} of {len(results)} files failed: {names}")
    console.print(f"{counts['done']} converted, {counts['skipped']} already done, into {escape(str(out_dir))}")


def _progress(console: Any, quiet: bool, files: int, total: int | None) -> tuple[Any, Any, dict]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("frames"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=console, transient=True, disable=quiet)
    overall = progress.add_task(f"all files (0/{files})", total=total)
    return progress, overall, {}


def _table(console: Any, results: list, show_worker: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="vidtoon batch")
    table.add_column("file")
    table.add_column("frames", justify="right")
    table.add_column("fps", justify="right")
    table.add_column("time", justify="right")
    if show_worker:
        table.add_column("worker")
    table.add_column("status")
    style = {"done": "green", "skipped": "dim", "failed": "red"}
    for r in results:
        status = {"done": "done", "skipped": "skipped (output exists)"}.get(r.status, f"failed: {r.error}")
        if r.status == "done" and r.warnings:
            status += f" ({len(r.warnings)} warning{'s' if len(r.warnings) > 1 else ''}: {r.warnings[0]})"
        worker = [escape(r.worker) + (f" (attempt {r.attempts})" if r.attempts > 1 else "")] if show_worker else []
        table.add_row(escape(r.input), str(r.frames or ""), f"{r.fps:.1f}" if r.fps else "",
                      f"{r.seconds:.1f} s" if r.seconds else "", *worker, f"[{style[r.status]}]{escape(status)}[/]")
    Console(soft_wrap=False).print(table)
