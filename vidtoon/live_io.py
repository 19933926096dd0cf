"""Input and output of ``vidtoon live``: the window-system check, opening cameras and sources, the
newest-frame mailbox between threads, and the recorder.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vidtoon.errors import VidtoonError
from vidtoon.fileio import AtomicFile, check_writable


# ----------------------------------------------------------------------------------------------- display
def display_problem() -> str | None:
    """Why no window can be opened here, or None when one can.

    Qt (OpenCV's HighGUI backend in the pip wheels) aborts the whole process when it cannot reach the
    display, so the check runs in a throwaway subprocess rather than in ours.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    probe = ("import cv2, numpy as n; cv2.namedWindow('p', cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL); "
             "cv2.imshow('p', n.zeros((8, 8, 3), n.uint8)); cv2.waitKey(1); cv2.destroyAllWindows()")
    try:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the window system did not answer within 30 s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "could not connect" in ln or "error" in ln.lower()),
                      lines[0] if lines else f"exit code {proc.returncode}")
        where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "?"
        return f"cannot open a window on display {where}: {detail.strip()}"
    return None


# ------------------------------------------------------------------------------------------------ source
def _is_url(source: str) -> bool:
    return "://" in source


def list_cameras() -> list[str]:
    """Video capture device nodes present on this machine (Linux; empty elsewhere)."""
    return sorted(str(p) for p in Path("/dev").glob("video*")) if sys.platform.startswith("linux") else []


def open_source(camera: int = 0, source: str | None = None) -> tuple[Any, np.ndarray, str, bool]:
    """Open camera number ``camera``, or ``source`` when given, and read its first frame.

    Returns (cv2.VideoCapture, first BGR frame, description, finite) where ``finite`` says the source is a
    file (read at its own frame rate). Raises VidtoonError with the reason (no such camera, camera busy or
    not permitted, not a video) otherwise.
    """
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our messages replace OpenCV's warnings
    if source is None:
        index = camera
        desc = f"camera {index}"
        node = Path(f"/dev/video{index}")
        if sys.platform.startswith("linux") and not node.exists():
            found = list_cameras()
            hint = f"cameras found: {', '.join(found)}" if found else "no cameras found: /dev/video* is absent"
            raise VidtoonError(f"no camera at index {index} ({hint}; or use --source FILE/URL)")
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            if sys.platform.startswith("linux") and not os.access(node, os.R_OK | os.W_OK):
                raise VidtoonError(f"no permission to open {node} (add your user to the 'video' group)")
            raise VidtoonError(f"camera {index} could not be opened (busy in another application?)")
        finite = False
    else:
        src = source
        desc = src
        if not _is_url(src) and not Path(src).exists():
            raise VidtoonError(f"source {src} does not exist (a file, a device path or a stream URL)")
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            cap.release()
            raise VidtoonError(f"cannot open {src} as a video source (not a video, or a stream OpenCV cannot read)")
        finite = not _is_url(src) and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0 and not src.startswith("/dev/")
    ok, frame = cap.read()
    if not ok or frame is None:
        cap.release()
        if source is None:
            raise VidtoonError(f"camera {camera} opened but gives no frames (busy in another application?)")
        raise VidtoonError(f"{desc} gives no frames (empty, truncated or not a video)")
    return cap, frame, desc, finite


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces what is there, so the reader only ever sees the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[int, Any] | None = None
        self._seq = 0
        self.closed = False

    def put(self, value: Any) -> None:
        with self._cond:
            self._seq += 1
            self._item = (self._seq, value)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def newer_than(self, seq: int, timeout: float) -> tuple[int, Any] | None:
        """The newest item if it is newer than ``seq`` (waiting up to ``timeout`` s), else None."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self._item is not None and self._item[0] > seq), timeout)
            if self._item is not None and self._item[0] > seq:
                return self._item
            return None


def processing_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size frames are stylized at: longer side at most ``max_side``, both sides even (for H.264)."""
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


class FpsMeter:
    """Frames per second over the last ``window`` seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self.times: deque[float] = deque()

    def tick(self, t: float) -> None:
        self.times.append(t)
        while self.times and t - self.times[0] > self.window:
            self.times.popleft()

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class Recorder:
    """Writes stylized BGR frames to an H.264 file, stamped with their capture time (variable frame rate).

    The stamps make the file play at real speed: its average frame rate is the rate actually achieved.
    Frames go to a temporary file beside the target, renamed on :meth:`close`.
    """

    EXTS = (".mp4", ".mkv", ".mov")

    @classmethod
    def check_path(cls, path: Path) -> None:
        """Raise VidtoonError unless ``path`` is a recordable name in a writable folder."""
        if path.suffix.lower() not in cls.EXTS:
            raise VidtoonError(f"cannot record to {path.name}: use a {', '.join(cls.EXTS)} name")
        try:
            check_writable(path.expanduser().resolve().parent)
        except VidtoonError as exc:
            raise VidtoonError(f"cannot record to {path}: {exc}") from None

    def __init__(self, path: Path, size: tuple[int, int], crf: int = 20, preset: str = "veryfast") -> None:
        import av

        self.check_path(path)
        self.path = path.expanduser()
        self.target = AtomicFile(self.path, suffix=self.path.suffix)  # the muxer is chosen by the extension
        self.container = av.open(str(self.target.path), "w")
        try:
            stream = self.container.add_stream("libx264", rate=30)  # nominal; real timing is in the pts
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            # millisecond stamps: each frame keeps its capture time
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
            stream.options = {"crf": str(crf), "preset": preset}
        except BaseException:
            self.abort()
            raise
        self.stream = stream
        self.t0: float | None = None
        self.last_pts = -1
        self.frames = 0

    def write(self, bgr: np.ndarray, t: float) -> None:
        """Add one frame captured at monotonic time ``t``."""
        import av

        if self.t0 is None:
            self.t0 = t
        pts = max(int(round((t - self.t0) * 1000)), self.last_pts + 1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        self.container.mux(self.stream.encode(frame))
        self.last_pts = pts
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; returns its path (None when no frame was recorded)."""
        if self.frames == 0:
            self.abort()
            return None
        try:
            self.container.mux(self.stream.encode(None))
            self.container.close()
        except BaseException:
            self.abort()
            raise
        return self.target.commit()

    def abort(self) -> None:
        """Drop the recording: nothing is left on disk."""
        import av

        try:
            self.container.close()
        except (av.FFmpegError, OSError, ValueError):  # a broken file is deleted next: its errors do not matter
            pass
        self.target.discard()
