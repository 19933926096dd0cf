"""Which codecs each output container holds: an explicit table, because FFmpeg's own answer is not enough.

``OutputContainer.supported_codecs`` lists what a muxer can be *fed*, including codecs it only accepts with
``strict=experimental`` or that players will not read (Opus/FLAC in MOV, PCM in MP4 written as ``ipcm``...).
The table below is what we are willing to write: codecs that the container's specification and common
players accept. Names are canonical codec names (``Codec.canonical_name``: ``mp3`` for the ``mp3float``
decoder, ``vorbis`` for ``libvorbis``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vidtoon.errors import VidtoonError


@dataclass(frozen=True)
class ContainerSpec:
    """What one output container holds."""

    #: FFmpeg muxer name
    muxer: str
    #: video codecs (canonical names) it holds
    video: frozenset[str]
    #: audio codecs it holds untouched; anything else is re-encoded with one of ``audio_encoders``
    audio: frozenset[str]
    #: subtitle codecs it holds untouched
    subtitles: frozenset[str]
    #: the text subtitle codec other text subtitles are converted to (bitmap ones it cannot hold are dropped)
    text_subtitles: str
    #: the audio encoders for tracks it cannot hold, best first: the first one this FFmpeg build has is used
    audio_encoders: tuple[str, ...] = ("aac",)
    #: the video encoder used when --codec is not given (as ffmpeg picks: VP9 for WebM, H.264 elsewhere)
    video_encoder: str = "libx264"


_PCM = frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_u8", "pcm_s16be", "pcm_s24be"})
_MKV_PCM = frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_u8", "pcm_s16be"})

CONTAINERS: dict[str, ContainerSpec] = {
    # ISO MP4: AAC, MP3 and Dolby audio; Opus/FLAC-in-MP4 exist on paper but many players refuse them
    "mp4": ContainerSpec(
        muxer="mp4",
        video=frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"}),
        audio=frozenset({"aac", "mp3", "ac3", "eac3", "alac"}),
        subtitles=frozenset({"mov_text"}),
        text_subtitles="mov_text",
    ),
    # QuickTime: as MP4 plus PCM (QuickTime's native uncompressed audio) and ProRes
    "mov": ContainerSpec(
        muxer="mov",
        video=frozenset({"h264", "hevc", "prores", "mpeg4"}),
        audio=frozenset({"aac", "mp3", "ac3", "eac3", "alac"}) | _PCM,
        subtitles=frozenset({"mov_text"}),
        text_subtitles="mov_text",
    ),
    # Matroska holds nearly everything
    "mkv": ContainerSpec(
        muxer="matroska",
        video=frozenset({"h264", "hevc", "av1", "vp8", "vp9", "mpeg4", "prores", "ffv1"}),
        audio=frozenset({"aac", "mp3", "ac3", "eac3", "dts", "truehd", "opus", "vorbis", "flac", "alac"}) | _MKV_PCM,
        subtitles=frozenset({"subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle"}),
        text_subtitles="ass",  # what FFmpeg picks too: it keeps the styling that mov_text carries
    ),
    # WebM: the royalty-free subset of Matroska
    "webm": ContainerSpec(
        muxer="webm",
        video=frozenset({"vp8", "vp9", "av1"}),
        audio=frozenset({"opus", "vorbis"}),
        subtitles=frozenset({"webvtt"}),
        text_subtitles="webvtt",
        # Opus as ffmpeg picks for WebM; Vorbis where this FFmpeg has no Opus encoder (the native one last:
        # FFmpeg marks it experimental)
        audio_encoders=("libopus", "opus", "libvorbis", "vorbis"),
        video_encoder="libvpx-vp9",
    ),
}

#: file extension -> key of CONTAINERS
EXTENSIONS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "mkv", ".webm": "webm"}

#: the video encoder when neither --codec nor an output extension says otherwise
DEFAULT_VIDEO_ENCODER = "libx264"


def default_video_encoder(container: str) -> str:
    """The video encoder for ``container`` when --codec is not given (libvpx-vp9 for WebM, else libx264)."""
    return CONTAINERS[container].video_encoder


@dataclass(frozen=True)
class AudioEncoder:
    """The encoder a re-encoded audio track is written with in one container."""

    #: FFmpeg encoder name ("aac", "libopus", ...)
    name: str
    #: the codec's display name, for warnings ("AAC", "Opus", "Vorbis")
    label: str
    #: FFmpeg flags it needs ({"strict": "experimental"} for an encoder FFmpeg marks experimental)
    options: dict[str, str]

    def rate_for(self, rate: int) -> int:
        """The sample rate to encode a ``rate`` Hz track at: the same when the encoder takes it, else the next
        higher rate it takes (Opus: 44100 -> 48000), else its highest."""
        import av

        rates = av.Codec(self.name, "w").audio_rates
        if not rates or rate in rates:
            return rate
        return min((r for r in rates if r >= rate), default=max(rates))


def audio_encoder(container: str) -> AudioEncoder:
    """The encoder for audio tracks ``container`` cannot hold: its own codec (AAC for MP4/MOV/MKV, Opus for
    WebM, or Vorbis where this FFmpeg build has no Opus encoder); raises VidtoonError when it has none."""
    import av

    for name in CONTAINERS[container].audio_encoders:
        try:
            codec = av.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        label = {"aac": "AAC", "opus": "Opus", "vorbis": "Vorbis"}.get(codec.canonical_name, codec.canonical_name)
        return AudioEncoder(name, label, {"strict": "experimental"} if codec.experimental else {})
    raise VidtoonError(f"this FFmpeg build has no audio encoder for a .{container} file "
                       f"({' or '.join(CONTAINERS[container].audio_encoders)}; use --no-audio or another output extension)")


def container_for(path: str | Path) -> str:
    """The container key for an output path, from its extension; raises VidtoonError for others."""
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise VidtoonError(
            f"cannot write {ext or 'files without an extension'!s} (use an output ending in {', '.join(EXTENSIONS)})"
        )
    return EXTENSIONS[ext]


def encoder_codec(encoder: str) -> str:
    """The canonical codec an encoder writes (``libx264`` -> ``h264``); raises VidtoonError if unknown."""
    import av

    try:
        return av.Codec(encoder, "w").canonical_name
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise VidtoonError(f"video encoder {encoder!r} is not available in this FFmpeg build (try libx264)") from None


def check_video_fits(container: str, encoder: str) -> None:
    """Raise VidtoonError unless ``container`` holds what ``encoder`` writes."""
    codec = encoder_codec(encoder)
    spec = CONTAINERS[container]
    if codec not in spec.video:
        raise VidtoonError(
            f"a .{container} file cannot hold {codec} video from --codec {encoder} "
            f"(it holds {', '.join(sorted(spec.video))}; pick another --codec or output extension)"
        )


def audio_fits(container: str, codec: str) -> bool:
    """Whether an audio track in ``codec`` can be copied untouched into ``container``."""
    return codec in CONTAINERS[container].audio


def subtitle_fits(container: str, codec: str) -> bool:
    """Whether a subtitle track in ``codec`` can be copied untouched into ``container``."""
    return codec in CONTAINERS[container].subtitles


def subtitle_target(container: str, codec: str) -> str | None:
    """The codec a subtitle track in ``codec`` is written as in ``container``, or None when it cannot go.

    ``codec`` itself when the container holds it; the container's text format for any other text subtitle
    that FFmpeg can decode (SubRip, ASS/SSA, WebVTT, mov_text, ...: as ffmpeg and HandBrake do); None for
    bitmap subtitles (PGS, DVD) the container cannot hold, and for codecs without a decoder.
    """
    import av

    if subtitle_fits(container, codec):
        return codec
    try:
        text = av.Codec(codec, "r").text_sub
    except (av.codec.codec.UnknownCodecError, ValueError):
        return None
    return CONTAINERS[container].text_subtitles if text else None


def default_container(input_path: str | Path, encoder: str, audio_codecs: list[str], subtitle_codecs: list[str]) -> str:
    """The container for the default output name: MP4 when it holds every kept stream, else the input's own.

    When the input's container cannot hold the encoded video either (WebM with H.264), Matroska is used:
    it is WebM's superset, so Vorbis/Opus audio is still copied untouched rather than re-encoded.
    """
    codec = encoder_codec(encoder)

    def holds_all(key: str) -> bool:
        spec = CONTAINERS[key]
        return (
            codec in spec.video
            and all(c in spec.audio for c in audio_codecs)
            and all(c in spec.subtitles for c in subtitle_codecs)
        )

    if holds_all("mp4"):
        return "mp4"
    own = EXTENSIONS.get(Path(input_path).suffix.lower())
    if own is not None and holds_all(own):
        return own
    if holds_all("mkv"):
        return "mkv"
    # nothing holds everything: MP4 with re-encoded audio / dropped subtitles beats refusing
    return "mp4" if codec in CONTAINERS["mp4"].video else "mkv"


def extension_of(container: str) -> str:
    """The file extension written for a container key."""
    return "." + container
