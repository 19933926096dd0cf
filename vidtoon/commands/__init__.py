"""One module per ``vidtoon`` subcommand, each exposing a click command (registered in ``vidtoon.cli``)."""
