"""Subtitle tracks: text subtitles converted to the output's text format (mov_text in MP4), bitmap ones
dropped where the container cannot hold them, and everything copied untouched where it can."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import leftovers, packets
from mediagen import add_subtitles, make_video

from vidtoon.pipeline import convert

#: (start ms, end ms) of the cues every test writes: a gap between the first two, the last two back to back
_TIMES = [(100, 380), (520, 700), (700, 960)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=25)


def _cues(path: Path) -> list[tuple[Fraction, Fraction, bytes]]:
    """(start s, end s, payload) of every non-empty cue of the first subtitle track, as read back.

    Times count from the first video frame: Matroska shifts a whole file whose video starts with
    negative decode times (B-frames), which moves every track alike.
    """
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        first = next(c.decode(v))
        zero = first.pts * first.time_base
        c.seek(0)
        s = c.streams.subtitles[0]
        return [(p.pts * p.time_base - zero, (p.pts + p.duration) * p.time_base - zero, bytes(p))
                for p in c.demux(s) if p.size and bytes(p) != b"\x00\x00"]  # MP4 fills gaps with empty cues


def _mov_text(payload: bytes) -> str:
    """The text of a mov_text sample: a 16-bit length, the UTF-8 text, then style boxes."""
    n = int.from_bytes(payload[:2], "big")
    return payload[2 : 2 + n].decode()


def _decoded(path: Path) -> list[bytes]:
    """The ASS dialogue text FFmpeg's decoder makes of each cue (styling as ASS override tags)."""
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        sets = [s.decode2(p) for p in c.demux(s) if p.size]
        return [r.ass.split(b",", 8)[-1] for cue in sets if cue is not None for r in cue.rects if r.ass]


def _codec(path: Path) -> str:
    with av.open(str(path)) as c:
        return c.streams.subtitles[0].codec_context.codec.canonical_name


@pytest.mark.parametrize("codec, texts", [
    ("subrip", ["hello <i>there</i>", "line one\nline two", "ünïcödé & <b>bold</b>"]),
    ("webvtt", ["hello <i>there</i>", "line one\nline two", "ünïcödé & <b>bold</b>"]),
    ("ass", [r"{\i1}hello{\i0} there", r"line one\Nline two", r"{\pos(10,20)\b1}ünïcödé & bold"]),
])
def test_text_subtitles_become_mov_text_in_mp4(tmp_path: Path, clip: Path, tiny_engine, codec: str,
                                                texts: list[str]) -> None:
    src = add_subtitles(clip, tmp_path / f"{codec}.mkv", codec, [(a, b, t) for (a, b), t in zip(_TIMES, texts)])
    result = convert(src, tmp_path / "out.mp4", engine=tiny_engine)

    assert _codec(result.output) == "mov_text"
    before, after = _cues(src), _cues(result.output)
    # the same cues at the same times, to the millisecond (both containers count in 1/1000 s)
    assert [(a, b) for a, b, _ in after] == [(a, b) for a, b, _ in before]
    assert len(after) == 3
    # the text, markup turned into mov_text styles (ASS positioning has no mov_text equivalent)
    assert [_mov_text(p) for _, _, p in after] == ["hello there", "line one\nline two", "ünïcödé & bold"]
    italic, _, bold = _decoded(result.output)
    assert rb"{\i1}" in italic and rb"{\b1}" in bold
    lost = [w for w in result.warnings if "subtitle" in w]
    assert lost == (["subtitle track 1 of 1: a .mp4 file cannot hold ass subtitles, converted to mov_text "
                     "(ASS positioning and effects are lost)"] if codec == "ass" else [])
    assert leftovers(tmp_path) == []


def test_subtitles_cut_with_start_and_end(tmp_path: Path, clip: Path, tiny_engine) -> None:
    src = add_subtitles(clip, tmp_path / "srt.mkv", "subrip", [(a, b, f"cue {i}") for i, (a, b) in enumerate(_TIMES)])
    start = float(_cues(src)[1][0])  # from the second cue on
    out = convert(src, tmp_path / "out.mp4", engine=tiny_engine, start=start).output
    assert [(_mov_text(p), b - a) for a, b, p in _cues(out)] == [
        ("cue 1", Fraction(180, 1000)), ("cue 2", Fraction(260, 1000))]
    assert _cues(out)[0][0] == 0  # shifted with the video


def test_mkv_output_keeps_subrip_untouched(tmp_path: Path, clip: Path, tiny_engine) -> None:
    src = add_subtitles(clip, tmp_path / "srt.mkv", "subrip", [(a, b, "<i>cue</i>") for a, b in _TIMES])
    result = convert(src, tmp_path / "out.mkv", engine=tiny_engine)
    assert _codec(result.output) == "subrip"
    assert packets(result.output, 2) == packets(src, 2)
    assert _cues(result.output) == _cues(src)
    assert not any("subtitle" in w for w in result.warnings)


def test_mov_text_into_mkv_becomes_ass(tmp_path: Path, clip: Path, tiny_engine) -> None:
    src = add_subtitles(clip, tmp_path / "tx3g.mp4", "mov_text", [(a, b, f"cue {i}") for i, (a, b) in enumerate(_TIMES)])
    out = convert(src, tmp_path / "out.mkv", engine=tiny_engine).output
    assert _codec(out) == "ass"
    assert [(a, b) for a, b, _ in _cues(out)] == [(a, b) for a, b, _ in _cues(src)]
    assert _decoded(out) == [b"cue 0", b"cue 1", b"cue 2"]


def test_bitmap_subtitles_dropped_for_mp4_kept_in_mkv(tmp_path: Path, clip: Path, tiny_engine) -> None:
    src = add_subtitles(clip, tmp_path / "dvd.mkv", "dvd_subtitle", [(a, b, "bitmap") for a, b in _TIMES])
    result = convert(src, tmp_path / "out.mp4", engine=tiny_engine)
    with av.open(str(result.output)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    assert ("subtitle track 1 of 1 dropped: a .mp4 file cannot hold dvd_subtitle subtitles "
            "(use a .mkv output to keep it)") in result.warnings
    kept = convert(src, tmp_path / "out.mkv", engine=tiny_engine).output
    assert _codec(kept) == "dvd_subtitle" and packets(kept, 2) == packets(src, 2)
