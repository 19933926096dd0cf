"""The stabilizer's full-resolution warp and blend in PyTorch, for engines that run on a GPU.

:class:`vidtoon.stabilize.Stabilizer` splits each frame's work in two: :meth:`~vidtoon.stabilize.Stabilizer.analyse`
(OpenCV DIS flow and the blend weight, on frames shrunk to ``flow_max_side``: cheap, on the CPU, and it needs
only the input frames, so it runs in a thread of its own ahead of the stylization) and the warp and blend of
the previous full-resolution output, which dominate its cost at 1080p and 4K. :class:`DeviceBlender` does the
second part with ``grid_sample`` on the engine's device: on an H200 the OpenCV warp and blend in the encoding
thread halved the conversion rate (720p 135 -> 65 fps, 1080p 73 -> 32 fps).

It computes what :meth:`Stabilizer.blend <vidtoon.stabilize.Stabilizer.blend>` computes, in float32: the flow
is scaled to full-size pixels and upsampled bilinearly with OpenCV's ``resize`` convention (pixel centres,
``align_corners=False``), the previous output is sampled bilinearly at ``pixel + flow`` with replicated
borders (``remap`` with ``BORDER_REPLICATE``), the weight is upsampled the same way, and the blend is rounded
to uint8. OpenCV interpolates uint8 images with 5-bit fixed-point weights; float32 here, so the two agree
within 1 level (tests/test_stabilize_device.py runs both on the CPU).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vidtoon.stabilize import Motion

__all__ = ["DeviceBlender"]


class DeviceBlender:
    """Warps and blends stabilized frames on ``device`` (``"cuda"``, ``"cuda:N"``, or ``"cpu"`` for tests).

    Keeps the previous output on the device between frames. Call :meth:`reset` before each video and
    :meth:`blend` on every frame in order, with the :class:`~vidtoon.stabilize.Motion` that
    :meth:`Stabilizer.analyse <vidtoon.stabilize.Stabilizer.analyse>` returned for the same frame.
    """

    def __init__(self, device: str | torch.device = "cuda") -> None:
        self.device = torch.device(device)
        self._prev: torch.Tensor | None = None  # previous output, 1 x 3 x H x W float32 on the device
        self._grid: torch.Tensor | None = None  # pixel centres of the frame size in use, 1 x H x W x 2
        self._staging: torch.Tensor | None = None  # pinned host copy of the frame in use (CUDA only)

    def reset(self) -> None:
        """Forget the previous frame."""
        self._prev = None

    @torch.inference_mode()
    def blend(self, toon_rgb: np.ndarray, motion: Motion | None) -> np.ndarray:
        """The stabilized frame (H x W x 3 uint8, a new array) of the stylized frame ``toon_rgb``."""
        toon = torch.from_numpy(np.ascontiguousarray(toon_rgb))
        if self.device.type == "cuda":
            # one page-locked staging buffer per frame size, not a new one per frame (pinning allocates with
            # the driver, slow); reusing it is safe: the .cpu() below waits for this frame's copies to end
            if self._staging is None or self._staging.shape != toon.shape:
                self._staging = torch.empty(toon.shape, dtype=torch.uint8).pin_memory()
            toon = self._staging.copy_(toon).to(self.device, non_blocking=True)
        toon = toon.permute(2, 0, 1)[None].float()
        prev = self._prev
        if motion is None or prev is None or prev.shape != toon.shape:
            out = toon
        else:
            out = self._blend(prev, toon, motion)
        self._prev = out
        return out[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy()

    def _blend(self, prev: torch.Tensor, toon: torch.Tensor, motion: Motion) -> torch.Tensor:
        """``w * warp(prev, flow) + (1 - w) * toon``, rounded to whole levels (1 x 3 x H x W float32)."""
        h, w = toon.shape[-2:]
        sh, sw = motion.flow.shape[:2]
        flow = torch.from_numpy(motion.flow).to(self.device).permute(2, 0, 1)[None]
        flow = flow * torch.tensor([w / sw, h / sh], device=self.device).view(1, 2, 1, 1)
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        weight = torch.from_numpy(motion.weight).to(self.device)[None, None]
        weight = F.interpolate(weight, size=(h, w), mode="bilinear", align_corners=False)
        # sample coordinates, pixel + flow, normalised for grid_sample (align_corners=True: -1 and 1 are
        # the centres of the first and last pixels, as remap's integer coordinates)
        coords = self._pixel_grid(h, w) + flow.permute(0, 2, 3, 1)
        scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=self.device)
        warped = F.grid_sample(prev, coords * scale - 1.0, mode="bilinear", padding_mode="border",
                               align_corners=True)
        out = warped * weight + toon * (1.0 - weight)
        return out.round_().clamp_(0.0, 255.0)

    def _pixel_grid(self, h: int, w: int) -> torch.Tensor:
        """(x, y) of every pixel, 1 x H x W x 2 float32 on the device (kept for the frame size in use)."""
        if self._grid is None or self._grid.shape[1:3] != (h, w):
            ys, xs = torch.meshgrid(torch.arange(h, device=self.device, dtype=torch.float32),
                                    torch.arange(w, device=self.device, dtype=torch.float32), indexing="ij")
            self._grid = torch.stack([xs, ys], dim=-1)[None]
        return self._grid
