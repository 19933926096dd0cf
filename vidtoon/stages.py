"""Threads joined by bounded queues, any of which can stop them all: the plumbing of :mod:`vidtoon.pipeline`.

Each stage runs its body in a thread; a failure is kept for the main thread to re-raise and sets the shared
stop flag, which every blocking :func:`put` / :func:`get` checks, so no stage waits forever on a dead one.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty
END = object()  # end-of-stream marker passed down the queues


class Stopped(Exception):
    """Raised inside a stage when another stage failed or the user interrupted."""


def put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """``q.put(item)``, giving up with :class:`Stopped` once ``stop`` is set."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=POLL)
            return
        except queue.Full:
            continue


def get(q: queue.Queue, stop: threading.Event) -> Any:
    """``q.get()``, giving up with :class:`Stopped` once ``stop`` is set."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return q.get(timeout=POLL)
        except queue.Empty:
            continue


class Stage(threading.Thread):
    """A pipeline thread that records its exception and raises the shared stop flag on failure."""

    def __init__(self, name: str, body: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.body = body
        self.stop = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except Stopped:
            pass
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.error = exc
            self.stop.set()


def wait_all(stages: list[Stage], stop: threading.Event) -> None:
    """Wait for every stage to end; :class:`Stopped` as soon as one fails (or the flag is set otherwise)."""
    for s in stages:
        while s.is_alive():
            s.join(POLL)
            if stop.is_set():
                raise Stopped
