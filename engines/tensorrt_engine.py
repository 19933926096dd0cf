"""TensorRT engine (NVIDIA GPUs): fp16 plans built from the ONNX export, cached per model, size and GPU.

Written against the TensorRT 10 API in the form TensorRT 11 keeps (checked against NVIDIA's 10.x -> 11.x
migration guide): the network is *strongly typed* (``1 << STRONGLY_TYPED``), so precision comes from the
ONNX file — the fp16 export — and no ``BuilderFlag.FP16`` is used (11.x removed it); plans are made with
``build_serialized_network``; inference uses named tensors (``set_input_shape``, ``set_tensor_address``)
and ``execute_async_v3`` on a torch CUDA stream, with torch CUDA tensors as the buffers.

A plan is built for the frame size of the video (one optimization profile: batch 1..``max_batch`` at that
height and width, best kernels for exactly that size) and cached under the user cache folder, keyed by
the ONNX hash, the profile, the precision, the TensorRT version and the GPU name
(:func:`vidtoon.engines.cache.tensorrt_cache_name`). Building takes minutes and is announced.

Unverified on the project machine (no GPU there): the pure parts (profiles, cache names, the choice of
engine) are tested; the GPU test in tests/test_engines.py runs wherever CUDA and TensorRT are present.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vidtoon.engines.base import Engine, check_batch
from vidtoon.engines.cache import (
    file_sha256,
    tensorrt_cache_name,
    user_cache_dir,
)
from vidtoon.fileio import write_bytes

try:
    import tensorrt as trt
except ImportError:  # the pure helpers stay importable (tests, `vidtoon info`); the engine itself needs it
    trt = None

Shape = tuple[int, int, int, int]
Profile = dict[str, tuple[Shape, Shape, Shape]]

#: the exported graph's tensor names (engines/onnx_export.py)
INPUT, OUTPUT = "input", "output"
#: smallest side the exported graph accepts (it reflect-pads to a multiple of 8)
MIN_SIDE = 8


def profile_shapes(height: int, width: int, max_batch: int, opt_batch: int | None = None) -> Profile:
    """The optimization profile for frames of ``height x width``: batch 1..``max_batch``, tuned for ``opt_batch``.

    Height and width are fixed: within one video they never change, and a fixed size lets TensorRT pick
    the best kernels for it (a range of sizes costs speed and memory for nothing here).
    """
    opt = max_batch if opt_batch is None else opt_batch
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f"TensorRT plans need frames of at least {MIN_SIDE}x{MIN_SIDE}, got {width}x{height}")
    if not 1 <= opt <= max_batch:
        raise ValueError(f"need 1 <= opt_batch <= max_batch, got {opt} and {max_batch}")
    return {INPUT: ((1, 3, height, width), (opt, 3, height, width), (max_batch, 3, height, width))}


def plan_path(onnx_hash: str, profile: Profile, precision: str, trt_version: str, gpu_name: str, cache_dir: Path | None = None) -> Path:
    """Where the plan for these parameters is cached."""
    name = tensorrt_cache_name(onnx_hash, profile, precision=precision, trt_version=trt_version, gpu_name=gpu_name)
    return (cache_dir or user_cache_dir()) / "tensorrt" / name


def network_flags(trt_module: Any) -> int:
    """Creation flags for a strongly typed network: the STRONGLY_TYPED bit on TensorRT 10 and 11, 0 on a
    release where the flag is gone because strong typing is the only mode."""
    flag = getattr(trt_module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_plan(onnx_path: Path, profile: Profile, workspace_gib: float = 4.0) -> bytes:
    """Build a serialized plan from the ONNX file as a strongly typed network with one optimization profile."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT messages above)")
    return bytes(memoryview(plan))


class TensorRTEngine(Engine):
    """Runs a generator through TensorRT on a CUDA GPU.

    ``generator``: an ``nn.Module`` (exported to ONNX and cached) or a path to an ONNX file made by
    ``vidtoon export --engine onnx``. ``max_batch``: largest batch a plan accepts (bigger batches are
    split). ``fp16``: build from the fp16 export (default) or the fp32 one. ``log``: where the rebuild
    announcement goes (default: stderr).
    """

    name = "tensorrt"
    #: packages this engine needs (engines.engine_class names the pip extra when one is missing)
    requires = ("tensorrt",)
    preferred_batch_size = 8

    def __init__(
        self,
        generator: Any,
        device: str = "cuda",
        max_batch: int = 8,
        fp16: bool = True,
        log: Callable[[str], None] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        import torch

        if trt is None:
            raise ImportError("No module named 'tensorrt'", name="tensorrt")
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise RuntimeError("the TensorRT engine needs a CUDA GPU (use --engine onnxruntime or torch on the CPU)")
        self._torch = torch
        self._device = torch.device(device)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.fp16 = fp16
        self.precision = "fp16" if fp16 else "fp32"
        self.max_batch = self.preferred_batch_size = max_batch
        self.cache_dir = cache_dir
        if isinstance(generator, (str, Path)):
            self.onnx_path = Path(generator)
        else:
            from vidtoon.engines.onnx_export import cached_onnx

            # the controls baked in: TensorRT's ONNX parser takes initializers (the graph's control defaults) as weights
            self.onnx_path = cached_onnx(generator, fp16=fp16, cache_dir=cache_dir, log=self.log, controls=False)
        self._onnx_hash = file_sha256(self.onnx_path)
        self.gpu_name = torch.cuda.get_device_name(self._device)
        self.device = f"{self._device} ({self.gpu_name})"
        with self._on_device():
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._stream = torch.cuda.Stream(device=self._device)
        self._size: tuple[int, int] | None = None
        self._engine: Any = None
        self._context: Any = None

    def _on_device(self) -> Any:
        """A context in which ``self._device`` is the current CUDA device.

        TensorRT binds what it builds, deserializes and creates (engines, execution contexts, their memory)
        to the device current at that moment: every TensorRT call runs inside this context, or with
        ``cuda:N`` (N != 0) the engine would sit on GPU 0 and the buffers on GPU N.
        """
        return self._torch.cuda.device(self._device)

    def _load(self, height: int, width: int) -> None:
        """Make the plan for frames of ``height x width`` current, building (and caching) it if needed."""
        with self._on_device():
            self._load_on_device(height, width)

    def _load_on_device(self, height: int, width: int) -> None:
        profile = profile_shapes(height, width, self.max_batch)
        path = plan_path(self._onnx_hash, profile, self.precision, trt.__version__, self.gpu_name, self.cache_dir)
        engine = None
        if path.is_file():
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                self.log(f"Cached TensorRT engine {path.name} is unusable; rebuilding it")
        if engine is None:
            self.log(
                f"Building a TensorRT engine for {width}x{height}, batch up to {self.max_batch}, {self.precision}, "
                f"on {self.gpu_name} (TensorRT {trt.__version__}); first use of this model at this size, "
                f"this takes a few minutes and is cached in {path.parent}"
            )
            start = time.monotonic()
            plan = build_plan(self.onnx_path, profile)
            write_bytes(path, plan)
            self.log(f"TensorRT engine built in {time.monotonic() - start:.0f} s")
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise RuntimeError("TensorRT could not load the engine it just built (see the TensorRT messages above)")
        self._engine, self._context, self._size = engine, engine.create_execution_context(), (height, width)
        self._in_dtype = self._torch_dtype(engine.get_tensor_dtype(INPUT))
        self._out_dtype = self._torch_dtype(engine.get_tensor_dtype(OUTPUT))

    def _torch_dtype(self, dtype: Any) -> Any:
        table = {trt.DataType.HALF: self._torch.float16, trt.DataType.FLOAT: self._torch.float32}
        if dtype not in table:
            raise RuntimeError(f"unexpected TensorRT tensor type {dtype}")
        return table[dtype]

    def infer(self, frames: np.ndarray) -> np.ndarray:
        check_batch(frames)
        n, h, w, _ = frames.shape
        if self._size != (h, w):
            self._load(h, w)
        if n > self.max_batch:
            return np.concatenate([self.infer(frames[i : i + self.max_batch]) for i in range(0, n, self.max_batch)])
        torch = self._torch
        with self._on_device(), torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(frames)).pin_memory().to(self._device, non_blocking=True)
            # uint8 NHWC -> NCHW in [-1, 1], in the plan's input precision
            x = x.permute(0, 3, 1, 2).to(self._in_dtype).div_(127.5).sub_(1.0).contiguous()
            self._context.set_input_shape(INPUT, tuple(x.shape))
            y = torch.empty(tuple(self._context.get_tensor_shape(OUTPUT)), dtype=self._out_dtype, device=self._device)
            self._context.set_tensor_address(INPUT, x.data_ptr())
            self._context.set_tensor_address(OUTPUT, y.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT inference failed (execute_async_v3 returned False)")
            y = y.float().add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            host = torch.empty(y.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(y, non_blocking=True)
        self._stream.synchronize()
        return host.numpy()

    def close(self) -> None:
        if self._engine is not None:
            with self._on_device():  # freed on the device they were made on
                self._context = self._engine = None
        self._size = None
