"""The learned edges inside the toon generator: the student (networks/edges.py), the toon generator with
``lines="student"``, ``--model hq`` / a HED h5 as the model, and ``vidtoon train-edges`` (trainer/distill.py)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from clirun import run_cli
from mediagen import make_video
from vidtoon.models import load_generator, read_checkpoint, resolve_model_path, student_generator
from vidtoon.networks.edges import EdgeStudent

h5py = pytest.importorskip("h5py")
from test_hed import _random_hed, _write_h5  # noqa: E402  (needs h5py)
from test_toon import _picture  # noqa: E402


@pytest.fixture(scope="module")
def hed_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HED h5 in the wheel's layout with random weights (the tests run without the wheel)."""
    path = tmp_path_factory.mktemp("hed") / "random.weights.h5"
    _write_h5(path, _random_hed(1))
    return path


def test_student_shapes() -> None:
    net = EdgeStudent().eval()
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        s4, s8, s16, fine = net.logits(x)
        p = net(x)
    assert s4.shape == (2, 1, 16, 24) and s8.shape == (2, 1, 8, 12) and s16.shape == (2, 1, 4, 6)
    assert fine.shape == (2, 1, 32, 48)
    assert p.shape == (2, 1, 64, 96) and 0 <= float(p.min()) and float(p.max()) <= 1


def test_student_toon_keeps_size_and_its_new_steps_vanish_at_strength_zero() -> None:
    net = student_generator(read_checkpoint(resolve_model_path("default"))).eval()
    assert net.config["lines"] == "student" and net.config["barrier"] > 0
    torch.manual_seed(0)
    for p in net.edges.parameters():  # a student that draws something
        p.data.normal_(0.0, 0.3)
    with torch.no_grad():
        odd = net(_picture(37, 53))
        x = _picture(48, 80)  # a multiple of 16: padded alike by both models
        y = net(x)
        net.set_controls(strength=0.0)
        y0 = net(x)
    assert odd.shape == (1, 3, 37, 53) and (y - x).abs().mean() > 1e-2
    # strokes, borders, highlights and the knee all scale with strength: at 0 it is the default's answer
    with torch.no_grad():
        base = load_generator("default", strength=0.0)(x)
    assert (y0 - base).abs().max() < 1e-5


def test_hq_is_toon_cannys_look_with_hed_drawing(hed_h5: Path) -> None:
    net = load_generator(str(hed_h5), outline=1.5)
    assert type(net.edges).__name__ == "HED" and net.outline == 1.5
    # the look its figures were measured on (MODEL_CARD.md), not today's default's mode filter
    assert net.config["lines"] == "student" and "flatten" not in net.config
    with torch.no_grad():
        y = net(torch.rand(1, 3, 40, 56) * 2 - 1)
    assert y.shape == (1, 3, 40, 56)


def test_an_h5_that_is_not_heds_as_the_model_is_one_plain_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "other.weights.h5"
    with h5py.File(bad, "w") as f:
        f["dense/vars/0"] = np.zeros((4, 4), np.float32)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), np.full((32, 48, 3), 128, np.uint8))
    code, out, err = run_cli(["image", img, "-o", tmp_path / "out.png", "--model", bad], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error:") and "HED" in lines[0]
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()


def test_train_edges_smoke_resumes_and_writes_a_model(tmp_path: Path, hed_h5: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = np.full((64, 80, 3), 90, np.uint8)
        cv2.rectangle(img, (10 + i, 12), (50, 44 + i), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.imwrite(str(photos / f"p{i}.png"), img)
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "clip.mp4", frames=12, size=(80, 64), audio=None)
    run = tmp_path / "runs" / "r1"
    args = ["train-edges", "--photos", photos, "--videos", videos, "--frames-per-video", 2, "--holdout", 0,
            "--teacher", hed_h5, "--run", run, "--batch", 2, "--crop", 48, "--threads", 1]
    code, out, err = run_cli(args + ["--steps", 2], capsys)
    assert code == 0, err
    assert "teacher maps for 6 images" in err
    first = torch.load(run / "latest.pt", weights_only=False)
    assert first["step"] == 2
    code, out, err = run_cli(args + ["--steps", 4], capsys)
    assert code == 0, err
    assert "resumed at step 2" in err and torch.load(run / "latest.pt", weights_only=False)["step"] == 4
    model = run / "toon-student.pt"
    assert model.is_file() and str(model) in out
    net = load_generator(str(model))
    assert net.config["lines"] == "student"
    trained = torch.load(run / "latest.pt", weights_only=False)["ema"]
    assert all(torch.equal(v, net.edges.state_dict()[k]) for k, v in trained.items())
    code, out, err = run_cli(args + ["--steps", 5, "--quiet"], capsys)  # no log lines, the final line stays
    assert code == 0 and err.strip() == "" and str(model) in out
    assert torch.load(run / "latest.pt", weights_only=False)["step"] == 5


def test_train_edges_refuses_a_bad_base_or_option_before_any_work(tmp_path: Path, capsys) -> None:
    """A --base that is not a toon model was found only after all the steps; zero batches or frames per
    video were internal errors. Now: refused first, and no run folder is made."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p.png"), np.full((64, 80, 3), 90, np.uint8))
    run = tmp_path / "runs" / "r1"
    args = ["train-edges", "--photos", photos, "--run", run, "--steps", 1, "--crop", 48]
    code, _, err = run_cli(args + ["--base", "nosuch"], capsys)
    assert code == 1 and err.startswith("Error:") and "nosuch" in err and "Traceback" not in err
    (tmp_path / "text.pt").write_text("not a model")
    code, _, err = run_cli(args + ["--base", tmp_path / "text.pt"], capsys)
    assert code == 1 and "not a vidtoon model" in err
    assert not run.exists()
    for bad in (["--batch", 0], ["--frames-per-video", 0], ["--holdout", 1], ["--steps", 0]):
        code, _, err = run_cli(args + bad, capsys)
        assert code == 2 and "Invalid value" in err, (bad, err)
    assert not run.exists()


def test_tune_searches_the_look_of_a_model_with_learned_outlines() -> None:
    from vidtoon.trainer import tune

    base = student_generator(read_checkpoint(resolve_model_path("default"))).eval()
    look = tune.edge_look(base)
    assert set(look) == set(tune.EDGE_SPACE) and look["barrier"] == base.config["barrier"]
    build = tune.edge_builder(base)
    net = build({**look, "barrier": 0.0, "strokes": (0.35, 0.7), "sigma": 0.15})
    assert net.config["barrier"] == 0.0 and net.config["stroke_high"] == 0.7
    assert abs(float(net.log_sigma.exp()) - 0.15) < 1e-6 and base.config["barrier"] > 0  # base untouched
    assert net.edges is not base.edges and torch.equal(net.edges.fine_out.bias, base.edges.fine_out.bias)


def test_the_canny_default_stays_loadable_under_its_own_name() -> None:
    # the default of 2026-11-26 (Canny outlines, fitted look) ships as ``toon-canny`` too, so that it stays
    # loadable whichever model is the default
    net = load_generator("toon-canny")
    assert net.config["lines"] == "canny" and net.config["iters"] == 64 and not hasattr(net, "edges")
    assert type(load_generator("classic")).__name__ == "FastGenerator"


class _NoEdges(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :1])


def test_detail_adds_the_photos_thin_lines_where_the_edge_map_has_none() -> None:
    from vidtoon.networks import ToonGenerator

    x = _picture(48, 80)  # a sharp vertical border in the middle
    inks = []
    for detail in (0.0, 0.6):
        net = ToonGenerator(width=0, iters=8, bins=3, lines="student", barrier=0.5, detail=detail).eval()
        net.edges = _NoEdges()
        with torch.no_grad():
            inks.append(net(x, parts=True)[2][0, 0])
    assert inks[0].max() < 1e-6  # nothing from an empty edge map
    assert 0.3 < float(inks[1][8:-8, 36:44].sum(1).min()) and float(inks[1].max()) <= 0.6 + 1e-6


class _Map(torch.nn.Module):
    """An edge network that answers a fixed probability: ``value`` left of column ``split``, 0 right of it."""

    def __init__(self, value: float, split: int | None = None) -> None:
        super().__init__()
        self.value, self.split = value, split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.full_like(x[:, :1], self.value)
        if self.split is not None:
            p[..., self.split:] = 0.0
        return p


#: what the default's flattening gained from the edge network (2026-12-03, ninth session)
_BARRIER_KEYS = ("mode_barrier", "barrier_low", "barrier_high", "barrier_half")


def _default_without_barrier() -> tuple[dict, torch.nn.Module]:
    """The default's config and network without the edge network in its flattening: the look the gates act on."""
    from vidtoon.networks.toon import ToonGenerator

    ckpt = read_checkpoint(resolve_model_path("default"))
    cfg = {k: v for k, v in ckpt["config"].items() if k not in _BARRIER_KEYS}
    plain = ToonGenerator(**cfg)
    plain.load_state_dict({k: v for k, v in ckpt["params_ema"].items() if not k.startswith("edges.")})
    return cfg, plain.eval()


def test_gated_outlines_are_kept_only_where_the_edge_map_sees_a_border() -> None:
    from vidtoon.networks.toon import ToonGenerator

    cfg, plain = _default_without_barrier()
    gated = ToonGenerator(**{**cfg, "gate_low": 0.2, "gate_high": 0.6})
    gated.load_state_dict({**gated.state_dict(), **plain.state_dict()})
    gated.eval()
    x = _picture(96, 128)  # a multiple of 16: both models pad it alike; a border at column 64 ...
    x[..., 24:72, 104:120] = torch.tensor([-0.8, 0.6, 0.3]).view(1, 3, 1, 1)  # ... and a box on the right
    with torch.no_grad():
        _, flat, ink = plain(x, parts=True)
        gated.edges = _Map(1.0)
        _, flat_g, ink_all = gated(x, parts=True)
        gated.edges = _Map(0.0)
        _, _, ink_none = gated(x, parts=True)
        gated.edges = _Map(0.4)
        _, _, ink_half = gated(x, parts=True)
        gated.edges = _Map(1.0, split=96)
        _, _, ink_left = gated(x, parts=True)
    assert float(ink.sum()) > 20  # the picture has outlines to gate
    assert torch.equal(flat, flat_g) and torch.allclose(ink_all, ink, atol=1e-6)  # a border everywhere: all lines
    assert float(ink_none.abs().max()) == 0.0  # no border anywhere: no line
    assert torch.allclose(ink_half, 0.5 * ink, atol=1e-6)  # halfway up the ramp: half as dark
    # the map's ridge may sit a pixel or two off the line: its maximum within 2 px gates it
    assert torch.allclose(ink_left[..., :94], ink[..., :94], atol=1e-6)
    assert float(ink_left[..., 99:].abs().max()) == 0.0 and float(ink[..., 99:].sum()) > 0


def test_a_gate_floor_keeps_lines_away_from_borders_at_that_fraction() -> None:
    from vidtoon.networks.toon import ToonGenerator

    cfg, plain = _default_without_barrier()
    floored = ToonGenerator(**{**cfg, "gate_low": 0.0, "gate_high": 0.6, "gate_floor": 0.5})
    floored.load_state_dict({**floored.state_dict(), **plain.state_dict()})
    floored.eval()
    assert floored.config["gate_floor"] == 0.5
    x = _picture(96, 128)
    inks = {}
    with torch.no_grad():
        _, _, ink = plain(x, parts=True)
        for value in (0.0, 0.3, 1.0):
            floored.edges = _Map(value)
            inks[value] = floored(x, parts=True)[2]
    assert float(ink.sum()) > 20
    assert torch.allclose(inks[0.0], 0.5 * ink, atol=1e-6)  # no border seen: lines at the floor, not dropped
    assert torch.allclose(inks[0.3], 0.75 * ink, atol=1e-6)  # halfway up the ramp
    assert torch.allclose(inks[1.0], ink, atol=1e-6)  # on a border: the default's lines


def test_a_student_trained_from_clean_keeps_its_look() -> None:
    from vidtoon.trainer.distill import student_toon

    base = load_generator("clean")
    assert base.config["gate_high"] > 0 and base.config["lines"] == "flat"
    student = EdgeStudent()
    torch.manual_seed(1)
    for p in student.parameters():
        p.data.normal_(0.0, 0.2)
    net = student_toon(student, "clean")  # `vidtoon train-edges --base clean`
    assert net.config == base.config and torch.equal(net.edges.fine_out.bias, student.fine_out.bias)
    assert torch.equal(net.log_sigma, base.log_sigma)


#: the config keys a learned gate adds to a look, and those the default gained after `clean` and `steady` were made
_GATE_KEYS = ("gate_low", "gate_high", "gate_floor", "seed_ramp")
_LATER_DEFAULT = {"focus_low", "focus_high", *_BARRIER_KEYS}


def _base_look(net: torch.nn.Module) -> torch.nn.Module:
    """The look ``net`` (clean or steady) gates: its config without the gate, its scalars, no edge network."""
    from vidtoon.networks.toon import ToonGenerator

    base = ToonGenerator(**{k: v for k, v in net.config.items() if k not in _GATE_KEYS})
    base.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("edges.")})
    return base.eval()


def test_clean_is_the_defaults_look_with_its_lines_gated_by_the_student() -> None:
    x = _picture(96, 128)
    x[..., 24:72, 104:120] = torch.tensor([-0.8, 0.6, 0.3]).view(1, 3, 1, 1)
    net = load_generator("clean")
    assert isinstance(net.edges, EdgeStudent)
    # the look it gates is the default's before the focus gate (lines in texture 80% lighter, as then)
    base = _base_look(net)
    default = read_checkpoint(resolve_model_path("default"))
    assert base.config == {**{k: v for k, v in default["config"].items() if k not in _LATER_DEFAULT},
                           "texture_lines": 0.8}
    assert all(torch.equal(v, default["params_ema"][k]) for k, v in base.state_dict().items())
    # (and the default's own edge network, in its flattening since the ninth session, is this student)
    assert all(torch.equal(v, default["params_ema"][f"edges.{k}"]) for k, v in net.edges.state_dict().items())
    with torch.no_grad():
        y = net(x)
        net.edges = _Map(0.0)  # no border seen anywhere: that look without outlines
        bare = net(x)
        net.edges = _Map(1.0)  # borders everywhere: that look itself
        full = net(x)
        assert torch.allclose(bare, base.set_controls(outline=0.0)(x), atol=1e-6)
        assert torch.allclose(full, base.set_controls(outline=1.0)(x), atol=1e-6)
    assert (full - bare).abs().max() > 0.3 and (y - full).abs().max() <= (full - bare).abs().max() + 1e-6


def test_steady_is_cleans_network_with_lines_kept_at_half_away_from_borders_and_soft_seeds() -> None:
    from vidtoon.networks.toon import ToonGenerator

    clean, steady = load_generator("clean"), load_generator("steady")
    assert steady.config == {**clean.config, "gate_low": 0.0, "gate_high": 0.6, "gate_floor": 0.5, "seed_ramp": 1.0}
    assert all(torch.equal(v, clean.state_dict()[k]) for k, v in steady.state_dict().items())
    # with a border seen everywhere it is clean's base look with soft seeds; with none, its lines at half
    base = _base_look(clean)
    soft = ToonGenerator(**{**base.config, "seed_ramp": 1.0})
    soft.load_state_dict(base.state_dict())
    x = _picture(96, 128)
    x[..., 24:72, 104:120] = torch.tensor([-0.8, 0.6, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        _, _, ink = soft.eval()(x, parts=True)
        steady.edges = _Map(1.0)
        _, _, ink_all = steady(x, parts=True)
        steady.edges = _Map(0.0)
        _, _, ink_none = steady(x, parts=True)
    assert float(ink.sum()) > 20
    assert torch.allclose(ink_all, ink, atol=1e-6) and torch.allclose(ink_none, 0.5 * ink, atol=1e-6)


@pytest.mark.slow  # ~5 s on the 2-core CPU (an export and its check)
def test_steady_exports_to_onnx_and_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")

    from vidtoon.engines.onnx_export import FP32_ATOL, export_onnx

    net = load_generator("steady")
    assert export_onnx(net, tmp_path / "steady.onnx").max_abs_diff <= FP32_ATOL
    session = ort.InferenceSession(str(tmp_path / "steady.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((72, 100), (400, 424)):  # below and above 360 lines (the lines' size band is read in the graph)
        x = _picture(h, w)
        x[..., h // 4:h // 2, w // 2:w // 2 + 16] = torch.tensor([-0.8, 0.6, 0.3]).view(1, 3, 1, 1)
        x = torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1  # on the uint8 grid, as the engines feed it
        with torch.inference_mode():
            ref = net(x).numpy()
        out = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(out - ref).max() <= FP32_ATOL


def test_the_students_nearby_map_is_a_local_maximum_of_its_map() -> None:
    torch.manual_seed(0)
    net = EdgeStudent().eval()
    for p in net.parameters():
        p.data.normal_(0.0, 0.3)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        p, near = net(x), net.nearby(x)
    assert near.shape == p.shape == (1, 1, 64, 96)
    assert float((p - near).max()) < 0.02  # never much below the map itself ...
    assert float((near - p).mean()) > 0.01  # ... and above it beside its ridges
