"""The one error type for what the user did wrong or what the input lacks, and plain words for the rest."""
from __future__ import annotations

import re

#: "ValueError: " at the start of a message (some libraries put a class name into their messages)
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception):\s*)+")


class VidtoonError(Exception):
    """A user-facing error: the CLI prints ``Error: <message>`` and exits 1 (traceback only with --debug)."""


def describe(exc: BaseException) -> str:
    """One plain sentence for an exception that is not a VidtoonError, without its Python class name.

    FFmpeg errors (PyAV's ``av.FFmpegError``) and operating-system errors carry a readable reason
    (``strerror``) and often a file name; text that could not be decoded is named as such; anything else
    is an internal error, told by its message. The class name is left for ``--debug``. Imports nothing,
    so that the CLI can use it before PyAV or torch are loaded.
    """
    if isinstance(exc, VidtoonError):
        return str(exc)
    strerror = getattr(exc, "strerror", None)
    filename = getattr(exc, "filename", None)
    if isinstance(exc, UnicodeError):
        reason = getattr(exc, "reason", "") or "invalid characters"
        return f"a file holds text that is not valid UTF-8 ({reason})"
    if isinstance(exc, MemoryError):
        return "out of memory (try --max-side or a smaller --batch-size)"
    if strerror:  # OSError and av.FFmpegError
        source = "FFmpeg: " if type(exc).__module__.split(".")[0] == "av" else ""
        where = f" ({filename})" if filename and not str(filename).endswith("()") else ""  # not "avcodec_open2()"
        return f"{source}{strerror}{where}"
    return f"unexpected internal error: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without a leading class name (``"ValueError: "``)."""
    lines = str(exc).strip().splitlines()
    return (_CLASS_PREFIX.sub("", lines[0]) if lines else "") or "no details"
