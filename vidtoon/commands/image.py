"""``vidtoon image``: stylize still images or folders of them."""
from __future__ import annotations

import click

from vidtoon.commands._model_options import MODEL_OPTIONS, engine_from_options, with_convert_params


@click.command("image")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", type=click.Path(path_type=str), default=None,
              help="Output file (one input) or folder (several inputs or folders; created if missing). "
                   "Default: next to each input as <name>_toon.<ext>.")
@click.option("-r", "--recursive", is_flag=True, help="Also take images in subfolders of folder inputs.")
@with_convert_params(MODEL_OPTIONS + ("max_side", "compare"))
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality of the outputs.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No line per image and no messages while the model starts.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def image_cmd(inputs: tuple[str, ...], output: str | None, recursive: bool, model: str, strength: float,
              outline: float, faces: bool, engine: str, device: str,
              max_side: int | None, compare: bool, quality: int, overwrite: bool, quiet: bool, debug: bool) -> None:
    """Stylize still images (JPEG, PNG, WebP) or every image in folders.

    EXIF orientation is applied (outputs are stored upright), transparency is kept, and each output is
    written as <name>_toon.<ext> (<name>_compare.<ext> with --compare) next to its input, or under -o.
    Files already named *_toon.* or *_compare.* are not picked up from folders.

    \b
    Examples:
      vidtoon image photo.jpg                 # writes photo_toon.jpg
      vidtoon image photo.jpg -o cartoon.png
      vidtoon image holiday/ -r -o holiday_toon/
      vidtoon image photo.jpg --compare       # before/after: photo_compare.jpg
    """
    from rich.console import Console
    from rich.markup import escape

    from vidtoon.errors import VidtoonError
    from vidtoon.images import ImageResult, plan_jobs, stylize_files

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    jobs = plan_jobs(inputs, output, recursive, compare)
    failures: list[tuple[str, str]] = []  # (input, error)

    def report(result: ImageResult) -> None:
        if result.ok and quiet:
            return
        if result.ok:
            w, h = result.size
            console.print(f"{escape(str(result.job.output))}  [dim]{w}x{h}, {result.seconds:.2f} s[/dim]")
            for warning in result.warnings:
                console.print(f"  [yellow]warning:[/yellow] {escape(warning)}")
        else:
            failures.append((str(result.job.input), result.error))
            if len(jobs) > 1:  # a single image's failure is the final Error: line
                console.print(f"[red]failed[/red] {escape(str(result.job.input))}: {escape(result.error)}")

    with engine_from_options(model, engine, device, strength, outline, quiet=quiet, faces=faces) as eng:
        stylize_files(eng, jobs, max_side=max_side, overwrite=overwrite, quality=quality, on_result=report,
                      compare=compare)
    if failures:
        if len(jobs) == 1:
            raise VidtoonError(failures[0][1])
        raise VidtoonError(f"{len(failures)} of {len(jobs)} images failed: " + "; ".join(f"{i}: {e}" for i, e in failures))
