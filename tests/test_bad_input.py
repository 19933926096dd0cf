"""Bad inputs and unsafe outputs: one ``Error:`` line, exit 1, nothing written, nothing left behind."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import av
import pytest
import torch
from conftest import leftovers
from mediagen import (
    corrupt_video_packets,
    make_audio_only,
    make_empty_video,
    make_video,
    truncate_file,
)

from vidtoon.cli import main
from vidtoon.errors import VidtoonError
from clirun import run_cli as run




def assert_refused(code: int, err: str, message: str, folder: Path, output: Path | None = None) -> None:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err  # one line, no traceback
    assert message in lines[0]
    if output is not None:
        assert not output.exists()
    assert leftovers(folder) == []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_not_a_video(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = tmp_path / "notes.mp4"
    src.write_text("this is not a video\n")
    code, _, err = run(["convert", src, "-o", tmp_path / "out.mp4", "--model", tiny_model], capsys)
    assert_refused(code, err, "notes.mp4 is not a readable video", tmp_path, tmp_path / "out.mp4")


def test_random_bytes(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = tmp_path / "noise.mkv"
    src.write_bytes(os.urandom(20000))
    code, _, err = run(["convert", src, "--model", tiny_model], capsys)
    assert_refused(code, err, "noise.mkv", tmp_path, tmp_path / "noise_toon.mp4")


def test_truncated_mp4_without_index_is_unreadable(tmp_path: Path, tiny_model: Path, capsys) -> None:
    # PyAV writes the MP4 index (moov) at the end: cut in half, nothing can be decoded
    src = truncate_file(make_video(tmp_path / "full.mp4", frames=24), tmp_path / "cut.mp4", 0.5)
    code, _, err = run(["convert", src, "-o", tmp_path / "out.mp4", "--model", tiny_model], capsys)
    assert_refused(code, err, "cut.mp4 is not a readable video", tmp_path, tmp_path / "out.mp4")


def test_truncated_mkv_converts_what_it_holds_with_warning(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = truncate_file(make_video(tmp_path / "full.mkv", frames=48), tmp_path / "cut.mkv", 0.6)
    out = tmp_path / "out.mkv"
    code, stdout, err = run(["convert", src, "-o", out, "--model", tiny_model], capsys)
    assert code == 0, err
    assert "cut.mkv ends early (truncated?)" in err
    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert 10 < n < 48
    assert f"{n} frames" in stdout
    assert f"converted the {n} frames it holds of the 48 its header announces ({48 - n} lost)" in err  # a count


def test_corrupt_packets_mid_stream_keep_going_with_count(tmp_path: Path, tiny_model: Path, capsys) -> None:
    good = make_video(tmp_path / "good.mkv", frames=48)
    src = corrupt_video_packets(good, tmp_path / "bad.mkv", first=10, count=4)
    out = tmp_path / "out.mp4"
    code, _, err = run(["convert", src, "-o", out, "--model", tiny_model], capsys)
    assert code == 0, err
    assert "bad.mkv is damaged: 4 packets could not be decoded" in err
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 44


def test_corrupt_from_the_start_is_an_error(tmp_path: Path, tiny_model: Path, capsys) -> None:
    good = make_video(tmp_path / "good.mkv", frames=12, audio=None)
    src = corrupt_video_packets(good, tmp_path / "bad.mkv", first=0, count=12)
    code, _, err = run(["convert", src, "-o", tmp_path / "out.mp4", "--model", tiny_model], capsys)
    assert_refused(code, err, "bad.mkv is corrupt: no frame could be decoded", tmp_path, tmp_path / "out.mp4")


def test_no_video_stream(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_audio_only(tmp_path / "song.m4a")
    code, _, err = run(["convert", src, "-o", tmp_path / "out.mp4", "--model", tiny_model], capsys)
    assert_refused(code, err, "song.m4a has no video stream", tmp_path, tmp_path / "out.mp4")


def test_zero_frames(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_empty_video(tmp_path / "empty.mkv")
    code, _, err = run(["convert", src, "--model", tiny_model], capsys)
    assert_refused(code, err, "empty.mkv has no video frames", tmp_path, tmp_path / "empty_toon.mp4")


def test_missing_input_and_folder_input(tmp_path: Path, tiny_model: Path, capsys) -> None:
    code, _, err = run(["convert", tmp_path / "nope.mp4", "--model", tiny_model], capsys)
    assert_refused(code, err, "nope.mp4 does not exist", tmp_path)
    (tmp_path / "dir.mp4").mkdir()
    code, _, err = run(["convert", tmp_path / "dir.mp4", "--model", tiny_model], capsys)
    assert_refused(code, err, "is not a file", tmp_path)


def test_existing_output_refused_then_overwritten(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    code, _, err = run(["convert", src, "-o", out, "--model", tiny_model], capsys)
    assert_refused(code, err, "already exists (pass --overwrite", tmp_path)
    assert out.read_bytes() == b"precious"
    code, _, err = run(["convert", src, "-o", out, "--model", tiny_model, "--overwrite"], capsys)
    assert code == 0, err
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_input_equal_to_output_refused(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    before = _sha(src)
    for args in (["-o", src, "--overwrite"], ["-o", tmp_path / "." / "in.mp4", "--overwrite"]):
        code, _, err = run(["convert", src, *args, "--model", tiny_model], capsys)
        assert_refused(code, err, "is the input file", tmp_path)
    assert _sha(src) == before


def test_unwritable_output_folder_checked_before_any_work(tmp_path: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    # the model does not exist: the folder must be refused first, before a model is even looked at
    code, _, err = run(["convert", src, "-o", "/proc/out.mp4", "--model", tmp_path / "missing.pt"], capsys)
    assert_refused(code, err, "cannot write to /proc", tmp_path)
    code, _, err = run(["convert", src, "-o", tmp_path / "in.mp4" / "sub" / "out.mp4"], capsys)
    assert_refused(code, err, "cannot create folder", tmp_path)


def test_one_output_rule_a_creatable_folder_or_a_folder_for_the_default_name(tmp_path: Path, tiny_model: Path,
                                                                             capsys) -> None:
    """Issue 20: `image -o missing/x.png` created the folder, `convert -o missing/x.mp4` refused; `image -o
    FOLDER` was accepted, `convert -o FOLDER` was not."""
    src = make_video(tmp_path / "in.mp4", frames=4)
    code, _, err = run(["convert", src, "-o", tmp_path / "new" / "deeper" / "x.mp4", "--model", tiny_model], capsys)
    assert code == 0, err
    assert (tmp_path / "new" / "deeper" / "x.mp4").is_file()
    (tmp_path / "there").mkdir()
    code, _, err = run(["convert", src, "-o", tmp_path / "there", "--model", tiny_model], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "there").iterdir()) == ["in_toon.mp4"]
    code, _, err = run(["convert", src, "-o", f"{tmp_path / 'slash'}/", "--model", tiny_model], capsys)
    assert code == 0, err
    assert (tmp_path / "slash" / "in_toon.mp4").is_file()


def test_convert_of_a_still_image_points_to_the_image_command(tmp_path: Path, capsys) -> None:
    import cv2
    import numpy as np

    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 120, np.uint8))
    code, _, err = run(["convert", photo], capsys)
    assert_refused(code, err, f"photo.jpg is a still image, not a video (use vidtoon image {photo})", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(["convert", src, "-o", locked / "out.mp4", "--model", tiny_model], capsys)
        assert_refused(code, err, "cannot write to", tmp_path, locked / "out.mp4")
    finally:
        locked.chmod(0o755)


def test_output_container_and_encoder_checks(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    cases = [
        (["-o", tmp_path / "out.avi"], "cannot write .avi"),
        (["-o", tmp_path / "out.webm", "--codec", "libx264"], "a .webm file cannot hold h264 video"),
        (["-o", tmp_path / "out.mp4", "--codec", "no_such_encoder"], "'no_such_encoder' is not available"),
    ]
    if not torch.cuda.is_available():
        cases.append((["-o", tmp_path / "out.mp4", "--codec", "h264_nvenc"], "h264_nvenc cannot start"))
    for args, message in cases:
        code, _, err = run(["convert", src, *args, "--model", tiny_model], capsys)
        assert_refused(code, err, message, tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_default_model_missing_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from vidtoon.models import shipped_models

    if "default" in shipped_models():
        pytest.skip("a default model ships in this build")
    src = make_video(tmp_path / "in.mp4", frames=6)
    code, _, err = run(["convert", src], capsys)
    assert_refused(code, err, "default model is not shipped", tmp_path, tmp_path / "in_toon.mp4")


def test_model_that_is_not_a_checkpoint_says_what_is_accepted(tmp_path: Path, capsys) -> None:
    """Issue 20: torch's weights_only security advice reached the user."""
    src = make_video(tmp_path / "in.mp4", frames=4)
    (tmp_path / "default.onnx").write_bytes(b"\x08\x07onnx-ish")
    (tmp_path / "notes.pt").write_text("not a model")
    (tmp_path / "empty_run").mkdir()
    for model, what in (("default.onnx", "is an ONNX file, not a vidtoon model"),
                        ("notes.pt", "is not a vidtoon model, or it is damaged"),
                        ("empty_run", "is a folder without checkpoints/latest.pt")):
        code, _, err = run(["convert", src, "-o", tmp_path / "out.mp4", "--model", tmp_path / model], capsys)
        assert_refused(code, err, what, tmp_path, tmp_path / "out.mp4")
        assert "weights_only" not in err and "export-model" in err


def test_debug_is_accepted_before_the_command(capsys) -> None:
    code, out, err = run(["--debug", "convert", "--help"], capsys)
    assert code == 0 and "Usage: vidtoon convert" in out, err


def test_bad_options_are_usage_errors(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6)
    code, _, err = run(["convert", src, "--start", "2", "--end", "1", "--model", tiny_model], capsys)
    assert code == 2 and "--end (1.0) must be after --start (2.0)" in err
    code, _, err = run(["convert", src, "--start", "abc", "--model", tiny_model], capsys)
    assert code == 2 and "'abc' is not a time" in err
    code, _, err = run(["convert", src, "--engine", "bogus", "--model", tiny_model], capsys)
    assert code == 2 and "Invalid value for '--engine'" in err
    code, _, err = run(["image", src, "--device", "gpu0", "--model", tiny_model], capsys)
    assert code == 2 and "'gpu0' is not auto, cpu, cuda or cuda:N" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_engine_choices_are_the_engines() -> None:
    from vidtoon.commands.convert import ENGINE_CHOICES
    from vidtoon.engines import ENGINES

    assert ENGINE_CHOICES == ["auto", *ENGINES]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(VidtoonError, match="does not exist"):
        main(["convert", str(tmp_path / "nope.mp4"), "--debug"])


def test_ctrl_c_exits_130_and_removes_the_temp_file(tmp_path: Path, tiny_model: Path, capsys, monkeypatch) -> None:
    import vidtoon.pipeline as pipeline

    calls = {"n": 0}
    real = pipeline._stylize

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:  # mid-video: frames already encoded into the temp file
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_stylize", interrupted)
    src = make_video(tmp_path / "in.mp4", frames=40)
    before = _sha(src)
    code, _, err = run(["convert", src, "--model", tiny_model, "--batch-size", "2"], capsys)
    assert code == 130 and "Interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert _sha(src) == before


def test_unexpected_errors_are_plain_sentences(tmp_path: Path, tiny_model: Path, capsys, monkeypatch) -> None:
    import vidtoon.pipeline as pipeline

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("Invalid layout: 0 channels")

    monkeypatch.setattr(pipeline, "_stylize", broken)
    src = make_video(tmp_path / "in.mp4", frames=6)
    code, _, err = run(["convert", src, "--model", tiny_model], capsys)
    assert_refused(code, err, "Error: unexpected internal error: Invalid layout: 0 channels (run with --debug",
                   tmp_path, tmp_path / "in_toon.mp4")
    assert "ValueError" not in err
    with pytest.raises(ValueError, match="Invalid layout"):
        main(["convert", str(src), "--model", str(tiny_model), "--engine", "torch", "--debug"])
    assert leftovers(tmp_path) == []


def test_an_eof_error_is_an_error_not_a_ctrl_c(tmp_path: Path, tiny_model: Path, capsys, monkeypatch) -> None:
    """click turns EOFError into its Abort, which the CLI reported as "Interrupted." with exit 130."""
    import vidtoon.pipeline as pipeline

    def ends_early(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise EOFError("Ran out of input")

    monkeypatch.setattr(pipeline, "_stylize", ends_early)
    src = make_video(tmp_path / "in.mp4", frames=6)
    code, _, err = run(["convert", src, "--model", tiny_model], capsys)
    assert code == 1 and err.strip().startswith("Error: unexpected internal error: Ran out of input")
    assert "Interrupted" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(EOFError):
        main(["convert", str(src), "--model", str(tiny_model), "--engine", "torch", "--debug"])
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc, message", [
    (av.error.InvalidDataError(-1094995529, "Invalid data found when processing input", "avcodec_send_packet()"),
     "FFmpeg: Invalid data found when processing input"),
    (OSError(28, "No space left on device", "out.mp4"), "No space left on device (out.mp4)"),
    (UnicodeDecodeError("utf-8", b"\x98", 0, 1, "invalid start byte"),
     "a file holds text that is not valid UTF-8 (invalid start byte)"),
    (KeyError("arch"), "unexpected internal error: 'arch'"),
    (RuntimeError("RuntimeError: shape mismatch\nmore lines"), "unexpected internal error: shape mismatch"),
])
def test_describe_names_no_exception_class(exc: BaseException, message: str) -> None:
    from vidtoon.errors import describe

    assert describe(exc) == message
