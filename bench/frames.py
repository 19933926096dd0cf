"""Inputs for the benchmarks: real frames from the shared media clips when present, and generated clips.

Nothing is downloaded: real frames come from ``$VIDTOON_MEDIA`` or ``../shared/media`` beside the checkout
(``/work/shared/media`` on the project machine); without them the frames are smooth synthetic pictures.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def media_dir() -> Path | None:
    """The folder of shared sample clips, or None when it is not there."""
    for candidate in (os.environ.get("VIDTOON_MEDIA"), Path(__file__).resolve().parents[2] / "shared" / "media", "/work/shared/media"):
        if candidate and Path(candidate).is_dir() and any(Path(candidate).iterdir()):
            return Path(candidate)
    return None


def media_clips() -> list[Path]:
    """The shared sample clips (mp4/webm/mov/mkv), sorted; empty without the media folder."""
    folder = media_dir()
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".mp4", ".webm", ".mov", ".mkv"})


def sample_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``n`` RGB uint8 frames of ``height x width``: spread over the shared clips, else synthetic."""
    clips = media_clips()
    frames: list[np.ndarray] = []
    per_clip = -(-n // len(clips)) if clips else 0
    for clip in clips:
        with av.open(str(clip)) as box:
            stream = box.streams.video[0]
            total = stream.frames or 100
            wanted = set(np.linspace(0, total - 1, per_clip + 2, dtype=int)[1:-1].tolist())
            for i, frame in enumerate(box.decode(stream)):
                if i in wanted:
                    rgb = frame.to_ndarray(format="rgb24")
                    frames.append(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA))
                if i >= max(wanted, default=0):
                    break
    if len(frames) >= n:
        return np.stack(frames[:n])
    rng = np.random.default_rng(seed)
    while len(frames) < n:
        frames.append(synthetic_frame(height, width, rng))
    return np.stack(frames)


def synthetic_frame(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random picture (upsampled noise with a few edges), closer to video than white noise."""
    small = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(img, (x0, y0), (x0 + width // 6, y0 + height // 6), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return img


def make_clip(path: Path, height: int, width: int, seconds: float, fps: int = 25, source: Path | None = None,
              audio: bool = False) -> Path:
    """Write an H.264 MP4 of ``seconds`` at ``fps``: frames of ``source`` (looped, resized) or moving synthetic ones,
    with ``audio``: an AAC stereo 48 kHz sine track of the same length, interleaved with the video.

    Used to give the benchmark inputs of exact sizes and lengths; x264 ``veryfast`` keeps it quick.
    """
    n = int(round(seconds * fps))
    # at most 50 source frames are kept (looped): a 1080p minute would not fit in memory otherwise
    frames = _source_frames(source, height, width, min(n, 50)) if source else None
    rng = np.random.default_rng(0)
    base = synthetic_frame(height, width, rng)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        sound = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        samples = 0
        for i in range(n):
            img = frames[i % len(frames)] if frames is not None else np.roll(base, 4 * i, axis=1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            while sound is not None and samples < (i + 1) * 48000 // fps:  # audio up to this frame's end
                samples = _mux_sine(out, sound, samples)
        out.mux(stream.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


def _mux_sine(out: av.container.OutputContainer, sound: av.audio.stream.AudioStream, start: int, n: int = 1024) -> int:
    """Encode and mux ``n`` samples of a 440 Hz sine from sample ``start``; returns the next sample index."""
    t = np.arange(start, start + n) / sound.rate
    wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = sound.rate, start, Fraction(1, sound.rate)
    out.mux(sound.encode(frame))
    return start + n


def _source_frames(source: Path, height: int, width: int, limit: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(source)) as box:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in box.decode(stream):
            frames.append(cv2.resize(frame.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_AREA))
            if len(frames) >= limit:
                break
    return frames
