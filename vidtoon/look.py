"""The look as the commands draw it, as one torch module: the network, then faces drawn back.

``vidtoon image`` and ``vidtoon convert`` draw the eyes, nose and mouth of each face a face detector finds
back into the network's cartoon (vidtoon/faces.py). A script that loads a model through
:func:`vidtoon.load_generator` gets the same picture for each image of a batch from :class:`FacesDrawn`.
The drawing is NumPy and OpenCV, outside the network's graph, so a module that is traced or exported is the
network alone (``load_generator(..., faces=False)``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn


def _tracing() -> bool:
    """Whether the module is being traced or exported (TorchScript, torch.export, torch.compile, ONNX)."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
                or torch.onnx.is_in_onnx_export())


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W in [-1, 1] to N x H x W x 3 uint8 RGB, as the engines round it."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class FacesDrawn(nn.Module):
    """``network``'s cartoon with the photo's facial detail drawn back into each face found in it, as
    ``vidtoon image`` draws it (faces from 1/64 of the picture's shorter side, at the look's ``strength``).

    Takes and returns NCHW float RGB in [-1, 1]; the network's own attributes (``config``, ...) and its state
    dict read through.
    Pixels outside the faces' ellipses are the network's output exactly. Tracing or exporting it raises an
    error that names ``faces=False``: the face detector cannot be part of a graph."""

    def __init__(self, network: nn.Module, strength: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.strength = strength

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["network"], name)

    # the weights are the network's: its state dict, without a "network." prefix, so that checkpoints
    # saved from or loaded into this module are those of the network alone
    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """The network's state dict (the face drawing has no weights of its own here)."""
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Load the network's state dict."""
        return self.network.load_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _tracing():
            raise RuntimeError("faces are drawn outside the network's graph: to trace or export, load the "
                               "network alone with vidtoon.load_generator(..., faces=False)")
        y = self.network(x)
        from vidtoon.faces import STILL, detect_faces, draw_faces

        photos, toons = _to_uint8(x), _to_uint8(y)
        deltas = []
        for photo, toon in zip(photos, toons):
            drawn = draw_faces(photo, toon, detect_faces(photo, fraction=STILL), self.strength)
            deltas.append(drawn.astype(np.float32) - toon.astype(np.float32))
        if not any(d.any() for d in deltas):
            return y
        # the drawing's change is added to the network's float output, so pixels it leaves stay exact
        delta = torch.from_numpy(np.stack(deltas)).permute(0, 3, 1, 2).to(device=y.device, dtype=y.dtype)
        return y + delta / 127.5
