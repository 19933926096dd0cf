"""Audio and subtitle tracks: copied untouched, re-encoded to AAC where the container demands it, or dropped.

Every audio track of the input is kept, in input order. A track is copied packet for packet (bytes
identical, timestamps only shifted by ``--start``) whenever the output container holds its codec (see
:mod:`vidtoon.video.containers`); otherwise it is re-encoded to AAC at the same sample rate and channel
layout (5.1 stays 5.1). Subtitles are copied where the container holds them; other text subtitles are
converted to the container's text format (SubRip, ASS or WebVTT to mov_text for MP4/MOV, see
:mod:`vidtoon.video.subtitles`) and bitmap subtitles it cannot hold (PGS, DVD) are dropped with a warning.

``--start``/``--end`` on copied tracks are packet-accurate: a packet is kept when its start time lies in
[start, end), and shifted by the same offset as the video, so sync is exact; the audio may begin up to one
packet after the first video frame (AAC at 48 kHz: 21 ms) and end up to one packet after the last. Bytes
stay untouched, which a sample-accurate cut could only achieve by re-encoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import av

from vidtoon.video.containers import FALLBACK_AUDIO, audio_fits, subtitle_target
from vidtoon.video.reader import StreamInfo, VideoInfo
from vidtoon.video.subtitles import TextSubtitleTrack

#: channel count -> layout for tracks whose layout has no channel order ("2 channels" in some PCM/MKV)
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class TrackPlan:
    """What happens to one non-video input stream."""

    stream: StreamInfo
    action: str  # "copy", "reencode" (audio to AAC, subtitles to ``codec``) or "drop"
    reason: str = ""  # why, for reencode/drop (shown as a warning)
    codec: str = ""  # the text format a re-encoded subtitle track is written in


def plan_tracks(info: VideoInfo, container: str, audio: bool) -> tuple[list[TrackPlan], list[str]]:
    """Decide the fate of every audio and subtitle stream for ``container``; returns (plans, warnings)."""
    plans: list[TrackPlan] = []
    warnings: list[str] = []
    for s in info.audio:
        if not audio:
            plans.append(TrackPlan(s, "drop", "--no-audio"))
        elif audio_fits(container, s.codec):
            plans.append(TrackPlan(s, "copy"))
        else:
            why = f"a .{container} file cannot hold {s.codec} audio"
            plans.append(TrackPlan(s, "reencode", why))
            warnings.append(f"audio track {s.index}: {why}, re-encoded to AAC ({s.rate} Hz, {s.layout})")
    for s in info.subtitles:
        target = subtitle_target(container, s.codec)
        if target == s.codec:
            plans.append(TrackPlan(s, "copy"))
        elif target is not None:
            why = f"a .{container} file cannot hold {s.codec} subtitles"
            plans.append(TrackPlan(s, "reencode", why, codec=target))
            if s.codec in ("ass", "ssa") and target != "ass":  # text and timing always survive, styling may not
                warnings.append(f"subtitle track {s.index}: {why}, converted to {target} "
                                f"(ASS positioning and effects are lost)")
        else:
            why = f"a .{container} file cannot hold {s.codec} subtitles"
            plans.append(TrackPlan(s, "drop", why))
            warnings.append(f"subtitle track {s.index} dropped: {why} (use a .mkv output to keep it)")
    return plans, warnings


class CopyTrack:
    """Copies the packets of one input stream into a stream made from it as a template."""

    def __init__(self, out: av.container.OutputContainer, source: av.stream.Stream) -> None:
        self.out = out
        self.stream = out.add_stream_from_template(source)

    def push(self, packet: av.Packet) -> None:
        """Mux one input packet untouched (its timestamps are rescaled to the output stream by PyAV)."""
        packet.stream = self.stream
        self.out.mux(packet)

    def flush(self) -> None:
        """Nothing is buffered here."""


class AacTrack:
    """Decodes one input audio stream and re-encodes it to AAC at the same rate and channel layout."""

    def __init__(self, out: av.container.OutputContainer, source: av.audio.stream.AudioStream) -> None:
        self.out = out
        self.source = source
        ctx = source.codec_context
        layout = ctx.layout.name
        if "channels" in layout:  # unordered layout: give the encoder the standard one for that count
            layout = _DEFAULT_LAYOUTS.get(ctx.layout.nb_channels, layout)
        # the encoder converts sample format and layout and re-frames to its frame size itself (PyAV
        # runs an AudioResampler inside encode()), carrying the decoded frames' timestamps through
        self.stream = out.add_stream(FALLBACK_AUDIO, rate=ctx.sample_rate, layout=layout)

    def push(self, packet: av.Packet) -> None:
        """Decode one input packet and mux the AAC packets it completes."""
        for frame in self.source.decode(packet):
            self.out.mux(self.stream.encode(frame))

    def flush(self) -> None:
        """Drain the decoder and the encoder."""
        for frame in self.source.decode(None):
            self.out.mux(self.stream.encode(frame))
        self.out.mux(self.stream.encode(None))


def open_tracks(out: av.container.OutputContainer, source: av.container.InputContainer,
                plans: list[TrackPlan]) -> dict[int, CopyTrack | AacTrack | TextSubtitleTrack]:
    """Add the output streams for the kept tracks, in input order; returns input index -> track."""
    tracks: dict[int, CopyTrack | AacTrack | TextSubtitleTrack] = {}
    for plan in sorted(plans, key=lambda p: p.stream.index):
        if plan.action == "drop":
            continue
        stream = source.streams[plan.stream.index]
        if plan.action == "copy":
            tracks[plan.stream.index] = CopyTrack(out, stream)
        elif plan.stream.type == "subtitle":
            tracks[plan.stream.index] = TextSubtitleTrack(out, stream, plan.codec)
        else:
            tracks[plan.stream.index] = AacTrack(out, stream)
    return tracks
