"""``--compare``: the original and the cartoon side by side (one above the other for portrait pictures)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from clirun import run_cli
from conftest import leftovers, packets, video_pts
from mediagen import make_video
from PIL import Image

from vidtoon.compare import display_transform, layout_for
from vidtoon.pipeline import convert


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]


def _shown(img: np.ndarray, matrix: tuple[int, ...] | None) -> np.ndarray:
    """The picture a player shows, by FFmpeg's definition of the display matrix: stored pixel (x, y) goes to
    (a x + c y, b x + d y), moved back into view. Independent of vidtoon.compare's table of transforms."""
    if matrix is None:
        return img
    a, b, _, c, d = (v / 65536 for v in matrix[:5])
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    x2, y2 = np.rint(a * xs + c * ys).astype(int), np.rint(b * xs + d * ys).astype(int)
    x2, y2 = x2 - x2.min(), y2 - y2.min()
    out = np.zeros((y2.max() + 1, x2.max() + 1) + img.shape[2:], img.dtype)
    out[y2, x2] = img
    return out


def _matrix(path: Path) -> tuple[int, ...] | None:
    from vidtoon.video.reader import probe

    return probe(path).display_matrix


def test_landscape_side_by_side(tmp_path: Path, tiny_engine, capsys) -> None:
    src = make_video(tmp_path / "clip.mp4", frames=12, size=(64, 48))
    # crf 0: lossless YUV, so both halves are compared at their RGB <-> YUV rounding only
    plain = convert(src, tmp_path / "plain.mp4", engine=tiny_engine, crf=0).output
    result = convert(src, None, engine=tiny_engine, crf=0, compare=True)
    out = result.output

    assert out == tmp_path / "clip_compare.mp4"
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (128, 48) and v.codec_context.pix_fmt == "yuv420p"
        assert [s.type for s in c.streams] == ["video", "audio"]
    assert result.frames == 12 and video_pts(out) == video_pts(src)
    assert packets(out, 1) == packets(src, 1)  # the audio, copied as usual
    frames, originals, toons = _frames(out), _frames(src), _frames(plain)
    assert len(frames) == len(originals) == len(toons) == 12
    for both, original, toon in zip(frames, originals, toons):
        assert np.abs(both[:, :64] - original).mean() < 3  # the input, untouched (the stabilizer is on)
        assert np.abs(both[:, 64:] - toon).mean() < 1  # the very frame a plain convert writes
        assert np.abs(both[:, 64:] - original).mean() > 5  # ... which is a cartoon
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("size, rotation, stored", [
    ((48, 64), 0, (48, 128)),  # portrait as stored: one above the other
    ((64, 48), 90, (128, 48)),  # landscape stored, shown portrait (a phone video): joined along the stored width
    ((64, 48), -90, (128, 48)),
    ((64, 48), 180, (128, 48)),  # shown upside down: the original is stored on the right
])
def test_layout_follows_the_displayed_picture(tmp_path: Path, tiny_engine, size: tuple[int, int],
                                              rotation: int, stored: tuple[int, int]) -> None:
    src = make_video(tmp_path / "clip.mp4", frames=4, size=size, rotation=rotation, audio=None)
    out = convert(src, tmp_path / "out.mp4", engine=tiny_engine, crf=0, compare=True).output
    matrix = _matrix(src)
    assert _matrix(out) == matrix  # the display matrix is kept: players turn the whole frame
    frame, original = _frames(out)[0], _frames(src)[0]
    assert frame.shape[1::-1] == stored
    shown, shown_original = _shown(frame, matrix), _shown(original, matrix)
    h, w = shown_original.shape[:2]
    if h > w:  # shown portrait: the original on top, upright
        assert shown.shape[:2] == (2 * h, w)
        first, second = shown[:h], shown[h:]
    else:  # shown landscape: the original on the left
        assert shown.shape[:2] == (h, 2 * w)
        first, second = shown[:, :w], shown[:, w:]
    assert np.abs(first - shown_original).mean() < 3
    assert np.abs(second - shown_original).mean() > 5


def test_odd_size_and_max_side(tmp_path: Path, tiny_engine) -> None:
    odd = make_video(tmp_path / "odd.mp4", frames=4, size=(63, 47), audio=None)
    result = convert(odd, tmp_path / "odd_out.mp4", engine=tiny_engine, compare=True)
    with av.open(str(result.output)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height, v.codec_context.pix_fmt) == (126, 47, "yuv444p")
    assert "126x47 is an odd size: encoded as yuv444p to keep every pixel" in result.warnings

    big = make_video(tmp_path / "big.mp4", frames=4, size=(128, 96), audio=None)
    out = convert(big, tmp_path / "big_out.mp4", engine=tiny_engine, max_side=64, compare=True).output
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (128, 48)  # each half 64x48


def test_display_transform_matches_ffmpeg_autorotation() -> None:
    # the matrices FFmpeg's av_display_rotation_set(90 / -90 / 180) and av_display_matrix_flip write
    one = 1 << 16
    ccw90 = (0, -one, 0, one, 0, 0, 0, 0, 1 << 30)
    cw90 = (0, one, 0, -one, 0, 0, 0, 0, 1 << 30)
    turn = (-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30)
    mirrored = (-one, 0, 0, 0, one, 0, 0, 0, 1 << 30)
    img = np.arange(3 * 5).reshape(3, 5)
    for matrix, name in ((None, ""), (ccw90, "cclock"), (cw90, "clock"), (turn, "hflip,vflip"),
                         (mirrored, "hflip")):
        assert display_transform(matrix) == name
        layout = layout_for(5, 3, matrix)
        # joined in display orientation, then stored: shown, the original comes first
        shown = _shown(layout.join(img, img + 100), matrix)
        first = shown[: shown.shape[0] // 2] if layout.axis == 0 else shown[:, : shown.shape[1] // 2]
        assert np.array_equal(first, _shown(img, matrix))


def test_convert_and_batch_cli(tmp_path: Path, tiny_model: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    src = make_video(tmp_path / "in" / "clip.mp4", frames=6, size=(64, 48))
    code, _, err = run_cli(["convert", src, "--model", tiny_model, "--compare", "-q"], capsys)
    assert code == 0, err
    with av.open(str(tmp_path / "in" / "clip_compare.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (128, 48)
    (tmp_path / "in" / "clip_compare.mp4").unlink()

    code, _, err = run_cli(["batch", tmp_path / "in", "--model", tiny_model, "--engine", "torch", "--compare", "-q"],
                           capsys)
    assert code == 0, err
    with av.open(str(tmp_path / "in_compare" / "clip.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (128, 48)
        assert c.streams.video[0].frames == 6


@pytest.mark.parametrize("size, joined", [((40, 24), (80, 24)), ((24, 40), (24, 80))])
def test_image_compare(tmp_path: Path, tiny_model: Path, capsys, size: tuple[int, int],
                       joined: tuple[int, int]) -> None:
    w, h = size
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "pic.png")
    args = ["image", tmp_path / "pic.png", "--model", tiny_model, "--engine", "torch"]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(args + ["--compare"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "pic_compare.png") as im:
        both = np.asarray(im)
    with Image.open(tmp_path / "pic_toon.png") as im:
        toon = np.asarray(im)
    assert both.shape[1::-1] == joined
    first, second = (both[:, :w], both[:, w:]) if joined[0] == 2 * w else (both[:h], both[h:])
    assert np.array_equal(first, rgba)  # the original, alpha included
    assert np.array_equal(second, toon)  # the plain output, alpha included
    # a folder scan does not take the before/after picture as an input
    code, _, err = run_cli(["image", tmp_path, "--model", tiny_model, "--engine", "torch", "--overwrite"], capsys)
    assert code == 0 and not (tmp_path / "pic_compare_toon.png").exists()
