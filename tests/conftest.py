"""Shared fixtures: tiny generators (a few channels, seconds on a CPU), and helpers to read outputs back."""
from __future__ import annotations

import sys
from pathlib import Path

import av
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests import mediagen as a plain module

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep ONNX exports and engine caches of the tests out of the user's cache folder (subprocesses too).

    Under pytest-xdist the workers of one run share it (their temporary folders sit side by side in the
    run's own folder), so a model one worker exported is not exported again by another; the cache writes
    each file to a unique temporary name and renames it, so two workers exporting at once is safe."""
    import os

    old = os.environ.get("VIDTOON_CACHE_DIR")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = base.parent / "cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("cache")
    os.environ["VIDTOON_CACHE_DIR"] = str(cache)
    yield
    if old is None:
        os.environ.pop("VIDTOON_CACHE_DIR", None)
    else:
        os.environ["VIDTOON_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A cache folder of the test module's own (engine tests that count cached files and sessions)."""
    folder = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("VIDTOON_CACHE_DIR", str(folder))
    request.addfinalizer(mp.undo)
    return folder


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``), give each worker's torch its share of the cores: N workers each running
    torch's default one thread per core would oversubscribe the CPU (and OpenMP threads spin while they wait)."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests marked ``slow`` first (so that under pytest-xdist the workers share them out at the start
    instead of one worker finishing a long tail alone; the order is otherwise kept); skip tests marked ``gpu``
    when torch sees no CUDA device."""
    items.sort(key=lambda item: "slow" not in item.keywords)  # stable: keeps each group's own order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_generator(seed: int = 0) -> torch.nn.Module:
    """A FastGenerator with a few channels and every weight perturbed, so its output visibly differs."""
    from vidtoon.networks import FastGenerator

    torch.manual_seed(seed)
    net = FastGenerator(width=8, width_low=8, n_res=1)
    # a fresh FastGenerator starts at (nearly) the identity: move every weight a little
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


class IdentityNet(torch.nn.Module):
    """A "generator" that returns its input: isolates what video I/O does to the pictures."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of an exported checkpoint of a perturbed tiny FastGenerator."""
    from vidtoon.models import export_generator

    path = tmp_path_factory.mktemp("models") / "tiny_fast.pt"
    return export_generator(tiny_generator(), "fast", path)


@pytest.fixture(scope="session")
def tiny_engine():
    """A TorchEngine on the CPU running a perturbed tiny generator (shared: loading once is faster)."""
    from vidtoon.engines.torch_engine import TorchEngine

    torch.set_num_threads(1)
    with TorchEngine(tiny_generator(), device="cpu") as engine:
        yield engine


@pytest.fixture(scope="session")
def identity_engine():
    """A TorchEngine whose generator returns its input: isolates what video I/O does to the pictures."""
    from vidtoon.engines.torch_engine import TorchEngine

    with TorchEngine(IdentityNet(), device="cpu") as engine:
        yield engine


def video_pts(path: Path) -> list[int]:
    """The pts of every decoded video frame, in order."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(c.streams.video[0])]


def packets(path: Path, index: int) -> list[bytes]:
    """The bytes of every non-empty packet of stream ``index``."""
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams[index]) if p.size]


def leftovers(folder: Path) -> list[str]:
    """Hidden or temporary files a conversion might have left behind in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))
