"""PyTorch engine: CPU float32, or CUDA with fp16 and channels_last."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from vidtoon.engines.base import Engine, check_batch


class TorchEngine(Engine):
    """Runs a generator with PyTorch eager.

    On CUDA the weights are cast to fp16 and laid out channels_last (tensor-core friendly), and uploads go
    through pinned memory; on the CPU it runs float32 under ``torch.inference_mode``.
    """

    name = "torch"

    def __init__(self, generator: nn.Module, device: str = "cpu", half: bool | None = None) -> None:
        self._device = torch.device(device)
        self.cuda = self._device.type == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise RuntimeError("CUDA was asked for but torch sees no CUDA device")
        self.half = self.cuda if half is None else half
        self.dtype = torch.float16 if self.half else torch.float32
        net = generator.eval().requires_grad_(False).to(self._device, dtype=self.dtype)
        if self.cuda:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.device = str(self._device)
        if self.cuda:
            self.device += f" ({torch.cuda.get_device_name(self._device)})"

    @torch.inference_mode()
    def infer(self, frames: np.ndarray) -> np.ndarray:
        check_batch(frames)
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if self.cuda:
            x = x.pin_memory().to(self._device, non_blocking=True)
        # uint8 NHWC -> float NCHW in [-1, 1]; permute gives a channels_last view for free
        x = x.permute(0, 3, 1, 2).to(self.dtype).div_(127.5).sub_(1.0)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
        y = self.net(x)
        y = y.float().add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]
        if self.cuda:
            torch.cuda.empty_cache()
