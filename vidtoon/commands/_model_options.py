"""Options shared with ``vidtoon convert``, taken from its command so they are defined in one place.

``image``, ``live`` and ``batch`` reuse convert's click parameters (``--model``, ``--engine``, ...) rather
than re-declaring them, so a change to an option's help, default or type reaches every command.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: the options that pick the generator and where it runs
MODEL_OPTIONS = ("model", "strength", "outline", "faces", "engine", "device")


def convert_params(names: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> list[click.Parameter]:
    """Copies of ``vidtoon convert``'s options named ``names`` (all of its options when None), minus ``skip``.

    The input argument, ``--output``, ``--quiet`` and ``--debug`` are never included.
    """
    from vidtoon.commands.convert import convert_cmd

    own = {"input", "output", "quiet", "debug"}
    params = {p.name: p for p in convert_cmd.params if isinstance(p, click.Option) and p.name not in own}
    wanted = list(params) if names is None else list(names)
    missing = [n for n in wanted if n not in params]
    if missing:  # a renamed convert option must fail loudly here, not silently drop an option
        raise RuntimeError(f"vidtoon convert has no option(s) {missing}")
    return [copy.copy(params[n]) for n in wanted if n not in skip]


def with_convert_params(names: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator: add convert's options (see :func:`convert_params`) to a click command function."""

    def deco(f: F) -> F:
        # click reads decorator-added params in reverse order
        existing = getattr(f, "__click_params__", [])
        f.__click_params__ = existing + list(reversed(convert_params(names, skip)))  # type: ignore[attr-defined]
        return f

    return deco


model_options = with_convert_params(MODEL_OPTIONS)


@contextmanager
def engine_from_options(model: str, engine: str, device: str, strength: float = 1.0,
                        outline: float = 1.0, quiet: bool = False, faces: bool = False,
                        face_every: int | None = None) -> Iterator[Any]:
    """Load ``model`` once (with its look controls) and yield an engine running it (closed afterwards);
    ``quiet``: nothing printed while the engine starts (an ONNX export). ``faces``: the engine also draws
    faces back (vidtoon.faces.FaceDrawing): on each picture apart (stills), or with ``face_every=N`` on a
    stream of frames, detecting them on every N-th."""
    from vidtoon.engines import create_engine
    from vidtoon.faces import FaceDrawing
    from vidtoon.models import load_generator

    generator = load_generator(model, "cpu", strength, outline)
    eng = create_engine(engine, generator, device=device, quiet=quiet)
    try:
        yield FaceDrawing(eng, face_every, strength=strength) if faces else eng
    finally:
        eng.close()
