"""The conversion pipeline end to end through the Python API: timing, metadata, audio, subtitles, cuts."""
from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import leftovers, packets, video_pts
from mediagen import frame_image, make_video

from vidtoon.errors import VidtoonError
from vidtoon.pipeline import convert


def _convert(src: Path, out: Path | None, engine, **kw):  # type: ignore[no-untyped-def]
    return convert(src, out, engine=engine, **kw)


def _stream_facts(path: Path) -> list[tuple[str, str]]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.codec.canonical_name) for s in c.streams]


def _audio_duration(path: Path, index: int = 0) -> float:
    """Seconds of decoded audio samples in audio track ``index``."""
    with av.open(str(path)) as c:
        s = c.streams.audio[index]
        return sum(f.samples for f in c.decode(s)) / s.rate


def test_basic_mp4_keeps_timing_size_and_copies_audio(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=24, size=(64, 48))
    out = tmp_path / "out.mp4"
    result = _convert(src, out, tiny_engine)

    assert result.output == out and out.is_file()
    assert result.frames == 24 and result.decode_errors == 0 and result.warnings == []
    assert result.size_bytes == out.stat().st_size
    assert video_pts(out) == video_pts(src)
    assert _stream_facts(out) == [("video", "h264"), ("audio", "aac")]
    with av.open(str(src)) as a, av.open(str(out)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert (vb.width, vb.height) == (64, 48)
        assert vb.codec_context.pix_fmt == "yuv420p"
        assert vb.average_rate == va.average_rate == 25
        assert abs(float(vb.duration * vb.time_base) - float(va.duration * va.time_base)) <= 1 / 25
        aa, ab = a.streams.audio[0], b.streams.audio[0]
        assert (ab.rate, ab.layout.name, ab.channels) == (aa.rate, "stereo", 2)
        # the picture really went through the network: a perturbed generator changes it
        fa = next(a.decode(va)).to_ndarray(format="rgb24").astype(int)
        fb = next(b.decode(vb)).to_ndarray(format="rgb24").astype(int)
        assert np.abs(fa - fb).mean() > 2.0
    # copied audio: the very same bytes, packet for packet, and the same samples at the same times
    assert packets(out, 1) == packets(src, 1)
    assert _audio_duration(out) == _audio_duration(src)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert b.streams.audio[0].start_time * b.streams.audio[0].time_base == \
            a.streams.audio[0].start_time * a.streams.audio[0].time_base
    assert leftovers(tmp_path) == []


def test_identity_network_gives_back_the_picture(tmp_path: Path, identity_engine) -> None:
    # YUV -> RGB -> YUV with matching matrices loses only rounding (swscale's fast path: about one level);
    # a wrong matrix (BT.709 vs 601) or range (full vs limited) gives 6-7 levels on this picture
    src = make_video(tmp_path / "in.mp4", frames=6, size=(64, 48), audio=None)
    out = _convert(src, tmp_path / "out.mp4", identity_engine, crf=0, preset="ultrafast").output
    with av.open(str(src)) as a, av.open(str(out)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0), strict=True):
            diff = np.abs(fa.to_ndarray(format="rgb24").astype(int) - fb.to_ndarray(format="rgb24").astype(int))
            assert diff.mean() < 3.0


def test_variable_frame_rate_pts_survive(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "vfr.mp4", frames=24, vfr=True)
    gaps = np.diff(video_pts(src))
    assert len(set(gaps.tolist())) > 1  # the clip really is VFR
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    assert video_pts(out) == video_pts(src)


def test_ntsc_rate_stays_exact(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "ntsc.mp4", frames=30, fps=Fraction(30000, 1001))
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == Fraction(30000, 1001)
        times = [f.pts * f.time_base for f in c.decode(v)]
    assert times == [Fraction(i * 1001, 30000) for i in range(30)]


def test_rotation_and_sample_aspect_ratio_kept(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "rot.mp4", frames=8, rotation=90, sar=Fraction(4, 3))
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.sample_aspect_ratio == Fraction(4, 3)
        frame = next(c.decode(v))
        assert frame.rotation == 90
        assert (frame.width, frame.height) == (64, 48)  # stored as coded, the player rotates


def _color_tags(path: Path) -> tuple[int, int, int, int]:
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        return f.color_range, f.colorspace, f.color_primaries, f.color_trc


def test_full_color_range_and_bt709_tags_kept(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "jpeg.mp4", frames=4, audio=None, color_range=2)
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    with av.open(str(out)) as c:
        assert next(c.decode(video=0)).color_range == 2


def test_every_color_tag_kept(tmp_path: Path, tiny_engine) -> None:
    # range, matrix, primaries and transfer each read back; distinct values, so a swapped copy shows too
    # (full range; BT.709 matrix; BT.2020 primaries; sRGB transfer)
    tags = (2, 1, 9, 13)
    src = make_video(tmp_path / "tagged.mp4", frames=4, audio=None, color_range=tags[0], colors=tags[1:])
    assert _color_tags(src) == tags  # the input states them
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    assert _color_tags(out) == tags


@pytest.mark.parametrize("size", [(63, 47), (65, 48)])
def test_odd_sizes_kept_exactly(tmp_path: Path, tiny_engine, size: tuple[int, int]) -> None:
    src = make_video(tmp_path / "odd.mp4", frames=6, size=size)
    result = _convert(src, tmp_path / "out.mp4", tiny_engine)
    with av.open(str(result.output)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == size
        assert v.codec_context.pix_fmt == "yuv444p"
        assert sum(1 for _ in c.decode(v)) == 6
    assert any("odd size" in w for w in result.warnings)


def test_pcm_in_mkv_reencoded_to_aac_for_mp4(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "pcm.mkv", frames=25, audio="pcm_s16le", audio_rate=32000)
    result = _convert(src, tmp_path / "out.mp4", tiny_engine)
    with av.open(str(result.output)) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.name, a.rate, a.channels) == ("aac", 32000, 2)
    assert abs(_audio_duration(result.output) - _audio_duration(src)) <= 1 / 25
    assert any("re-encoded to AAC" in w for w in result.warnings)


def test_pcm_in_mkv_default_output_keeps_mkv_and_copies(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "pcm.mkv", frames=10, audio="pcm_s16le")
    result = _convert(src, None, tiny_engine)
    assert result.output == tmp_path / "pcm_toon.mkv"
    assert _stream_facts(result.output) == [("video", "h264"), ("audio", "pcm_s16le")]
    assert packets(result.output, 1) == packets(src, 1)


def test_surround_opus_becomes_surround_aac_in_mp4(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "surround.mkv", frames=12, audio="libopus", audio_layout="5.1")
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.name, a.rate, a.channels) == ("aac", 48000, 6)
        assert a.layout.name.startswith("5.1")


def test_webm_vorbis_default_output_is_mkv_with_audio_copied(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "clip.webm", frames=10, codec="libvpx-vp9", audio="libvorbis")
    result = _convert(src, None, tiny_engine)
    assert result.output == tmp_path / "clip_toon.mkv"
    assert _stream_facts(result.output) == [("video", "h264"), ("audio", "vorbis")]
    assert packets(result.output, 1) == packets(src, 1)


@pytest.mark.parametrize("codec", [None, "libvpx-vp9"])
def test_aac_into_webm_becomes_opus_and_the_codec_follows_the_container(tmp_path: Path, tiny_engine,
                                                                         codec: str | None) -> None:
    """Issue 20: the audio fallback was always AAC (WebM refused it: 'unexpected internal error'), and without
    --codec a .webm output was refused (libx264 for every container)."""
    src = make_video(tmp_path / "in.mp4", frames=12, audio="aac", audio_rate=44100)
    result = _convert(src, tmp_path / "out.webm", tiny_engine, codec=codec)
    assert _stream_facts(result.output) == [("video", "vp9"), ("audio", "opus")]
    with av.open(str(result.output)) as c:
        assert (c.streams.audio[0].rate, c.streams.audio[0].channels) == (48000, 2)  # Opus has no 44.1 kHz
    assert abs(_audio_duration(result.output) - _audio_duration(src)) <= 0.05
    assert "audio track 1 of 1: a .webm file cannot hold aac audio, re-encoded to Opus (48000 Hz, stereo)" \
        in result.warnings


def test_webm_audio_falls_back_to_vorbis_without_opus(monkeypatch) -> None:
    from vidtoon.video import containers

    real = av.Codec

    def no_opus(name: str, mode: str = "r"):  # type: ignore[no-untyped-def]
        if "opus" in name:
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av, "Codec", no_opus)
    encoder = containers.audio_encoder("webm")
    assert encoder.label == "Vorbis" and encoder.name in ("libvorbis", "vorbis")
    assert containers.audio_encoder("mp4").name == "aac" and containers.audio_encoder("mkv").name == "aac"


def test_audio_first_stream_order(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "af.mp4", frames=20, audio_first=True)
    assert _stream_facts(src)[0][0] == "audio"
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    assert _stream_facts(out) == [("video", "h264"), ("audio", "aac")]
    assert video_pts(out) == video_pts(src)
    assert packets(out, 1) == packets(src, 0)


def test_all_audio_tracks_kept_in_order(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "two.mp4", frames=12, audio="libmp3lame", audio_tracks=2)
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    assert _stream_facts(out) == [("video", "h264"), ("audio", "mp3"), ("audio", "mp3")]
    assert packets(out, 1) == packets(src, 1)
    assert packets(out, 2) == packets(src, 2)


def test_no_audio_input_and_no_audio_option(tmp_path: Path, tiny_engine) -> None:
    silent = make_video(tmp_path / "silent.mp4", frames=8, audio=None)
    assert _stream_facts(_convert(silent, tmp_path / "a.mp4", tiny_engine).output) == [("video", "h264")]
    loud = make_video(tmp_path / "loud.mp4", frames=8)
    assert _stream_facts(_convert(loud, tmp_path / "b.mp4", tiny_engine, audio=False).output) == [("video", "h264")]


def test_audio_is_interleaved_with_video(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "long.mp4", frames=50)
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    with av.open(str(out)) as c:
        order = [p.stream.type for p in c.demux() if p.size]
    first_audio = order.index("audio")
    last_video = len(order) - 1 - order[::-1].index("video")
    # audio spread through the file, not appended after the video
    assert first_audio < len(order) // 4
    assert last_video > len(order) * 3 // 4


def test_subtitles_copied_into_mp4_and_default_output_keeps_them(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "subs.mp4", frames=10, subtitles=True)
    out = _convert(src, tmp_path / "out.mp4", tiny_engine).output
    assert ("subtitle", "mov_text") in _stream_facts(out)
    # the MP4 muxer writes empty samples (b"\0\0") into the gaps between cues: compare the cues
    cues = [p for p in packets(src, 2) if p != b"\x00\x00"]
    assert cues == [b"\x00\x05hello", b"\x00\x05world"]
    assert [p for p in packets(out, 2) if p != b"\x00\x00"] == cues

    # SubRip goes into MP4 as mov_text (tests/test_subtitles.py); the default output keeps it untouched, in Matroska
    srt = make_video(tmp_path / "subs.mkv", frames=10, subtitles=True)
    result = _convert(srt, None, tiny_engine)
    assert ("subtitle", "subrip") in _stream_facts(result.output)
    assert packets(result.output, 2) == packets(srt, 2)


def test_start_end_cut_video_and_audio(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "cut.mp4", frames=50, fps=Fraction(25))
    result = _convert(src, tmp_path / "out.mp4", tiny_engine, start=0.4, end=1.2)
    assert result.frames == 20  # frames at 0.40 .. 1.16 s
    pts = video_pts(result.output)
    with av.open(str(result.output)) as c:
        tb = c.streams.video[0].time_base
    assert [p * tb for p in pts] == [Fraction(i, 25) for i in range(20)]
    # audio cut packet-accurately: within one AAC packet (1024 samples) of the video's 0.8 s
    assert abs(_audio_duration(result.output) - 0.8) <= 1024 / 44100 + 1e-6
    with av.open(str(result.output)) as c:
        first_audio = next(p for p in c.demux(c.streams.audio[0]) if p.size)
        assert 0 <= float(first_audio.pts * first_audio.time_base) < 1024 / 44100


def test_start_beyond_end_of_video_refused(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "short.mp4", frames=10)
    with pytest.raises(VidtoonError, match="past the end"):
        _convert(src, tmp_path / "out.mp4", tiny_engine, start=5.0)
    assert not (tmp_path / "out.mp4").exists()


def test_max_side_downscales_keeping_aspect(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "big.mp4", frames=4, size=(160, 90))
    out = _convert(src, tmp_path / "out.mp4", tiny_engine, max_side=64).output
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (64, 36)


def test_partial_last_batch_keeps_order(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=13, audio=None, pattern="moving")
    out = _convert(src, tmp_path / "out.mp4", tiny_engine, batch_size=5, crf=0).output
    # compare every output frame with the stylized input frame it should be
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    with av.open(str(src)) as c:
        want = tiny_engine.infer(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])).astype(int)
    assert len(got) == 13
    for i in range(13):
        errors = [np.abs(got[i] - want[j]).mean() for j in range(13)]
        assert int(np.argmin(errors)) == i


def test_hevc_encoder(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    out = _convert(src, tmp_path / "out.mp4", tiny_engine, codec="libx265").output
    assert _stream_facts(out)[0] == ("video", "hevc")
    assert video_pts(out) == video_pts(src)


def test_stabilize_runs_in_order(tmp_path: Path, tiny_engine) -> None:
    pytest.importorskip("vidtoon.stabilize")
    src = make_video(tmp_path / "in.mp4", frames=12, audio=None)
    result = _convert(src, tmp_path / "out.mp4", tiny_engine, stabilize=True)
    assert result.frames == 12
    assert video_pts(result.output) == video_pts(src)


def test_interrupt_removes_temp_file_and_stops_threads(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=40)

    def interrupt(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _convert(src, tmp_path / "out.mp4", tiny_engine, batch_size=2, progress=interrupt)
    assert not (tmp_path / "out.mp4").exists()
    assert leftovers(tmp_path) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("vidtoon-")]


def test_engine_failure_leaves_nothing(tmp_path: Path) -> None:
    from vidtoon.engines.base import Engine

    class Failing(Engine):
        name = "failing"
        calls = 0

        def infer(self, frames: np.ndarray) -> np.ndarray:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("boom")
            return frames

    src = make_video(tmp_path / "in.mp4", frames=20)
    with pytest.raises(RuntimeError, match="boom"):
        _convert(src, tmp_path / "out.mp4", Failing(), batch_size=4)
    assert not (tmp_path / "out.mp4").exists()
    assert leftovers(tmp_path) == []


def test_progress_reports_up_to_the_frame_count(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=17)
    seen: list[tuple[int, int | None]] = []
    _convert(src, tmp_path / "out.mp4", tiny_engine, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (17, 17)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[0][1] == 17  # the estimate from the container


def test_mediagen_frames_differ() -> None:
    # the synthetic clips must move, or frame-order tests would pass on shuffled output
    a, b = frame_image(0, 64, 48), frame_image(1, 64, 48)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5
