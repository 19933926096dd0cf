"""Inference-time look controls shared by the generators that have them (``toon`` and ``fast``)."""
from __future__ import annotations


class LookControls:
    """``strength`` (0 = the photo .. 1 = the full look) and ``outline`` (ink multiplier, 0 .. 2).

    Plain attributes, not weights: they stay out of the state dict, so checkpoints do not change. An ONNX
    export makes them graph inputs (vidtoon.engines.onnx_export sets them to tensors while tracing), or bakes
    them in as constants for TensorRT (then :attr:`controls` keys the export cache).
    """

    strength: float = 1.0
    outline: float = 1.0

    @property
    def controls(self) -> dict[str, float]:
        """The controls, as they key cached exports."""
        return {"strength": float(self.strength), "outline": float(self.outline)}

    def set_controls(self, strength: float = 1.0, outline: float = 1.0) -> "LookControls":
        """Set both controls (ValueError when out of range); returns self."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if not 0.0 <= outline <= 2.0:
            raise ValueError(f"outline must be in [0, 2], got {outline}")
        self.strength, self.outline = float(strength), float(outline)
        return self
