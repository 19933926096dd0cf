"""The ``vidtoon`` command line: parses options and calls library functions, nothing more.

Subcommands live one per module in ``vidtoon/commands/`` and are imported only when invoked, so
``vidtoon --version`` and ``vidtoon --help`` never import torch or PyAV.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from vidtoon import __version__
from vidtoon.errors import VidtoonError, describe

#: subcommand name -> "module:attribute" of its click command (add a line here for a new command)
COMMANDS: dict[str, str] = {
    "image": "vidtoon.commands.image:image_cmd",
    "live": "vidtoon.commands.live:live_cmd",
    "batch": "vidtoon.commands.batch:batch_cmd",
    "convert": "vidtoon.commands.convert:convert_cmd",
    "flicker": "vidtoon.commands.flicker:flicker_cmd",
    "info": "vidtoon.commands.info:info_cmd",
    "export": "vidtoon.commands.export:export_cmd",
    "train": "vidtoon.commands.train:train_cmd",
    "export-model": "vidtoon.commands.export_model:export_model_cmd",
    "train-edges": "vidtoon.commands.train_edges:train_edges_cmd",
}

# one-line help shown by `vidtoon --help` without importing the command modules
SHORT_HELP: dict[str, str] = {
    "image": "Stylize still images (JPEG, PNG, WebP) or folders of them.",
    "live": "Live cartoon preview of the webcam (or any video source), with recording.",
    "batch": "Convert every video in a folder (resumable, one bad file never stops the rest).",
    "convert": "Turn a video into a cartoon video (audio, timing and metadata kept).",
    "flicker": "Measure how much a converted video flickers (warping error), next to its input.",
    "info": "Show versions, available engines and devices, shipped models.",
    "export": "Export a generator to ONNX or a TensorRT engine.",
    "train": "Train a CartoonGAN style on photos and cartoon images.",
    "export-model": "Export a training run as a small model file for --model.",
    "train-edges": "Distill the HED edge detector into the toon model's small edge network.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vidtoon")
# accepted before the command too (`vidtoon --debug convert ...`); main() reads it from the whole command line
@click.option("--debug", is_flag=True, expose_value=False, help="Show tracebacks (also accepted after the command).")
def cli() -> None:
    """vidtoon: turn videos into cartoons (CartoonGAN), keeping sound, timing and metadata."""


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv


def main(argv: list[str] | None = None) -> Any:
    """Entry point: runs the CLI, turning errors into one ``Error: ...`` line and exit codes.

    Exit codes: 0 success, 1 error (user input, I/O, anything unexpected), 130 interrupted (Ctrl-C).
    ``--debug`` anywhere on the command line shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    try:
        return cli.main(args=argv, prog_name="vidtoon", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__cause__, EOFError):  # click turns an EOFError (a file that ends too soon) into Abort
            if debug:
                raise exc.__cause__ from None
            click.echo(f"Error: {describe(exc.__cause__)} (run with --debug for details)", err=True)
            sys.exit(1)
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except VidtoonError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # anything unexpected: one plain line (no class name), the traceback with --debug
        if debug:
            raise
        click.echo(f"Error: {describe(exc)} (run with --debug for details)", err=True)
        sys.exit(1)
