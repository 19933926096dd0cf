"""``vidtoon image``: EXIF orientation, alpha, folders, formats, bad input, atomic writes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidtoon.models import export_generator
from vidtoon.networks.fast import FastGenerator
from clirun import run_cli as run


def _tiny_model(path: Path, perturb: bool) -> Path:
    torch.manual_seed(0)
    net = FastGenerator(width=8, width_low=8, n_res=1)
    if perturb:
        # FastGenerator starts at identity (zeroed last conv): move it so the output visibly differs
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.2)
    return export_generator(net, "fast", path)


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("m") / "identity.pt", perturb=False)


@pytest.fixture(scope="module")
def toon_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("m") / "toon.pt", perturb=True)




def _picture(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = x * 255 // (w - 1)
    img[..., 1] = y * 255 // (h - 1)
    img[: h // 3, : w // 3] = (255, 255, 255)  # a white block marks the top-left corner
    return img


def test_exif_orientation_is_applied(tmp_path: Path, identity_model: Path, capsys) -> None:
    pixels = _picture(64, 32)  # stored landscape
    src = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise
    exif[0x010F] = "TestCam"  # Make: must survive
    Image.fromarray(pixels).save(src, quality=98, exif=exif)

    code, _, err = run(["image", str(src), "--model", str(identity_model), "--engine", "torch"], capsys)
    assert code == 0, err
    out = tmp_path / "rotated_toon.jpg"
    with Image.open(out) as im:
        assert im.size == (32, 64)  # upright: portrait
        assert im.getexif().get(0x0112) in (None, 1)  # no rotation left for viewers to apply again
        assert im.getexif().get(0x010F) == "TestCam"
        got = np.asarray(im.convert("RGB")).astype(int)
    # identity model: the output is the picture turned clockwise (the white block is now top-right)
    want = np.rot90(pixels, k=-1).astype(int)
    assert np.abs(got - want).mean() < 6
    assert got[:10, -10:].min() > 200 and got[:10, :10].min() < 200


def test_rgba_png_keeps_alpha_and_changes_colour(tmp_path: Path, toon_model: Path, capsys) -> None:
    rgb = _picture(40, 30)
    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    src = tmp_path / "sprite.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)

    code, _, err = run(["image", str(src), "--model", str(toon_model)], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "sprite_toon.png") as im:
        assert im.mode == "RGBA" and im.size == (40, 30)
        arr = np.asarray(im)
    assert np.array_equal(arr[..., 3], alpha)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sprite_toon.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not a private temp file
    assert np.abs(arr[..., :3].astype(int) - rgb.astype(int)).mean() > 3  # the model did something


def test_rgba_to_jpeg_is_flattened_with_warning(tmp_path: Path, toon_model: Path, capsys) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 4), np.uint8), "RGBA").save(src)  # fully transparent
    code, _, err = run(["image", str(src), "-o", str(tmp_path / "flat.jpg"), "--model", str(toon_model)], capsys)
    assert code == 0, err
    assert "flattened onto white" in err
    with Image.open(tmp_path / "flat.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert np.asarray(im).min() > 240  # transparent became white


def test_folder_recursive_mirrors_and_skips_non_images(tmp_path: Path, toon_model: Path, capsys) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(_picture(24, 16)).save(src / "a.jpg")
    Image.fromarray(_picture(24, 16)).save(src / "b.png")
    Image.fromarray(_picture(24, 16)).save(src / "c.webp")
    Image.fromarray(_picture(16, 24)).save(src / "sub" / "d.jpg")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    code, _, err = run(["image", str(src), "-o", str(out), "--model", str(toon_model)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_toon.jpg", "b_toon.png", "c_toon.webp"]

    code, _, err = run(["image", str(src), "-r", "-o", str(out), "--model", str(toon_model)], capsys)
    assert code == 1  # the first three exist now
    assert "3 of 4 images failed" in err and "--overwrite" in err
    assert (out / "sub" / "d_toon.jpg").is_file()  # the new one was still done
    with Image.open(out / "c_toon.webp") as im:
        assert im.format == "WEBP" and im.size == (24, 16)

    code, _, err = run(["image", str(src), "-r", "-o", str(out), "--overwrite", "--model", str(toon_model)], capsys)
    assert code == 0, err
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


def test_folder_scan_skips_previous_outputs(tmp_path: Path, toon_model: Path, capsys) -> None:
    Image.fromarray(_picture(24, 16)).save(tmp_path / "a.jpg")
    assert run(["image", str(tmp_path), "--model", str(toon_model)], capsys)[0] == 0
    code, _, err = run(["image", str(tmp_path), "--model", str(toon_model), "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a_toon.jpg"]


def test_max_side(tmp_path: Path, toon_model: Path, capsys) -> None:
    Image.fromarray(_picture(200, 100)).save(tmp_path / "big.png")
    code, _, err = run(["image", str(tmp_path / "big.png"), "--max-side", "50", "--model", str(toon_model)], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "big_toon.png") as im:
        assert im.size == (50, 25)


def test_bad_inputs(tmp_path: Path, toon_model: Path, capsys) -> None:
    bad = tmp_path / "fake.jpg"
    bad.write_bytes(b"this is not a jpeg")
    before = sorted(tmp_path.iterdir())
    code, _, err = run(["image", str(bad), "--model", str(toon_model)], capsys)
    assert code == 1
    assert err.startswith("Error:") and "cannot read" in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before

    code, _, err = run(["image", str(tmp_path / "missing.png"), "--model", str(toon_model)], capsys)
    assert code == 1 and "does not exist" in err

    Image.fromarray(_picture(8, 8)).save(tmp_path / "ok.png")
    code, _, err = run(["image", str(tmp_path / "ok.png"), "-o", str(tmp_path / "x.gif"), "--model", str(toon_model)], capsys)
    assert code == 1 and ".jpg, .png or .webp" in err
    assert not (tmp_path / "x.gif").exists()

    # several images and -o that names one image file: refused (it became a folder named one.jpg)
    Image.fromarray(_picture(8, 8)).save(tmp_path / "ok2.png")
    code, _, err = run(["image", str(tmp_path / "ok.png"), str(tmp_path / "ok2.png"), "-o",
                        str(tmp_path / "dn" / "one.jpg"), "--model", str(toon_model)], capsys)
    assert code == 1 and "with several images -o must be a folder" in err
    assert not (tmp_path / "dn").exists()
    # an -o folder that cannot be created is refused before any image is stylized
    (tmp_path / "afile").write_text("x")
    code, _, err = run(["image", str(tmp_path / "ok.png"), str(tmp_path / "ok2.png"), "-o",
                        str(tmp_path / "afile" / "sub"), "--model", str(toon_model)], capsys)
    assert code == 1 and "is a file" in err and err.count("Error") == 1


def test_a_video_given_to_image_is_pointed_to_convert(tmp_path: Path, toon_model: Path, capsys) -> None:
    from mediagen import make_video

    clip = make_video(tmp_path / "clip.mp4", frames=3)
    before = sorted(tmp_path.iterdir())
    code, _, err = run(["image", str(clip), "--model", str(toon_model)], capsys)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("Error:") and "is a video" in err and f"vidtoon convert {clip}" in err
    assert sorted(tmp_path.iterdir()) == before


def test_load_image_palette_and_grey16(tmp_path: Path) -> None:
    from vidtoon.images import load_image

    p = Image.new("P", (4, 4))
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    rgb, alpha, _ = load_image(tmp_path / "p.png")
    assert alpha is not None and alpha[0, 0] == 255 and alpha[1, 1] == 0
    assert tuple(rgb[0, 0]) == (255, 0, 0)

    grey = Image.fromarray(np.full((4, 4), 65535 // 2, np.uint16))  # I;16 mid-grey
    grey.save(tmp_path / "g.png")
    rgb, alpha, _ = load_image(tmp_path / "g.png")
    assert alpha is None and abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_quiet_prints_nothing_not_even_a_first_export(tmp_path: Path, toon_model: Path, capsys,
                                                      monkeypatch) -> None:
    """Issue 20: `vidtoon image` had no --quiet, and the ONNX export's lines printed whatever the command."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("VIDTOON_CACHE_DIR", str(tmp_path / "cache"))  # a first run: the model is exported
    Image.fromarray(_picture(40, 30)).save(tmp_path / "a.png")
    code, out, err = run(["image", str(tmp_path / "a.png"), "-q", "--engine", "onnxruntime", "--model",
                          str(toon_model)], capsys)
    assert code == 0, err
    assert (out, err) == ("", "") and (tmp_path / "a_toon.png").is_file()
    assert list((tmp_path / "cache" / "onnx").iterdir())  # it did export
