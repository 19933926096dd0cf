"""The one small interface every inference backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

#: a submitted batch: call it to wait for the stylized batch (see :meth:`Engine.submit`)
Pending = Callable[[], np.ndarray]


class Engine(ABC):
    """An inference backend for a generator.

    Contract: :meth:`infer` takes a batch of frames as an ``N x H x W x 3`` uint8 RGB array (C-contiguous)
    and returns the stylized batch with the same shape and dtype. Frames of any size are accepted; the
    engine pads and crops internally. Engines are not thread-safe: one pipeline stage owns one engine.
    """

    #: registry name of the backend ("torch", "onnxruntime", "tensorrt")
    name: str = ""
    #: the device the engine runs on, in words ("cpu", "cuda:0 (NVIDIA H100)")
    device: str = "cpu"

    #: how many submitted batches may be waiting for their results at once (see :meth:`submit`): 1 for
    #: engines that compute in :meth:`submit` itself; 2 lets a GPU engine copy the next batch in and the
    #: previous one out while it runs the current one
    in_flight: int = 1

    @abstractmethod
    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Stylize an N x H x W x 3 uint8 RGB batch; returns the same shape, uint8."""

    def submit(self, frames: np.ndarray) -> Pending:
        """Start stylizing a batch of a video (all batches the same frame size); returns a call that waits
        for the result and returns it, as :meth:`infer` would.

        A caller keeps at most :attr:`in_flight` batches submitted and not yet collected, and collects them
        in order. The default runs :meth:`infer` at once.
        """
        out = self.infer(frames)
        return lambda: out

    def close(self) -> None:
        """Release resources (sessions, CUDA memory). Safe to call twice."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_batch(frames: np.ndarray) -> None:
    """Raise ValueError unless ``frames`` is an N x H x W x 3 uint8 array (the engine contract)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"engines take N x H x W x 3 uint8 RGB, got {frames.dtype} {frames.shape}")
