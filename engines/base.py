"""The one small interface every inference backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


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

    @abstractmethod
    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Stylize an N x H x W x 3 uint8 RGB batch; returns the same shape, uint8."""

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
