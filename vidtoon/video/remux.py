"""Audio and subtitle tracks: copied untouched, re-encoded where the container demands it, or dropped.

Every audio track of the input is kept, in input order. A track is copied packet for packet (bytes
identical, timestamps only shifted by ``--start``) whenever the output container holds its codec (see
:mod:`vidtoon.video.containers`); otherwise it is re-encoded to the container's own audio codec (AAC; Opus for
WebM, Vorbis where Opus is missing) at the same sample rate where the codec allows it (Opus: 48 kHz) and the
same channel layout (5.1 stays 5.1). Subtitles are copied where the container holds them; other text subtitles are
converted to the container's text format (SubRip, ASS or WebVTT to mov_text for MP4/MOV, see
:mod:`vidtoon.video.subtitles`) and bitmap subtitles it cannot hold (PGS, DVD) are dropped with a warning.
A track whose header is damaged (0 channels, an unknown codec: see ``StreamInfo.problem``) is dropped with
a warning naming it, and the video converts without it, as ffmpeg would.

``--start``/``--end`` on copied tracks are packet-accurate: a packet is kept when its start time lies in
[start, end), and shifted by the same offset as the video, so sync is exact; the audio may begin up to one
packet after the first video frame (AAC at 48 kHz: 21 ms) and end up to one packet after the last. Bytes
stay untouched, which a sample-accurate cut could only achieve by re-encoding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import av

from vidtoon.video.containers import AudioEncoder, audio_encoder, audio_fits, subtitle_target
from vidtoon.video.reader import StreamInfo, VideoInfo
from vidtoon.video.subtitles import TextSubtitleTrack

#: channel count -> layout for tracks whose layout has no channel order ("2 channels" in some PCM/MKV)
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class TrackPlan:
    """What happens to one non-video input stream."""

    stream: StreamInfo
    action: str  # "copy", "reencode" (audio with ``encoder``, subtitles to ``codec``) or "drop"
    reason: str = ""  # why, for reencode/drop (shown as a warning)
    codec: str = ""  # the text format a re-encoded subtitle track is written in
    name: str = ""  # the track as a user counts it, for messages: "audio track 1 of 2"
    encoder: AudioEncoder | None = None  # the encoder of a re-encoded audio track


def track_name(stream: StreamInfo, info: VideoInfo) -> str:
    """``stream`` as a user counts tracks: "audio track 1 of 1", "subtitle track 2 of 3" (not its stream index,
    which counts the video too)."""
    same = info.audio if stream.type == "audio" else info.subtitles
    position = next((i for i, s in enumerate(same, 1) if s.index == stream.index), 0)
    return f"{stream.type} track {position} of {len(same)}"


def plan_tracks(info: VideoInfo, container: str, audio: bool) -> tuple[list[TrackPlan], list[str]]:
    """Decide the fate of every audio and subtitle stream for ``container``; returns (plans, warnings)."""
    plans: list[TrackPlan] = []
    warnings: list[str] = []
    for s in info.audio + info.subtitles:
        name = track_name(s, info)
        target = subtitle_target(container, s.codec) if s.type == "subtitle" else None
        if s.type == "audio" and not audio:
            plans.append(TrackPlan(s, "drop", "--no-audio", name=name))
        elif s.problem:
            plans.append(TrackPlan(s, "drop", s.problem, name=name))
            warnings.append(f"{name} ({s.codec}) dropped: {s.problem}")
        elif s.type == "audio" and audio_fits(container, s.codec):
            plans.append(TrackPlan(s, "copy", name=name))
        elif s.type == "audio":
            why = f"a .{container} file cannot hold {s.codec} audio"
            encoder = audio_encoder(container)
            plans.append(TrackPlan(s, "reencode", why, name=name, encoder=encoder))
            warnings.append(f"{name}: {why}, re-encoded to {encoder.label} ({encoder.rate_for(s.rate)} Hz, {s.layout})")
        elif target == s.codec:
            plans.append(TrackPlan(s, "copy", name=name))
        elif target is not None:
            why = f"a .{container} file cannot hold {s.codec} subtitles"
            plans.append(TrackPlan(s, "reencode", why, codec=target, name=name))
            if s.codec in ("ass", "ssa") and target != "ass":  # text and timing always survive, styling may not
                warnings.append(f"{name}: {why}, converted to {target} (ASS positioning and effects are lost)")
        else:
            why = f"a .{container} file cannot hold {s.codec} subtitles"
            plans.append(TrackPlan(s, "drop", why, name=name))
            warnings.append(f"{name} dropped: {why} (use a .mkv output to keep it)")
    return plans, warnings


class CopyTrack:
    """Copies the packets of one input stream into a stream made from it as a template.

    Timestamps that go backwards (damaged files) are moved forward just past the previous packet, as
    ffmpeg does, because muxers refuse decreasing ones; :meth:`damage` reports how many were.
    """

    def __init__(self, out: av.container.OutputContainer, source: av.stream.Stream, name: str = "") -> None:
        self.out = out
        self.index = source.index
        self.kind = source.type
        self.name = name or f"{source.type} track"  # as messages name it: "audio track 1 of 2"
        self.stream = out.add_stream_from_template(source)
        self.last_dts: int | None = None  # in the input stream's time base
        self.retimed = 0

    def push(self, packet: av.Packet) -> None:
        """Mux one input packet untouched (its timestamps are rescaled to the output stream by PyAV)."""
        last = self.last_dts
        if packet.dts is not None and last is not None:
            # subtitle cues may share a time, audio packets may not; muxers refuse both going back
            if packet.dts < last or (packet.dts == last and self.kind != "subtitle"):
                packet.dts = last + 1
                if packet.pts is not None and packet.pts < packet.dts:
                    packet.pts = packet.dts
                self.retimed += 1
        if packet.dts is not None:
            self.last_dts = packet.dts
        packet.stream = self.stream
        self.out.mux(packet)

    def flush(self) -> None:
        """Nothing is buffered here."""

    def damage(self) -> str:
        """A warning about the repairs this track needed, or ""."""
        if not self.retimed:
            return ""
        return f"{self.name} is damaged: {self.retimed} packets went back in time (moved forward)"


class AudioTrack:
    """Decodes one input audio stream and re-encodes it with ``encoder`` (the container's own codec: AAC, or
    Opus/Vorbis for WebM) at the same channel layout and the same rate where the codec takes it.

    Damaged input is skipped rather than fatal: packets the decoder refuses, and decoded frames whose
    format differs from the first one (the encoder cannot change mid-stream), are counted and left out;
    a frame whose timestamp jumps back before the end of the previous one is moved to follow it.
    """

    def __init__(self, out: av.container.OutputContainer, source: av.audio.stream.AudioStream,
                 encoder: AudioEncoder | None = None, name: str = "") -> None:
        self.out = out
        self.source = source
        self.index = source.index
        self.name = name or "audio track"
        encoder = encoder or AudioEncoder("aac", "AAC", {})
        ctx = source.codec_context
        layout = ctx.layout.name
        if "channels" in layout:  # unordered layout: give the encoder the standard one for that count
            layout = _DEFAULT_LAYOUTS.get(ctx.layout.nb_channels, layout)
        # the encoder converts sample format and layout and re-frames to its frame size itself (PyAV
        # runs an AudioResampler inside encode()), carrying the decoded frames' timestamps through
        self.stream = out.add_stream(encoder.name, rate=encoder.rate_for(ctx.sample_rate), layout=layout,
                                     options=dict(encoder.options))
        self.shape: tuple[str, int, int] | None = None  # (format, channels, rate) of the first decoded frame
        self.next_pts: int | None = None  # in samples: where the previous frame ended
        self.lost = 0
        self.retimed = 0

    def push(self, packet: av.Packet | None) -> None:
        """Decode one input packet (None: drain the decoder) and mux the encoded packets it completes."""
        try:
            frames = self.source.decode(packet)
        except av.error.EOFError:
            return  # already drained
        except av.FFmpegError:
            self.lost += 1
            return
        for frame in frames:
            shape = (frame.format.name, frame.layout.nb_channels, frame.sample_rate)
            self.shape = self.shape or shape
            if shape != self.shape:
                self.lost += 1
                continue
            self._retime(frame)
            self.out.mux(self.stream.encode(frame))

    def _retime(self, frame: av.AudioFrame) -> None:
        """Move ``frame`` to the end of the previous frame when it starts clearly before it (a damaged pts).

        Overlaps within one tick of the input's time base are the rounding of its timestamps (Matroska
        stores milliseconds) and are left alone.
        """
        if frame.pts is None or not frame.time_base:
            return
        rate = frame.sample_rate
        start = frame.pts * frame.time_base * rate  # in samples
        if self.next_pts is not None and start < self.next_pts - frame.time_base * rate - 1:
            frame.pts = math.ceil(self.next_pts / (frame.time_base * rate))  # same time base: the encoder's
            start = frame.pts * frame.time_base * rate                        # resampler was set up with it
            self.retimed += 1
        self.next_pts = round(start) + frame.samples

    def flush(self) -> None:
        """Drain the decoder and the encoder."""
        self.push(None)
        self.out.mux(self.stream.encode(None))

    def damage(self) -> str:
        """A warning about the damage this track met, or ""."""
        parts = [f"{self.lost} packets or frames could not be decoded (left out)"] if self.lost else []
        parts += [f"{self.retimed} frames went back in time (moved forward)"] if self.retimed else []
        return f"{self.name} is damaged: {', '.join(parts)}" if parts else ""


def open_tracks(out: av.container.OutputContainer, source: av.container.InputContainer,
                plans: list[TrackPlan]) -> dict[int, CopyTrack | AudioTrack | TextSubtitleTrack]:
    """Add the output streams for the kept tracks, in input order; returns input index -> track."""
    tracks: dict[int, CopyTrack | AudioTrack | TextSubtitleTrack] = {}
    for plan in sorted(plans, key=lambda p: p.stream.index):
        if plan.action == "drop":
            continue
        stream = source.streams[plan.stream.index]
        if plan.action == "copy":
            tracks[plan.stream.index] = CopyTrack(out, stream, plan.name)
        elif plan.stream.type == "subtitle":
            tracks[plan.stream.index] = TextSubtitleTrack(out, stream, plan.codec, plan.name)
        else:
            tracks[plan.stream.index] = AudioTrack(out, stream, plan.encoder, plan.name)
    return tracks
