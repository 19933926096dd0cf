"""ONNX Runtime engine: the fastest way to run the generators on a CPU (CUDA provider when present).

The generator is exported once to ONNX (fp32 on the CPU, fp16 on CUDA) and cached in the user cache folder,
keyed by its weights hash (:func:`vidtoon.engines.onnx_export.cached_onnx`); the look controls are inputs of that
graph, fed on every run, so one export serves every ``--strength``/``--outline``. A path to an ``.onnx`` file made by
``vidtoon export`` works too.

Session tuning, for a video pipeline where decoding and encoding run beside inference:

- ``intra_op_num_threads`` defaults to all cores. Leaving a core to decode/encode was the first idea, but
  measured on the 2-core machine (720p, default model, whole ``convert``): 1 thread 8.3 fps, 2 threads
  10.9 fps. With spinning off, the decoder and encoder threads still get the cores between ops.
- Spinning is off: ORT's worker threads otherwise busy-wait between ops and between frames, burning the
  very cores the decoder and encoder threads are waiting for.
- Full graph optimizations (constant folding, conv+activation fusion, layout transforms) and one
  sequential inter-op thread: the generators are a single chain of convolutions, nothing runs in parallel.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort  # missing: engines/__init__.py answers "pip install 'vidtoon[onnx]'"

from vidtoon.engines.base import Engine, Pending, check_batch
from vidtoon.engines.cache import MULTIPLE_KEY
from vidtoon.errors import VidtoonError


#: frames up to this many pixels (1080p and a little more) run side by side on a CPU (see
#: OnnxRuntimeEngine.infer). Above it there is nothing to gain and memory to lose: measured on 2 cores, 20 4K
#: frames, whole convert: 1.0 fps either way, peak RSS 4.6 GiB side by side vs 3.1 GiB one after the other.
SIDE_BY_SIDE_MAX_PIXELS = 1920 * 1088


def default_threads(cpu_count: int | None = None, reserve: int = 0) -> int:
    """Intra-op threads for the CPU: every core but ``reserve``, at least one."""
    cpus = cpu_count if cpu_count is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(1, cpus - reserve)


def session_options(threads: int, *, spinning: bool = False) -> ort.SessionOptions:
    """ONNX Runtime session options tuned for running one generator beside a decoder and an encoder."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return opts


def check_cuda_provider(session: ort.InferenceSession) -> None:
    """Raise VidtoonError unless ``session`` really runs on the CUDA provider.

    ``get_available_providers()`` lists what the wheel was built with, not what loaded: when the CUDA
    provider cannot load (CUDA or cuDNN missing or of another version), ONNX Runtime logs it and runs the
    session on the CPU (microsoft/onnxruntime#23059). Only ``session.get_providers()`` tells.
    """
    if "CUDAExecutionProvider" not in session.get_providers():
        raise VidtoonError(
            "onnxruntime's CUDA provider did not load (its CUDA/cuDNN libraries are missing or of another "
            "version; see ONNX Runtime's CUDA requirements), so it would run on the CPU "
            "(use --engine torch --device cuda, or --device cpu)"
        )


def _probe_model() -> bytes:
    """A one-node ONNX model (Identity), to see whether a provider loads before a generator is exported."""
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", io[:1], io[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # what every supported onnxruntime reads (onnx writes its newest by default)
    return model.SerializeToString()


class OnnxRuntimeEngine(Engine):
    """Runs a generator with ONNX Runtime.

    ``generator``: an ``nn.Module`` (exported and cached on first use) or a path to an ONNX file with the
    contract of :mod:`vidtoon.engines.onnx_export`. ``device``: ``"cpu"`` or ``"cuda[:N]"`` (needs the CUDA
    provider, ``onnxruntime-gpu``). ``threads``: intra-op threads on the CPU (default
    :func:`default_threads`). ``fp16``: use the fp16 export (default: on CUDA only; it is slower on CPUs).
    """

    name = "onnxruntime"
    #: frames per ``infer`` call the pipeline should use. On a CPU: two per core (set in __init__), run side
    #: by side in single-threaded sessions, one frame per run (see :meth:`submit`); batching frames into one
    #: tensor costs speed (measured at 720p, fast generator, 2 cores: 85 ms/frame at batch 1, 96-100 at batch
    #: 4: the full-resolution tensors of a batch no longer fit the caches). Two per core rather than one: the
    #: pipeline's work between batches then comes half as often (whole 720p convert, 2 cores: 12.8 vs 11.9
    #: fps; 8 per batch: 13.0). On a GPU a batch fills the device.
    preferred_batch_size = 1

    def __init__(
        self,
        generator: Any,
        device: str = "cpu",
        threads: int | None = None,
        fp16: bool | None = None,
        log: Callable[[str], None] | None = None,
        quiet: bool = False,
    ) -> None:
        cuda = device.startswith("cuda")
        self.fp16 = cuda if fp16 is None else fp16
        if threads is None:
            threads = default_threads(reserve=0)
        self.threads = threads
        # the provider is checked first: an export takes a minute or more, for nothing if CUDA cannot run
        if cuda:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise VidtoonError("onnxruntime has no CUDA provider here (install onnxruntime-gpu, or use --engine torch)")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
            self.preferred_batch_size = 4
        else:
            providers = ["CPUExecutionProvider"]
            self.preferred_batch_size = 2 * self.threads if self.threads > 1 else 1
        self._providers = providers
        self._cuda = cuda
        #: the size multiple the generator pads to (8 for the fast one, 4 for the paper one; 8 when unknown)
        self.multiple = 8
        #: the look controls fed to a graph that takes them as inputs (a module's own values; a file: the defaults)
        self.controls: dict[str, np.ndarray] = {}
        if isinstance(generator, (str, Path)):
            self.onnx_path = Path(generator)
        else:
            pad = getattr(generator, "pad", None)
            self.multiple = getattr(pad, "multiple", 8)
            from vidtoon.engines.onnx_export import cached_onnx, control_feed, has_controls

            if cuda:
                check_cuda_provider(ort.InferenceSession(_probe_model(), session_options(1), providers=providers))
            # the export of a model's first run is announced (and a spinner runs) unless quiet
            announce = None if quiet else (log or (lambda msg: print(msg, file=sys.stderr, flush=True)))
            self.onnx_path = cached_onnx(generator, fp16=self.fp16, log=announce, aligned=True)
            if has_controls(generator):
                self.controls = control_feed(generator.strength, generator.outline)
        self.session = ort.InferenceSession(str(self.onnx_path), session_options(self.threads), providers=providers)
        if cuda:
            check_cuda_provider(self.session)
        aligned = self.session.get_modelmeta().custom_metadata_map.get(MULTIPLE_KEY)
        #: the graph wants height and width padded to ``multiple`` by this engine (an aligned export)
        self.aligned = aligned is not None
        if aligned is not None:
            self.multiple = int(aligned)
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        from vidtoon.engines.onnx_export import input_names

        self.controls = {k: v for k, v in self.controls.items() if k in input_names(self.session)}
        self._dims = list(inp.shape)
        self._dtype = np.float16 if "float16" in inp.type else np.float32
        #: sessions specialised to one input shape, thread count and worker slot, most recent last
        self._shaped: dict[tuple[tuple[int, ...], int, int], ort.InferenceSession] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # each pool worker's session slot
        self._workers = 0
        if not cuda and self.threads > 1:
            self.in_flight = 2
        self.device = device if cuda else f"cpu ({self.threads} thread{'s' if self.threads > 1 else ''})"

    def _session_for(self, shape: tuple[int, ...], threads: int | None = None, slot: int = 0) -> ort.InferenceSession:
        """A CPU session whose symbolic input dims are fixed to ``shape``, with ``threads`` intra-op threads
        (default: the engine's); ``slot`` tells apart the sessions of frames run side by side.

        With every shape known when the session is created, ONNX Runtime plans buffers and folds the shape
        arithmetic once instead of on every run (measured at 720p: 60.8 vs 63.5 ms per frame). A video has
        one frame size, so this is a few extra sessions (creation: a fraction of a second each); those of
        the last two shapes are kept. On CUDA the generic session is used.
        """
        if self._cuda:
            return self.session
        threads = threads or self.threads
        key = (shape, threads, slot)
        with self._lock:  # (pool workers ask for their sessions at the same time)
            session = self._shaped.pop(key, None)
            if session is None:
                opts = session_options(threads)
                for name, value in zip(self._dims, shape):
                    if isinstance(name, str):
                        opts.add_free_dimension_override_by_name(name, int(value))
                session = ort.InferenceSession(str(self.onnx_path), opts, providers=self._providers)
                while len(self._shaped) >= 2 * (self.threads + 1):
                    self._shaped.pop(next(iter(self._shaped)))
            self._shaped[key] = session
        return session

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Stylize a batch of uint8 RGB frames (N x H x W x 3).

        On a CPU with several threads and several frames, the frames run side by side, each in its own
        single-threaded session (a worker per core) instead of one after the other on all cores: most of
        the generator's ops are memory-bound elementwise passes that ONNX Runtime splits poorly across
        threads (measured: its second thread did 30 of the 110 ms of CPU per 720p frame), and a
        single-threaded session never waits at a barrier for a core that the decoder or encoder took.
        Measured at 720p on 2 cores: 16.0-16.5 frames/s side by side vs 14.8-15.1 on one 2-thread session.
        A single frame (live preview, images) and frames above :data:`SIDE_BY_SIDE_MAX_PIXELS` still get all
        threads, one frame after the other.
        """
        return self.submit(frames)()

    def submit(self, frames: np.ndarray) -> Pending:
        """Start stylizing a batch; returns the call that waits for it (see :meth:`Engine.submit`).

        Frames run side by side (see :meth:`infer`) from one queue: each worker takes the next frame as soon
        as it is free, and the pipeline submits the next batch before it collects this one
        (:attr:`in_flight` 2), so no worker waits for its partner to finish a batch, nor for the pipeline
        to hand over the next one. Otherwise the frames run at once, here. The workers read ``frames`` until
        the result is collected: the caller leaves it unchanged until then.
        """
        check_batch(frames)
        n, h, w, _ = frames.shape
        if self._cuda or self.threads == 1:
            out = self._run(frames, self._session_for)
            return lambda: out
        if n == 1 or h * w > SIDE_BY_SIDE_MAX_PIXELS:
            out = np.empty_like(frames)
            for i in range(n):
                out[i] = self._run(frames[i : i + 1], self._session_for)[0]
            return lambda: out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vidtoon-ort")
        jobs = [self._pool.submit(self._run, frames[i : i + 1], self._worker_session) for i in range(n)]

        def result() -> np.ndarray:
            out = np.empty_like(frames)
            for i, job in enumerate(jobs):
                out[i] = job.result()[0]  # re-raises a worker's exception here
            return out

        return result

    def _worker_session(self, shape: tuple[int, ...]) -> ort.InferenceSession:
        """The single-threaded session of the calling pool worker (each worker has its own: sessions are
        not shared between frames run at the same time)."""
        slot = getattr(self._local, "slot", None)
        if slot is None:
            with self._lock:
                slot = self._local.slot = self._workers
                self._workers += 1
        return self._session_for(shape, threads=1, slot=slot)

    def _run(self, frames: np.ndarray, session_for: Callable[[tuple[int, ...]], ort.InferenceSession]) -> np.ndarray:
        """Pre-process, run one session from ``session_for(input shape)``, post-process."""
        _, h, w, _ = frames.shape
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            # padded here as the PyTorch generators pad themselves (PadToMultiple: reflect, or replicate
            # when the frame is too small to reflect); a general graph reflect-pads inside, so it only
            # needs the too-small case
            small = ph >= h or pw >= w
            if self.aligned or small:
                frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge" if small else "reflect")
        # uint8 NHWC -> float NCHW in [-1, 1], same arithmetic as the torch engine
        x = frames.transpose(0, 3, 1, 2).astype(np.float32)
        np.divide(x, 127.5, out=x)
        x -= 1.0
        y = session_for(x.shape).run(None, {self._input: x.astype(self._dtype, copy=False), **self.controls})[0]
        y = y.astype(np.float32, copy=False)[:, :, :h, :w]
        # float NCHW in [-1, 1] -> uint8 NHWC: round((y + 1) * 127.5), saturated; OpenCV does the scale,
        # rounding (to nearest even, as np.rint) and saturation per plane and interleaves the planes, in
        # a fifth of the time of the same steps in numpy (measured at 720p: 1.0 vs 5.9 ms per frame).
        # convertScaleAbs takes |.|, which changes nothing here: the generators end in tanh or a clamp to
        # [-1, 1], so (y + 1) * 127.5 is never below 0 by more than float rounding.
        return np.stack([cv2.merge([cv2.convertScaleAbs(plane, alpha=127.5, beta=127.5) for plane in frame])
                         for frame in y])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.session = None  # type: ignore[assignment]
        self._shaped.clear()
