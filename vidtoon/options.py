"""The options of one conversion, as one frozen dataclass checked in one place."""
from __future__ import annotations

from dataclasses import dataclass

from vidtoon.errors import VidtoonError

#: x264/x265 preset names (other encoders get them mapped, see vidtoon.video.writer.encoder_options)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: NVENC's own preset names are accepted as well
NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``vidtoon convert`` can be told, apart from the input and output paths."""

    # generator: a shipped model name or a checkpoint path
    model: str = "default"
    # look: 0 = the photo .. 1 = the full cartoon look (acts inside the network)
    strength: float = 1.0
    # outline (ink) amount, 0 = none .. 2 = twice the trained amount
    outline: float = 1.0
    # inference backend name ("torch", "onnxruntime", "tensorrt") or "auto" (see engines.choose_engine)
    engine: str = "auto"
    # "auto", "cpu", "cuda" or "cuda:N"
    device: str = "auto"
    # frames per inference call; None picks one for the device (4 on the CPU, 8 on a GPU)
    batch_size: int | None = None
    # downscale so the longer side is at most this many pixels before the network; None keeps the size
    max_side: int | None = None
    # encoder quality: constant rate factor (lower is better and bigger; 18 looks like the source)
    crf: int = 18
    # encoder speed/size trade-off, x264 names (mapped for NVENC, libvpx, SVT-AV1)
    preset: str = "veryfast"
    # FFmpeg video encoder: libx264, libx265, h264_nvenc, libvpx-vp9, libsvtav1, ...; None follows the output's
    # container (libvpx-vp9 for WebM, libx264 otherwise: vidtoon.video.containers.default_video_encoder)
    codec: str | None = None
    # convert only from this time (seconds from the video's start) ...
    start: float | None = None
    # ... up to this time (exclusive); audio and subtitles are cut to match
    end: float | None = None
    # keep the audio tracks (copied, or re-encoded to AAC where the container needs it)
    audio: bool = True
    # replace an existing output file
    overwrite: bool = False
    # temporal flicker stabilization (vidtoon.stabilize) of the stylized frames
    stabilize: bool = True
    # its strength, 0..1 (weight of the motion-compensated previous output)
    stabilize_strength: float = 0.6
    # draw eyes, nose and mouth back into faces a face detector finds (vidtoon.faces)
    faces: bool = True
    # write the original and the cartoon side by side (one above the other for portrait video), see vidtoon.compare
    compare: bool = False

    def validate(self) -> "ConvertOptions":
        """Raise VidtoonError naming the first invalid option; returns self for chaining."""
        if self.batch_size is not None and not 1 <= self.batch_size <= 256:
            raise VidtoonError(f"--batch-size must be between 1 and 256, got {self.batch_size}")
        if self.max_side is not None and self.max_side < 16:
            raise VidtoonError(f"--max-side must be at least 16 pixels, got {self.max_side}")
        if not 0 <= self.crf <= 63:
            raise VidtoonError(f"--crf must be between 0 and 63 (x264: 0-51), got {self.crf}")
        if self.preset not in PRESETS + NVENC_PRESETS:
            raise VidtoonError(f"--preset must be one of {', '.join(PRESETS)} (or p1-p7 for NVENC), got {self.preset!r}")
        if self.start is not None and self.start < 0:
            raise VidtoonError(f"--start must be 0 or more seconds, got {self.start}")
        if self.end is not None and self.end <= 0:
            raise VidtoonError(f"--end must be more than 0 seconds, got {self.end}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise VidtoonError(f"--end ({self.end}) must be after --start ({self.start})")
        if not 0.0 <= self.stabilize_strength < 1.0:
            raise VidtoonError(f"--stabilize-strength must be in [0, 1), got {self.stabilize_strength}")
        if not 0.0 <= self.strength <= 1.0:
            raise VidtoonError(f"--strength must be in [0, 1], got {self.strength}")
        if not 0.0 <= self.outline <= 2.0:
            raise VidtoonError(f"--outline must be in [0, 2], got {self.outline}")
        if self.codec is not None and not self.codec:
            raise VidtoonError("--codec must name an encoder (e.g. libx264)")
        return self

    def batch_for(self, device: str, preferred: int | None = None) -> int:
        """The batch size to use on ``device``: the option; else the engine's ``preferred`` batch size; else
        4 on the CPU and 8 on a GPU."""
        if self.batch_size is not None:
            return self.batch_size
        if preferred:
            return preferred
        return 8 if device.startswith("cuda") else 4
