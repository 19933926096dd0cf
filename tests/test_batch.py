"""``vidtoon batch``: discovery by content, mirrored outputs, bad files, resume, report, jobs."""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import av
import pytest
import torch

from mediagen import make_video
from vidtoon.batch import BatchItem, find_videos, probe_file, run_batch
from vidtoon.models import export_generator, load_generator
from vidtoon.networks.fast import FastGenerator
from clirun import run_cli as run


@pytest.fixture(scope="module")
def toon_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = FastGenerator(width=8, width_low=8, n_res=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return export_generator(net, "fast", tmp_path_factory.mktemp("m") / "toon.pt")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "a": make_video(d / "a.mp4", frames=12, size=(64, 48), audio="aac"),
        "b": make_video(d / "b.mp4", frames=8, size=(48, 32), audio=None),
        "c": make_video(d / "c.mkv", frames=10, size=(32, 32), audio="libopus"),
    }


def _tree(root: Path, clips: dict[str, Path]) -> Path:
    """good clips (one without extension, nested), a text file, a corrupt .mp4, a JPEG, a hidden temp file."""
    (root / "trip" / "day2").mkdir(parents=True)
    shutil.copy(clips["a"], root / "a.mp4")
    shutil.copy(clips["b"], root / "trip" / "b.mp4")
    shutil.copy(clips["c"], root / "trip" / "day2" / "c.mkv")
    shutil.copy(clips["b"], root / "trip" / "camera_dump")  # a video without an extension
    (root / "notes.txt").write_text("not a video\n")
    data = clips["a"].read_bytes()
    (root / "trip" / "broken.mp4").write_bytes(data[len(data) // 2:])  # the second half: no header
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
    shutil.copy(clips["a"], root / "trip" / ".a.mp4.1234abcd.part")  # an interrupted run's temp file
    return root




def _frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_probe_by_content(tmp_path: Path, clips: dict[str, Path]) -> None:
    root = _tree(tmp_path / "in", clips)
    assert probe_file(root / "trip" / "camera_dump").kind == "video"
    assert probe_file(root / "notes.txt").kind == "other"
    assert probe_file(root / "cover.jpg").kind == "other"
    assert probe_file(root / "trip" / "broken.mp4").kind == "broken"
    p = probe_file(root / "a.mp4")
    assert p.kind == "video" and p.frames == 12 and p.audio == ["aac"]


def test_find_videos_filters_and_mirrors(tmp_path: Path, clips: dict[str, Path]) -> None:
    root = _tree(tmp_path / "in", clips)
    out = tmp_path / "out"
    items, ignored = find_videos(root, out, recursive=True)
    rels = {str(i.rel): i for i in items}
    assert set(rels) == {"a.mp4", "trip/b.mp4", "trip/day2/c.mkv", "trip/camera_dump", "trip/broken.mp4"}
    assert rels["trip/day2/c.mkv"].output == out / "trip" / "day2" / "c.mkv"  # Opus audio: MP4 cannot hold it
    assert rels["trip/camera_dump"].output == out / "trip" / "camera_dump.mp4"
    assert rels["trip/broken.mp4"].problem
    assert {str(p) for p, _ in ignored} == {"notes.txt", "cover.jpg"}

    items, _ = find_videos(root, out, recursive=False)
    assert [str(i.rel) for i in items] == ["a.mp4"]
    items, _ = find_videos(root, out, recursive=True, include=["trip/*"], exclude=["*.mkv", "broken*"])
    assert sorted(str(i.rel) for i in items) == ["trip/b.mp4", "trip/camera_dump"]
    with pytest.raises(Exception, match="must differ"):
        find_videos(root, root)


def test_outputs_of_convert_beside_their_inputs_are_not_batched_again(tmp_path: Path, clips: dict[str, Path]) -> None:
    """`vidtoon convert a.mp4` wrote a_toon.mp4 (and --compare a_compare.mp4) into the folder: a batch of that
    folder converts a.mp4 only, says why the others were left, and converts them when --include names them."""
    root = tmp_path / "in"
    root.mkdir()
    for name in ("a.mp4", "a_toon.mp4", "a_compare.mp4", "toon.mp4"):
        shutil.copy(clips["a"], root / name)
    items, ignored = find_videos(root, tmp_path / "out")
    assert [str(i.rel) for i in items] == ["a.mp4", "toon.mp4"]
    assert sorted(str(p) for p, _ in ignored) == ["a_compare.mp4", "a_toon.mp4"]
    assert all("--include" in why for _, why in ignored)
    items, _ = find_videos(root, tmp_path / "out", include=["*_toon.mp4"])
    assert [str(i.rel) for i in items] == ["a_toon.mp4"]


@pytest.mark.slow
def test_batch_bad_files_resume_and_report(tmp_path: Path, clips: dict[str, Path], toon_model: Path, capsys) -> None:
    root = _tree(tmp_path / "in", clips)
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    args = ["batch", str(root), "-o", str(out), "-r", "--model", str(toon_model), "--report", str(report)]

    code, stdout, err = run(args, capsys)
    assert code == 1
    assert "Error: 1 of 5 files failed: trip/broken.mp4" in err
    assert "a.mp4" in stdout and "done" in stdout and "failed" in stdout  # the final table
    assert _frames(out / "a.mp4") == 12 and _frames(out / "trip" / "b.mp4") == 8
    assert _frames(out / "trip" / "day2" / "c.mkv") == 10
    assert _frames(out / "trip" / "camera_dump.mp4") == 8
    with av.open(str(out / "a.mp4")) as c:
        assert c.streams.audio and c.streams.video[0].width == 64
    assert not list(out.rglob(".*"))  # no temp files
    data = json.loads(report.read_text())
    status = {f["input"]: f["status"] for f in data["files"]}
    assert status == {"a.mp4": "done", "trip/b.mp4": "done", "trip/day2/c.mkv": "done",
                      "trip/camera_dump": "done", "trip/broken.mp4": "failed"}
    assert data["summary"] == {"done": 4, "skipped": 0, "failed": 1}
    a = next(f for f in data["files"] if f["input"] == "a.mp4")
    assert a["frames"] == 12
    assert a["worker"] == f"{socket.gethostname()}:{os.getpid()}" and a["attempts"] == 1  # this process

    # re-run without the broken file: everything is already there
    mtime = (out / "a.mp4").stat().st_mtime_ns
    code, stdout, err = run(args + ["--exclude", "broken.mp4"], capsys)
    assert code == 0, err
    assert "4 already done" in err and (out / "a.mp4").stat().st_mtime_ns == mtime
    assert json.loads(report.read_text())["summary"] == {"done": 0, "skipped": 4, "failed": 0}
    # a skipped file is reported with what its output holds (here an 8-frame video), not its input's 12 frames
    shutil.copy(out / "trip" / "b.mp4", out / "a.mp4")
    code, stdout, err = run(args + ["--exclude", "broken.mp4"], capsys)
    a = next(f for f in json.loads(report.read_text())["files"] if f["input"] == "a.mp4")
    assert code == 0 and a["status"] == "skipped" and a["frames"] == 8
    assert a["size_bytes"] == (out / "a.mp4").stat().st_size


def test_resume_after_interrupted_run(tmp_path: Path, clips: dict[str, Path], toon_model: Path, capsys) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for name in ("one", "two", "three"):
        shutil.copy(clips["b"], root / f"{name}.mp4")
    out = tmp_path / "out"
    items, _ = find_videos(root, out)
    assert [i.rel.name for i in items] == ["one.mp4", "three.mp4", "two.mp4"]

    from vidtoon.engines import create_engine

    engine = create_engine("torch", load_generator(str(toon_model)), device="cpu")

    def interrupt_in_second_file(item: BatchItem, done: int, total: int | None) -> None:
        if item.rel.name == "three.mp4":
            raise KeyboardInterrupt  # as Ctrl-C would, in the middle of the conversion

    with pytest.raises(KeyboardInterrupt):
        run_batch(items, {"batch_size": 2}, engines=[engine], on_progress=interrupt_in_second_file)
    assert sorted(p.name for p in out.iterdir()) == ["one.mp4"]  # no half-written three.mp4, no temp file

    code, stdout, err = run(["batch", str(root), "-o", str(out), "--model", str(toon_model)], capsys)
    assert code == 0, err
    assert "2 converted, 1 already done" in err
    assert "skipped" in stdout
    assert all(_frames(out / f"{n}.mp4") == 8 for n in ("one", "two", "three"))


def test_ctrl_c_says_what_finished_and_that_a_rerun_resumes(tmp_path: Path, clips: dict[str, Path],
                                                             toon_model: Path, capsys, monkeypatch) -> None:
    """Issue 20: an interrupted batch printed only "Interrupted."."""
    root = tmp_path / "in"
    root.mkdir()
    for name in ("one", "two", "three"):
        shutil.copy(clips["b"], root / f"{name}.mp4")
    real = run_batch

    def interrupt_in_second_file(items, options, *, on_progress=None, **kw):  # type: ignore[no-untyped-def]
        def progress(item: BatchItem, done: int, total: int | None) -> None:
            if item.rel.name == "three.mp4":
                raise KeyboardInterrupt  # as Ctrl-C would, in the middle of the conversion
            if on_progress is not None:
                on_progress(item, done, total)
        return real(items, options, on_progress=progress, **kw)

    import vidtoon.batch

    monkeypatch.setattr(vidtoon.batch, "run_batch", interrupt_in_second_file)
    code, _, err = run(["batch", str(root), "-o", str(tmp_path / "out"), "--model", str(toon_model)], capsys)
    assert code == 130
    assert ("Stopped after 1 of 3 files (1 converted, 0 already done, 0 failed); the same command again resumes"
            in " ".join(err.split()))


def test_files_that_are_not_videos_are_skipped_whatever_their_name(tmp_path: Path, clips: dict[str, Path],
                                                                   toon_model: Path, capsys) -> None:
    """Issue 20: notavideo.mp4 failed the batch while notes.txt was ignored."""
    from mediagen import make_audio_only

    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(clips["b"], root / "clip.mp4")
    (root / "notavideo.mp4").write_text("these are my notes, not a video\n" * 20)
    (root / "notes.txt").write_text("not a video\n")
    make_audio_only(root / "song.mp4")
    code, _, err = run(["batch", str(root), "-o", str(tmp_path / "out"), "--model", str(toon_model)], capsys)
    assert code == 0, err
    text = " ".join(err.split())
    assert "skipped 3 file(s):" in text
    assert "notavideo.mp4 (not a media file)" in text and "song.mp4 (no video stream)" in text
    assert "1 converted" in text and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4"]


def test_jobs_and_convert_options(tmp_path: Path, clips: dict[str, Path], toon_model: Path, capsys) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(clips["a"], root / "a.mp4")
    shutil.copy(clips["b"], root / "b.mp4")
    shutil.copy(clips["a"], root / "c.mp4")
    out = tmp_path / "out"
    code, _, err = run(["batch", str(root), "-o", str(out), "--jobs", "2", "--model", str(toon_model),
                        "--max-side", "32", "--no-audio", "--end", "0.2"], capsys)
    assert code == 0, err
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        with av.open(str(out / name)) as c:
            assert not c.streams.audio
            assert max(c.streams.video[0].width, c.streams.video[0].height) == 32
            assert sum(1 for _ in c.decode(video=0)) == 5  # 0.2 s at 25 fps


def test_batch_errors(tmp_path: Path, toon_model: Path, capsys) -> None:
    code, _, err = run(["batch", str(tmp_path / "missing"), "--model", str(toon_model)], capsys)
    assert code == 1 and "is not a folder" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    code, _, err = run(["batch", str(tmp_path / "empty"), "--model", str(toon_model)], capsys)
    assert code == 1 and "no videos found" in err
    assert not (tmp_path / "empty_toon").exists()
    (tmp_path / "done").mkdir()  # only what an earlier `vidtoon convert` wrote there: the error says so
    (tmp_path / "done" / "clip_toon.mp4").write_bytes(b"\0")
    code, _, err = run(["batch", str(tmp_path / "done"), "--model", str(toon_model)], capsys)
    assert code == 1 and "no videos found" in err and "named like vidtoon outputs" in err
    code, _, err = run(["batch", str(tmp_path / "empty"), "--crf", "99"], capsys)
    assert code == 2 and "--crf" in err


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_jobs_share_the_cores_between_their_engines(monkeypatch, engine: str) -> None:
    # 2 jobs on 4 cores: each engine gets 2 threads. ONNX Runtime has a thread pool per session, so the count
    # must reach each engine; PyTorch has one pool per process (restored afterwards)
    import vidtoon.batch as batch
    import vidtoon.engines as engines
    import vidtoon.models as models
    from vidtoon.options import ConvertOptions

    made: list[dict] = []

    class Fake:
        def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
            self.kwargs, self.torch_threads, self.closed = kwargs, torch.get_num_threads(), False
            made.append(self.__dict__)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(batch, "_cpus", lambda: 4)
    monkeypatch.setattr(engines, "resolve_engine", lambda name, device: (name, "cpu"))
    monkeypatch.setattr(engines, "create_engine", lambda name, generator, device, **kw: Fake(device=device, **kw))
    monkeypatch.setattr(models, "load_generator", lambda *args: object())
    before = torch.get_num_threads()
    with batch.local_engines(ConvertOptions(engine=engine), jobs=2) as (_, created):
        assert len(created) == 2
    if engine == "onnxruntime":
        assert [m["kwargs"] for m in made] == [{"device": "cpu", "threads": 2}] * 2
    else:
        assert [m["torch_threads"] for m in made] == [2, 2]
    assert all(m["closed"] for m in made) and torch.get_num_threads() == before
    assert batch.engine_threads("cuda:0", jobs=2, cpus=4) is None and batch.engine_threads("cpu", 1, 4) is None


def test_ray_log_lines_stay_quiet_unless_debug(monkeypatch, caplog) -> None:
    """Issue 20: `--ray local` printed Ray's own "Token authentication is enabled" WARNING line."""
    import logging
    import types

    import vidtoon.batch_ray as batch_ray

    def init(**kwargs):  # type: ignore[no-untyped-def]  # what Ray's token set-up does while connecting
        logging.getLogger("ray._private.authentication").warning("Token authentication is enabled for this cluster")

    monkeypatch.setattr(batch_ray, "import_ray", lambda: types.SimpleNamespace(init=init, shutdown=lambda: None))
    monkeypatch.setattr(batch_ray, "_check_reachable", lambda address: None)
    ray_logger = logging.getLogger("ray")
    saved = ray_logger.level
    try:
        for verbose, lines in ((False, 0), (True, 1)):
            caplog.clear()
            ray_logger.setLevel(logging.NOTSET)  # as in a process that has not connected yet
            with batch_ray.connected("local", verbose=verbose):
                pass
            assert len([r for r in caplog.records if "Token authentication" in r.getMessage()]) == lines
    finally:
        ray_logger.setLevel(saved)
