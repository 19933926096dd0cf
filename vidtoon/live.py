"""Live preview: stylize a webcam (or any OpenCV source) in real time.

Three threads, so the picture never lags behind the camera:

- the capture thread reads frames as fast as the source gives them and keeps only the newest one
  (older frames are dropped, never queued);
- the worker thread takes the newest frame, shrinks it to the processing size (``max_side``) and
  stylizes it;
- the calling thread records, shows the window (OpenCV HighGUI wants the main thread) and reads keys.

A finite source (a file) is read at its own frame rate, as a camera would deliver it, so a file behaves
like a camera in tests. Recordings are stamped with the time each frame was captured, so they play at
real speed whatever rate the engine achieved.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidtoon.errors import VidtoonError
from vidtoon.fileio import check_replaceable, write_image
from vidtoon.live_io import FpsMeter, LatestFrame, Recorder, display_problem, open_source, processing_size

WINDOW = "vidtoon live"


@dataclass(frozen=True)
class LiveOptions:
    """What ``vidtoon live`` does; :meth:`validate` raises VidtoonError for impossible combinations."""

    camera: int = 0  # camera index (used when ``source`` is None)
    source: str | None = None  # a device path, video file or stream URL instead of a camera
    max_side: int | None = 480  # longer side of the processing size (None: the source size)
    window: bool | None = None  # True: window; False: headless; None: window when a display is available
    side_by_side: bool = False  # start with original and cartoon side by side
    record: Path | None = None  # record the cartoon to this file from the start
    overwrite: bool = False  # replace an existing ``record`` file
    frames: int | None = None  # stop after this many stylized frames (None: until quit or end of source)
    save_dir: Path = Path(".")  # where the s (snapshot) and r (record) keys write their files
    show_fps: bool = True  # draw the achieved FPS on the window

    def validate(self) -> None:
        if self.camera < 0:
            raise VidtoonError(f"--camera must be 0 or more, got {self.camera}")
        if self.max_side is not None and self.max_side < 16:
            raise VidtoonError(f"--max-side must be at least 16, got {self.max_side}")
        if self.frames is not None and self.frames < 1:
            raise VidtoonError(f"--frames must be at least 1, got {self.frames}")
        if self.record is not None:
            Recorder.check_path(self.record)
            try:
                check_replaceable(self.record.expanduser(), self.overwrite)
            except VidtoonError as exc:
                raise VidtoonError(f"cannot record to {self.record}: {exc}") from None


@dataclass
class LiveStats:
    """What a live session achieved."""

    frames: int = 0  # frames stylized and shown/recorded
    captured: int = 0  # frames the source delivered
    seconds: float = 0.0  # wall time from the first captured frame to the end
    source: str = ""
    source_size: tuple[int, int] = (0, 0)  # (width, height)
    size: tuple[int, int] = (0, 0)  # processing (width, height)
    source_fps: float = 0.0  # the rate the source announces (0 when unknown)
    windowed: bool = False
    recordings: list[Path] = field(default_factory=list)
    snapshots: list[Path] = field(default_factory=list)
    ended: str = ""  # why it stopped: "quit", "frames", "end of source"

    @property
    def fps(self) -> float:
        """Achieved processing rate (stylized frames per second)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def dropped(self) -> int:
        """Captured frames never stylized because a newer one had arrived."""
        return max(0, self.captured - self.frames)


# ---------------------------------------------------------------------------------------------- session
class LiveSession:
    """Runs one live session; see :func:`run_live`."""

    def __init__(self, engine: Any, options: LiveOptions, on_status: Callable[[LiveStats, float], None] | None = None):
        options.validate()
        self.engine = engine
        self.options = options
        self.on_status = on_status
        self.stats = LiveStats()
        self.latest = LatestFrame()
        self.results: queue.Queue[tuple[np.ndarray, np.ndarray, float]] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.source_ended = threading.Event()
        self.worker_done = threading.Event()
        self.side_by_side = options.side_by_side
        self.recorder: Recorder | None = None
        self.meter = FpsMeter()

    # capture thread: keep only the newest frame
    def _capture(self, cap: Any, first: np.ndarray, finite: bool, fps: float) -> None:
        import cv2

        try:
            t_start = time.monotonic()
            self.latest.put((first, t_start))
            self.stats.captured = 1
            failures = 0
            while not self.stop.is_set():
                ok, frame = cap.read()
                if not ok or frame is None:
                    if finite:
                        break
                    failures += 1
                    if failures >= 50:  # a camera that stopped delivering (unplugged, taken by another app)
                        raise VidtoonError(f"{self.stats.source} stopped giving frames")
                    time.sleep(0.02)
                    continue
                failures = 0
                now = time.monotonic()
                if finite:
                    # play a file at its own rate, as a camera would deliver it
                    due = t_start + cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    if due <= t_start and fps > 0:
                        due = t_start + self.stats.captured / fps
                    if due > now:
                        if self.stop.wait(due - now):
                            break
                        now = time.monotonic()
                self.latest.put((frame, now))
                self.stats.captured += 1
        except BaseException as exc:  # reported by the main thread
            self.errors.append(exc)
        finally:
            self.source_ended.set()
            self.latest.close()

    # worker thread: stylize the newest frame
    def _work(self) -> None:
        import cv2

        try:
            seq = 0
            width, height = self.stats.size
            while not self.stop.is_set():
                item = self.latest.newer_than(seq, timeout=0.1)
                if item is None:
                    if self.latest.closed:
                        break
                    continue
                seq, (frame, t_cap) = item
                if frame.shape[1] != width or frame.shape[0] != height:
                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                toon = cv2.cvtColor(self.engine.infer(rgb[None])[0], cv2.COLOR_RGB2BGR)
                while not self.stop.is_set():
                    try:
                        self.results.put((frame, toon, t_cap), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.worker_done.set()

    def _view(self, frame: np.ndarray, toon: np.ndarray) -> np.ndarray:
        return np.hstack([frame, toon]) if self.side_by_side else toon

    def _draw_fps(self, view: np.ndarray) -> np.ndarray:
        import cv2

        view = view.copy()
        text = f"{self.meter.fps:5.1f} fps"
        scale = max(0.4, view.shape[0] / 720)
        org = (8, int(24 * scale) + 4)
        thick = max(1, round(2 * scale))
        cv2.putText(view, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(view, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return view

    def _display_scale(self, view: np.ndarray) -> np.ndarray:
        import cv2

        # show small processing sizes larger (up to the source height, at most 720 lines)
        target_h = min(max(self.stats.source_size[1], view.shape[0]), 720)
        if target_h == view.shape[0]:
            return view
        target_w = round(view.shape[1] * target_h / view.shape[0])
        return cv2.resize(view, (target_w, target_h), interpolation=cv2.INTER_LINEAR)

    def _stamp(self) -> str:
        return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"

    def snapshot(self, frame: np.ndarray, toon: np.ndarray) -> Path:
        """Write what the window shows (without the FPS text) as a PNG in ``save_dir``."""
        path = self.options.save_dir / f"vidtoon-snapshot-{self._stamp()}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, self._view(frame, toon))
        self.stats.snapshots.append(path)
        return path

    def toggle_recording(self) -> None:
        if self.recorder is not None:
            done = self.recorder.close()
            if done is not None:
                self.stats.recordings.append(done)
            self.recorder = None
        else:
            self.options.save_dir.mkdir(parents=True, exist_ok=True)
            self.recorder = Recorder(self.options.save_dir / f"vidtoon-record-{self._stamp()}.mp4", self.stats.size)

    def open(self) -> None:
        """Open the source, decide on the window and start a ``record`` recording: every input of the session
        is checked here, so a caller can do this before the slow part of starting an engine (an ONNX export)."""
        if self._opened is None:
            self._opened = self._open()

    def release(self) -> None:
        """Give back what :meth:`open` took, for a session that will not run (its engine failed to start)."""
        if self._opened is not None:
            self._opened[0].release()
            self._opened = None
        if self.recorder is not None:
            self.recorder.abort()
            self.recorder = None

    def run(self) -> LiveStats:
        """Run until quit, ``frames``, the end of the source or Ctrl-C; returns what the session achieved."""
        import cv2

        self.open()
        assert self._opened is not None
        (cap, first, finite), self._opened = self._opened, None
        threads = [
            threading.Thread(target=self._capture, args=(cap, first, finite, self.stats.source_fps),
                             name="vidtoon-capture", daemon=True),
            threading.Thread(target=self._work, name="vidtoon-worker", daemon=True),
        ]
        t0 = time.monotonic()
        ok = False
        try:
            if self.stats.windowed:
                cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            for t in threads:
                t.start()
            self._loop()
            ok = True
        except KeyboardInterrupt:
            # Ctrl-C is how a headless session is stopped: finish normally, the caller decides the exit code
            self.stats.ended = "interrupted"
            ok = True
        finally:
            self.stats.seconds = time.monotonic() - t0
            self._shut_down(cap, threads, ok)
        return self.stats

    def _open(self) -> tuple[Any, np.ndarray, bool]:
        """Open the source, decide on the window, start the ``record`` recording: (capture, first frame, finite)."""
        import cv2

        opts = self.options
        cap, first, desc, finite = open_source(opts.camera, opts.source)
        self.stats.source = desc
        self.stats.source_size = (first.shape[1], first.shape[0])
        self.stats.size = processing_size(first.shape[1], first.shape[0], opts.max_side)
        self.stats.source_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        windowed = opts.window
        if windowed is None or windowed:
            problem = display_problem()
            if problem is not None and windowed:
                cap.release()
                raise VidtoonError(f"{problem} (use --no-window to run headless)")
            windowed = problem is None
        self.stats.windowed = windowed
        if opts.record is not None:
            self.recorder = Recorder(opts.record, self.stats.size)
        return cap, first, finite

    def _loop(self) -> None:
        """The calling thread's part: show and record each stylized frame, read keys, until the session ends."""
        last_status = time.monotonic()
        while True:
            if self.errors:
                raise self.errors[0]
            try:
                frame, toon, t_cap = self.results.get(timeout=0.01 if self.stats.windowed else 0.1)
            except queue.Empty:
                frame = toon = None
            if frame is not None:
                last_status = self._show(frame, toon, t_cap, last_status)
                if self.options.frames is not None and self.stats.frames >= self.options.frames:
                    self.stats.ended = "frames"
                    return
            if self.stats.windowed and self._keys(frame, toon):
                return
            if frame is not None:
                self._last = (frame, toon)
            if self.worker_done.is_set() and self.results.empty():
                if self.errors:
                    raise self.errors[0]
                self.stats.ended = "end of source"
                return

    def _show(self, frame: np.ndarray, toon: np.ndarray, t_cap: float, last_status: float) -> float:
        """Count, record and show one stylized frame; returns when the status was last reported."""
        import cv2

        now = time.monotonic()
        self.stats.frames += 1
        self.meter.tick(now)
        if self.recorder is not None:
            self.recorder.write(toon, t_cap)
        if self.stats.windowed:
            view = self._display_scale(self._view(frame, toon))
            cv2.imshow(WINDOW, self._draw_fps(view) if self.options.show_fps else view)
        if self.on_status is not None and now - last_status >= 0.5:
            self.on_status(self.stats, self.meter.fps)
            return now
        return last_status

    def _keys(self, frame: np.ndarray | None, toon: np.ndarray | None) -> bool:
        """Act on a key of the window (q/Esc quit, v view, s snapshot, r record); True when the user quit."""
        import cv2

        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.stats.ended = "quit"
            return True
        if key == ord("v"):
            self.side_by_side = not self.side_by_side
        elif key == ord("s") and (frame is not None or self._last is not None):
            self.snapshot(*((frame, toon) if frame is not None else self._last))
        elif key == ord("r"):
            self.toggle_recording()
        if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:  # closed with the mouse
            self.stats.ended = "quit"
            return True
        return False

    def _shut_down(self, cap: Any, threads: list[threading.Thread], ok: bool) -> None:
        """Stop the threads, release the source and the window, finish a recording (raising its error only
        when the session itself ended well)."""
        import cv2

        self.stop.set()
        self.latest.close()
        for t in threads:
            if t.is_alive():
                t.join(timeout=5)
        cap.release()
        if self.stats.windowed:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
        if self.recorder is not None:
            # a recording is complete up to the moment we stopped, even on Ctrl-C: finish it properly
            try:
                done = self.recorder.close()
                if done is not None:
                    self.stats.recordings.append(done)
            except Exception:
                self.recorder.abort()
                if ok:
                    raise
            self.recorder = None

    _last: tuple[np.ndarray, np.ndarray] | None = None
    _opened: tuple[Any, np.ndarray, bool] | None = None  # what open() returned, until run() takes it


def run_live(engine: Any, options: LiveOptions,
             on_status: Callable[[LiveStats, float], None] | None = None) -> LiveStats:
    """Show (and/or record) ``engine``'s stylization of a camera or source live; returns what it achieved.

    ``on_status(stats, current_fps)`` is called about twice a second (for a headless status line).
    """
    return LiveSession(engine, options, on_status).run()
