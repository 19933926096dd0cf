"""vidtoon: turn videos into cartoons with a CartoonGAN generator.

The public API is small and stable:

- :func:`load_generator` returns a ready ``torch.nn.Module`` (NCHW float32 RGB in [-1, 1], any size).
- :func:`convert` converts one video file, exactly as ``vidtoon convert`` does.

Heavy imports (torch, av) happen lazily so that ``vidtoon --version`` stays instant.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_generator", "convert", "VidtoonError"]

from vidtoon.errors import VidtoonError


def load_generator(model: str = "default", device: str = "cpu", strength: float = 1.0, outline: float = 1.0,
                   faces: bool = True) -> Any:
    """Load a generator in eval mode.

    ``model`` is a shipped model name (see ``vidtoon info``) or a path to a checkpoint written by
    ``vidtoon export-model`` or by the trainer. The module takes NCHW float32 RGB in [-1, 1] of any
    height and width and returns the same. ``strength`` (0 = the photo .. 1 = the full look) and
    ``outline`` (0 .. 2, ink) act inside the network. ``faces`` (as the commands' ``--faces``): the
    photo's eyes, nose and mouth are drawn back into each face found in each image, as ``vidtoon image``
    draws them (:class:`vidtoon.look.FacesDrawn`); ``faces=False`` returns the network alone, which is what
    can be traced, exported or trained.
    """
    from vidtoon.models import load_generator as _load

    net = _load(model, device, strength, outline)
    if not faces:
        return net
    from vidtoon.look import FacesDrawn

    return FacesDrawn(net, strength).eval()


def convert(input: str, output: str | None = None, options: Any = None, **fields: Any) -> Any:
    """Convert one video file to a cartoon video; the options are those of ``vidtoon convert``: a
    :class:`vidtoon.options.ConvertOptions` and/or its fields as keywords (``crf=20``), plus ``engine``,
    ``progress`` and ``generator`` (see :func:`vidtoon.pipeline.convert`).

    Returns a :class:`vidtoon.job.ConvertResult` with frame count, time and output path.
    """
    from vidtoon.pipeline import convert as _convert

    return _convert(input, output, options, **fields)
