"""Batch conversion on a Ray cluster: ``vidtoon batch --ray ADDRESS``.

The driver (this process) finds the files, skips finished ones and names outputs exactly as the local batch
does (:mod:`vidtoon.batch`). It then starts one Ray actor per inference slot (:class:`ConvertWorker`, which
loads the model and its engine once) and hands each actor one file at a time, waiting with ``ray.wait``, so
a slow file never holds the others back. An actor that dies (killed, out of memory, a crash in a decoder)
loses only its file: the file goes back in the queue for another actor (a new one replaces the dead one)
and is reported failed after ``max_attempts`` deaths. A Python error while converting is that file's
failure, never a retry. Outputs stay atomic: each attempt writes its own uniquely named temporary file and
renames it into place only when complete.

Ray is imported only here, and only when a batch runs on it (``pip install 'vidtoon[ray]'``).
"""
from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vidtoon.batch import BatchItem, Cancelled, FileResult, convert_item, precheck, worker_name
from vidtoon.errors import VidtoonError, describe, first_line

#: how often the driver asks a busy actor how far its file is (seconds)
_POLL_S = 0.5
#: how long Ctrl-C waits for the running conversions to remove their temporary files (seconds)
_CANCEL_WAIT_S = 20.0


@dataclass(frozen=True)
class RayOptions:
    """Where and how a batch runs on Ray."""

    address: str  # as ray.init takes it: "auto" (this machine's cluster, or RAY_ADDRESS), "host:port", "local"
    workers: int | None = None  # actors (None: one per CPU of the cluster, or per ``gpus`` of its GPUs)
    gpus: float | None = None  # GPUs per actor, fractions share one (None: 1 when the cluster has GPUs)
    max_attempts: int = 3  # conversions started for a file whose workers keep dying, before it is failed
    verbose: bool = False  # Ray's own log lines (warnings about the cluster) on the terminal: with --debug

    def validate(self) -> RayOptions:
        if not self.address.strip():
            raise VidtoonError("--ray needs an address: auto, HOST:PORT or local")
        if self.workers is not None and self.workers < 1:
            raise VidtoonError(f"--ray-workers must be at least 1, not {self.workers}")
        if self.gpus is not None and self.gpus < 0:
            raise VidtoonError(f"--ray-gpus must not be negative, not {self.gpus}")
        if self.max_attempts < 1:
            raise VidtoonError("max_attempts must be at least 1")
        return self


class ConvertWorker:
    """The work of one Ray actor: the model and its engine, loaded once; one file per :meth:`convert` call.

    Runs with a few threads (``max_concurrency``) so that :meth:`progress` and :meth:`cancel` answer while
    a conversion runs. A load failure is kept and reported by :meth:`ready` (the driver stops the batch).
    """

    def __init__(self, model: str, generator_options: dict[str, Any], engine: str, device: str,
                 convert_options: dict[str, Any]) -> None:
        self.where = worker_name()
        self.options = convert_options
        self.error = ""
        self.engine: Any = None
        self._cancel = threading.Event()
        self._progress: tuple[int, int | None] = (0, None)
        try:
            from vidtoon.engines import create_engine
            from vidtoon.models import load_generator

            self.engine = create_engine(engine, load_generator(model, "cpu", **generator_options), device=device)
        except VidtoonError as exc:
            self.error = str(exc)
        except Exception as exc:  # reported to the driver, which stops the batch with it (no Python class name)
            self.error = describe(exc)

    def ready(self) -> tuple[str, str]:
        """(``host:pid``, why the model could not be loaded or "")."""
        return self.where, self.error

    def convert(self, item: BatchItem, overwrite: bool, attempt: int) -> FileResult:
        """Convert one file; failures come back as a ``failed`` result."""
        self._cancel.clear()
        self._progress = (0, item.frames)

        def progress(done: int, total: int | None) -> None:
            if self._cancel.is_set():
                raise Cancelled()
            self._progress = (done, total)

        try:
            return convert_item(item, self.engine, self.options, overwrite=overwrite, progress=progress,
                                attempts=attempt)
        except Cancelled:
            return FileResult(str(item.rel), str(item.output), "failed", error="interrupted", worker=self.where,
                              attempts=attempt)

    def progress(self) -> tuple[int, int | None]:
        """(frames done, frames expected) of the file being converted."""
        return self._progress

    def cancel(self) -> None:
        """Stop the running conversion (its temporary file is removed)."""
        self._cancel.set()


def import_ray() -> Any:
    """The ``ray`` module, or a VidtoonError naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise VidtoonError(f"--ray needs Ray ({exc}; pip install 'vidtoon[ray]')") from None
    return ray


@contextmanager
def connected(address: str, verbose: bool = False) -> Iterator[Any]:
    """Connect to the Ray cluster at ``address`` (``local``: start one here) for the ``with`` block.

    Ray's own log lines (e.g. its warning that token authentication is on or off) are kept off the terminal
    unless ``verbose`` (``--debug``): vidtoon says what matters in its own words.
    """
    import logging

    ray = import_ray()
    start_here = address == "local"
    _check_reachable(address)
    level = logging.INFO if verbose else logging.ERROR
    logging.getLogger("ray").setLevel(level)  # also the lines Ray logs before ray.init sets its level
    try:
        # a cluster started here needs no dashboard; workers' output would garble the progress display
        ray.init(address=address, log_to_driver=False, logging_level=level,
                 **({"include_dashboard": False} if start_here else {}))
    except ConnectionError as exc:
        raise VidtoonError(f"cannot connect to a Ray cluster at {address!r}: {exc} (start one with "
                           "`ray start --head`, or use --ray local to start one on this machine)") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail at once when nothing listens at a ``host:port`` address (ray.init would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise VidtoonError(f"no Ray cluster answers at {address} ({exc.strerror or exc}; start one there with "
                           "`ray start --head`, or use --ray local to start one on this machine)") from None


def plan_workers(resources: dict[str, float], options: RayOptions, device: str, files: int) -> tuple[int, float]:
    """(actors to start, GPUs per actor) for a cluster with ``resources`` and ``files`` to convert."""
    cpus, gpus_total = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    gpus = options.gpus if options.gpus is not None else (1.0 if gpus_total and device != "cpu" else 0.0)
    if gpus > gpus_total:
        raise VidtoonError(f"--ray-gpus {gpus:g} asks for more GPUs per worker than the cluster has "
                           f"({gpus_total:g})")
    if options.workers is not None:
        workers = options.workers
    elif gpus:
        workers = int(gpus_total / gpus + 1e-9)
    else:
        workers = int(cpus)
    return max(1, min(workers, files)), gpus


@dataclass
class _Slot:
    """One actor as the driver sees it."""

    actor: Any
    where: str = ""  # host:pid once ready
    index: int | None = None  # the item it converts
    task: Any = None  # ObjectRef of that conversion
    poll: Any = None  # ObjectRef of an outstanding progress() call
    polled: float = 0.0


@dataclass
class _State:
    """The driver's bookkeeping: the queue, attempts and results."""

    queue: deque[int]
    attempts: dict[int, int] = field(default_factory=dict)
    results: dict[int, FileResult] = field(default_factory=dict)


def run_batch_ray(items: Sequence[BatchItem], convert_options: dict[str, Any], *, model: str, engine: str,
                  device: str, ray_options: RayOptions, generator_options: dict[str, Any] | None = None,
                  overwrite: bool = False,
                  worker_class: type[ConvertWorker] = ConvertWorker,
                  on_start: Callable[[BatchItem], None] | None = None,
                  on_progress: Callable[[BatchItem, int, int | None], None] | None = None,
                  on_done: Callable[[BatchItem, FileResult], None] | None = None,
                  on_message: Callable[[str], None] | None = None) -> list[FileResult]:
    """Convert ``items`` on the Ray cluster of ``ray_options``; returns a result per item, as :func:`run_batch`.

    ``model`` (with ``generator_options``: keyword arguments of :func:`vidtoon.models.load_generator`),
    ``engine`` and ``device`` are loaded by every actor; ``convert_options`` are the other keyword
    arguments of :func:`vidtoon.pipeline.convert`. Paths must be valid on every node (shared storage).
    ``on_start`` is called again when a file is retried; ``on_message`` gets one-line news (workers
    starting, dying). Ctrl-C cancels the running conversions and re-raises KeyboardInterrupt.
    """
    ray_options.validate()
    model_path = Path(model).expanduser()
    if model_path.is_file():  # every node must find the model (and the files) under the same name
        model = str(model_path.resolve())
    state = _State(deque())
    for i, item in enumerate(items):
        result = precheck(item, overwrite)
        if result is None:
            state.queue.append(i)
        else:
            state.results[i] = result
            if on_done is not None:
                on_done(item, result)
    if state.queue:
        say = on_message or (lambda _: None)
        with connected(ray_options.address, ray_options.verbose) as ray:
            resources = ray.cluster_resources()
            n, gpus = plan_workers(resources, ray_options, device, len(state.queue))
            say(f"Ray cluster: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; starting {n} "
                f"worker{'s' * (n > 1)} (1 CPU{f', {gpus:g} GPU' if gpus else ''} each)")
            actor_class = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=0, max_task_retries=0,
                                     max_concurrency=3)(worker_class)
            actor_args = (model, generator_options or {}, engine, device, convert_options)
            driver = _Driver(ray, actor_class, actor_args, items, state,
                             ray_options, overwrite, say)
            driver.on_start, driver.on_progress, driver.on_done = on_start, on_progress, on_done
            driver.run(n)
    return [state.results[i] for i in range(len(items))]


class _Driver:
    """Hands files to actors one at a time and reacts to whatever ``ray.wait`` returns first."""

    on_start: Callable[[BatchItem], None] | None = None
    on_progress: Callable[[BatchItem, int, int | None], None] | None = None
    on_done: Callable[[BatchItem, FileResult], None] | None = None

    def __init__(self, ray: Any, actor_class: Any, actor_args: tuple, items: Sequence[BatchItem], state: _State,
                 options: RayOptions, overwrite: bool, say: Callable[[str], None]) -> None:
        self.ray, self.actor_class, self.actor_args = ray, actor_class, actor_args
        self.items, self.state, self.options, self.overwrite, self.say = items, state, options, overwrite, say
        self.slots: list[_Slot] = []  # actors that loaded the model
        self.starting: dict[Any, _Slot] = {}  # ready() ObjectRef -> its actor, until it answers
        self.load_deaths_allowed = 0
        ex = ray.exceptions
        # what a worker process dying looks like from here (a Python error in it is a RayTaskError)
        self.deaths = (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.OutOfMemoryError,
                       ex.NodeDiedError)

    def run(self, workers: int) -> None:
        self.load_deaths_allowed = 3 * workers
        for _ in range(workers):
            self._start_actor()
        try:
            while self.state.queue or any(s.task is not None for s in self.slots):
                self._dispatch()
                self._wait_and_handle()
        except KeyboardInterrupt:
            self._cancel_running()
            raise
        finally:
            for slot in [*self.slots, *self.starting.values()]:
                self.ray.kill(slot.actor)

    def _start_actor(self) -> None:
        actor = self.actor_class.remote(*self.actor_args)
        self.starting[actor.ready.remote()] = _Slot(actor)

    def _dispatch(self) -> None:
        for slot in self.slots:
            if slot.task is None and self.state.queue:
                index = self.state.queue.popleft()
                attempt = self.state.attempts[index] = self.state.attempts.get(index, 0) + 1
                item = self.items[index]
                if self.on_start is not None:
                    self.on_start(item)
                slot.index, slot.polled = index, time.monotonic()
                remote_item = replace(item, input=item.input.resolve(), output=item.output.resolve())
                slot.task = slot.actor.convert.remote(remote_item, self.overwrite, attempt)

    def _wait_and_handle(self) -> None:
        kinds: dict[Any, tuple[str, _Slot]] = {ref: ("ready", slot) for ref, slot in self.starting.items()}
        kinds.update({s.task: ("result", s) for s in self.slots if s.task is not None})
        kinds.update({s.poll: ("poll", s) for s in self.slots if s.poll is not None})
        if not kinds:  # cannot happen while files are queued (a dead worker is replaced): do not spin
            raise VidtoonError("no Ray worker is left to convert the remaining files")
        ready, _ = self.ray.wait(list(kinds), num_returns=1, timeout=_POLL_S)
        for ref in ready:
            kind, slot = kinds[ref]
            if kind == "ready":
                del self.starting[ref]
                self._on_ready(slot, ref)
            elif kind == "result":
                self._on_result(slot, ref)
            else:
                self._on_poll(slot, ref)
        now = time.monotonic()
        for slot in self.slots:
            if slot.task is not None and slot.poll is None and now - slot.polled >= _POLL_S:
                slot.poll, slot.polled = slot.actor.progress.remote(), now

    def _on_ready(self, slot: _Slot, ref: Any) -> None:
        try:
            slot.where, error = self.ray.get(ref)
        except self.deaths as exc:
            self.load_deaths_allowed -= 1
            if self.load_deaths_allowed < 0:
                raise VidtoonError(f"Ray workers keep dying while loading the model (last: {_describe(exc)})") from None
            if self.state.queue:
                self.say(f"a Ray worker died while loading the model ({_describe(exc)}); starting another")
                self._start_actor()
            return
        if error:
            raise VidtoonError(f"Ray worker {slot.where} cannot load the model: {error}")
        self.slots.append(slot)

    def _on_result(self, slot: _Slot, ref: Any) -> None:
        index, slot.task, slot.poll = slot.index, None, None
        item = self.items[index]
        try:
            result = self.ray.get(ref)
        except self.deaths as exc:
            self._on_death(slot, index, exc)
            return
        except self.ray.exceptions.RayTaskError as exc:  # a Python error that escaped: the file's failure
            result = FileResult(str(item.rel), str(item.output), "failed", error=_describe(exc),
                                worker=slot.where, attempts=self.state.attempts[index])
        self._finish(index, replace(result, output=str(item.output)))

    def _on_death(self, slot: _Slot, index: int, exc: BaseException) -> None:
        item, attempts = self.items[index], self.state.attempts[index]
        self.slots.remove(slot)
        self.ray.kill(slot.actor)  # in case it only stalled: it must not go on converting
        if attempts < self.options.max_attempts:
            self.say(f"Ray worker {slot.where} died converting {item.rel} (attempt {attempts} of "
                     f"{self.options.max_attempts}): it goes to another worker")
            self.state.queue.appendleft(index)
        else:
            self._finish(index, FileResult(
                str(item.rel), str(item.output), "failed", worker=slot.where, attempts=attempts,
                error=f"its Ray worker died {attempts} times (last: {_describe(exc)})"))
        if self.state.queue:
            self._start_actor()

    def _on_poll(self, slot: _Slot, ref: Any) -> None:
        slot.poll = None
        try:
            done, total = self.ray.get(ref)
        except self.ray.exceptions.RayError:
            return  # a dead actor shows up in its conversion's result
        if slot.task is not None and self.on_progress is not None:
            self.on_progress(self.items[slot.index], done, total)

    def _finish(self, index: int, result: FileResult) -> None:
        self.state.results[index] = result
        if result.status == "done" and self.on_progress is not None:  # the last poll may have missed the end
            self.on_progress(self.items[index], result.frames, result.frames)
        if self.on_done is not None:
            self.on_done(self.items[index], result)

    def _cancel_running(self) -> None:
        running = [s.task for s in self.slots if s.task is not None]
        for slot in self.slots:
            if slot.task is not None:
                slot.actor.cancel.remote()
        if running:  # let each conversion remove its temporary file before the actors go
            self.ray.wait(running, num_returns=len(running), timeout=_CANCEL_WAIT_S)


def _describe(exc: BaseException) -> str:
    """One line about a Ray error: the Python exception inside it, or the first line of Ray's message."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return describe(cause)  # in plain words, without the Python class name
    # Ray's own message: a headline, tab-indented fields (actor id, pid, ...), then the reason
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("\t")]
    return first_line(Exception(" ".join(lines))) if lines else "the Ray worker stopped without a message"
