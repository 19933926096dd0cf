"""PyTorch engine: CPU float32, or CUDA with fp16, channels_last and overlapped copies.

On CUDA a video streams through :meth:`TorchEngine.submit`: each batch is copied from pinned host memory to
the GPU on one stream, run on a second, and copied back into pinned host memory on a third, so the upload
of the next batch and the download of the previous one overlap the current batch's compute and the CPU
never waits for the GPU while it has frames to hand over (two batches in flight). cuDNN's autotuner
(``cudnn.benchmark``) is turned on for that path: within a video the frame size never changes, so the
fastest kernels are searched once. Pinned buffers come from PyTorch's caching host allocator, which reuses
them once the copies that used them have completed. The GPU tests (``-m gpu``) check it against the plain
path; they and ``bench/gpu_check.sh`` passed on an NVIDIA H200 (bench/RESULTS.md).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from vidtoon.engines.base import Engine, Pending, check_batch


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
            self.in_flight = 2
            # upload, compute, download: one stream each, so copies overlap compute
            self._streams = [torch.cuda.Stream(self._device) for _ in range(3)]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the engine's device -> the stylized batch, uint8 NHWC (contiguous), same device."""
        # uint8 NHWC -> float NCHW in [-1, 1]; permute gives a channels_last view for free
        x = x.permute(0, 3, 1, 2).to(self.dtype).div_(127.5).sub_(1.0)
        x = x.contiguous(memory_format=torch.channels_last) if self.cuda else x.contiguous()
        y = self.net(x)
        y = y.float().add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous()

    @torch.inference_mode()
    def infer(self, frames: np.ndarray) -> np.ndarray:
        check_batch(frames)
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if self.cuda:
            x = x.pin_memory().to(self._device, non_blocking=True)
        return self._run(x).cpu().numpy()

    @torch.inference_mode()
    def submit(self, frames: np.ndarray) -> Pending:
        if not self.cuda:
            return super().submit(frames)
        check_batch(frames)
        torch.backends.cudnn.benchmark = True  # a video: one frame size, worth searching the fastest kernels
        upload, compute, download = self._streams
        host_in = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
        host_in.numpy()[...] = frames
        with torch.cuda.device(self._device):
            with torch.cuda.stream(upload):
                x = host_in.to(self._device, non_blocking=True)
            compute.wait_stream(upload)
            with torch.cuda.stream(compute):
                x.record_stream(compute)  # made on the upload stream, used (and freed) here
                y = self._run(x)
            download.wait_stream(compute)
            with torch.cuda.stream(download):
                y.record_stream(download)
                host_out = torch.empty(y.shape, dtype=torch.uint8, pin_memory=True)
                host_out.copy_(y, non_blocking=True)
                done = torch.cuda.Event(blocking=True)  # the waiting thread sleeps instead of spinning
                done.record(download)

        def result() -> np.ndarray:
            done.synchronize()  # releases the GIL while it waits
            return host_out.numpy()

        return result

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]
        if self.cuda:
            torch.cuda.empty_cache()
