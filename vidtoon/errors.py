"""The one error type for what the user did wrong or what the input lacks."""
from __future__ import annotations


class VidtoonError(Exception):
    """A user-facing error: the CLI prints ``Error: <message>`` and exits 1 (traceback only with --debug)."""
