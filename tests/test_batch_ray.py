"""``vidtoon batch --ray``: on a local Ray cluster of 2 CPUs on 127.0.0.1 (one for the module, always stopped).

Workers that misbehave on purpose are subclasses of :class:`ConvertWorker` defined inside the tests (Ray
ships them to its workers by value); they coordinate through marker files in ``tmp_path``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import importlib.util

import av
import pytest

if importlib.util.find_spec("ray") is None:  # not imported here: Ray reads some settings once, at import
    pytest.skip("needs Ray (pip install 'vidtoon[ray]')", allow_module_level=True)

from clirun import run_cli as run  # noqa: E402
from conftest import packets, video_pts  # noqa: E402
from mediagen import make_video  # noqa: E402
from vidtoon.batch import find_videos, run_batch  # noqa: E402
from vidtoon.batch_ray import ConvertWorker, RayOptions, plan_workers, run_batch_ray  # noqa: E402
from vidtoon.errors import VidtoonError  # noqa: E402

#: every Ray process on 127.0.0.1, no usage report, a token that is never written to ~/.ray
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_NODE_IP_ADDRESS": "127.0.0.1",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address() -> str:
    """Start ``ray start --head --block`` with 2 CPUs on 127.0.0.1; yield its address; stop it."""
    assert "ray" not in sys.modules, "Ray was imported before its environment was set"
    env = {**_RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # for the drivers the tests start in this process
    temp_dir = tempfile.mkdtemp(prefix="vt-ray-")  # short: Ray's socket paths must stay under 108 bytes
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:  # ray start --block says so once everything is up, then keeps its pipe open
        for line in proc.stdout:
            lines.append(line)
            if "block forever" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not started.wait(120):
            raise RuntimeError("ray start did not come up:\n" + "".join(lines[-30:]))
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()  # --block stops every process it started
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated clips (AAC, no audio, Opus in Matroska) and a corrupt .mp4."""
    d = tmp_path_factory.mktemp("in")
    make_video(d / "a.mp4", frames=12, size=(64, 48), audio="aac")
    make_video(d / "b.mp4", frames=8, size=(48, 32), audio=None)
    make_video(d / "c.mkv", frames=10, size=(32, 32), audio="libopus")
    data = (d / "a.mp4").read_bytes()
    (d / "broken.mp4").write_bytes(data[len(data) // 2:])  # no header
    return d


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.slow
def test_ray_batch_spreads_files_and_resumes(tmp_path: Path, folder: Path, tiny_model: Path, tiny_engine,
                                             ray_address: str, capsys) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()

    class MeetsAPeer(ConvertWorker):
        """Starts its first file only once another worker has one too: both must get work."""

        def convert(self, item, overwrite, attempt):  # type: ignore[no-untyped-def]
            (marks / str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            return super().convert(item, overwrite, attempt)

    out = tmp_path / "out"
    items, _ = find_videos(folder, out)
    results = run_batch_ray(items, {"batch_size": 2}, model=str(tiny_model), engine="torch", device="cpu",
                            ray_options=RayOptions(ray_address, workers=2), worker_class=MeetsAPeer)
    by_name = {r.input: r for r in results}
    assert {n: r.status for n, r in by_name.items()} == {
        "a.mp4": "done", "b.mp4": "done", "c.mkv": "done", "broken.mp4": "failed"}
    assert "not a readable video" in by_name["broken.mp4"].error
    workers = {r.worker for r in results if r.status == "done"}
    assert len(workers) == 2 and all(w.rsplit(":", 1)[1] != str(os.getpid()) for w in workers)
    assert all(r.attempts == 1 for r in results if r.status == "done")

    # timing and audio exactly as the local batch writes them
    local = tmp_path / "local"
    local_results = run_batch(find_videos(folder, local)[0], {"batch_size": 2}, engines=[tiny_engine])
    assert [r.status for r in local_results] == [r.status for r in results]
    for name in ("a.mp4", "b.mp4", "c.mkv"):
        assert video_pts(out / name) == video_pts(local / name)
        with av.open(str(out / name)) as c:
            audio = [s.index for s in c.streams.audio]
        with av.open(str(local / name)) as c:
            assert audio == [s.index for s in c.streams.audio]
        for index in audio:
            assert packets(out / name, index) == packets(local / name, index)
    assert len(list((out / "a.mp4").parent.iterdir())) == 3  # no temporary files

    # the CLI redoes only a missing output, on a Ray worker; the corrupt file fails again and is named
    (out / "b.mp4").unlink()
    before = _mtimes(out)
    report = tmp_path / "report.json"
    args = ["batch", folder, "-o", out, "--ray", ray_address, "--model", tiny_model, "--engine", "torch",
            "--batch-size", "2", "--report", report]
    code, stdout, err = run(args, capsys)
    assert code == 1
    assert "Error: 1 of 4 files failed: broken.mp4" in err
    assert "starting 1 worker (" in err  # one file to do: one worker
    assert "WARNING" not in err and "Token authentication" not in err  # Ray's own log lines: only with --debug
    files = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    assert files["b.mp4"]["status"] == "done" and files["b.mp4"]["attempts"] == 1
    host, pid = files["b.mp4"]["worker"].rsplit(":", 1)
    assert host == socket.gethostname() and int(pid) != os.getpid()
    assert files["a.mp4"]["status"] == "skipped" and files["a.mp4"]["worker"] == ""
    assert video_pts(out / "b.mp4") == video_pts(local / "b.mp4")
    assert {k: v for k, v in _mtimes(out).items() if k != "b.mp4"} == before

    # a re-run rewrites nothing
    before = _mtimes(out)
    code, _, err = run(args, capsys)
    assert code == 1 and "Error: 1 of 4 files failed: broken.mp4" in err
    assert _mtimes(out) == before
    assert json.loads(report.read_text())["summary"] == {"done": 0, "skipped": 3, "failed": 1}


@pytest.mark.slow
def test_dead_worker_file_goes_elsewhere(tmp_path: Path, folder: Path, tiny_model: Path, ray_address: str) -> None:
    died = tmp_path / "died"

    class DiesOnce(ConvertWorker):
        """The first worker to get a file exits on it, as a crash or the OOM killer would end it."""

        def convert(self, item, overwrite, attempt):  # type: ignore[no-untyped-def]
            try:
                fd = os.open(died, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().convert(item, overwrite, attempt)
            os.write(fd, f"{item.rel}\n{self.where}".encode())
            os.close(fd)
            os._exit(1)

    out = tmp_path / "out"
    items, _ = find_videos(folder, out, exclude=["broken.mp4"])
    messages: list[str] = []
    results = run_batch_ray(items, {"batch_size": 2}, model=str(tiny_model), engine="torch", device="cpu",
                            ray_options=RayOptions(ray_address, workers=2), worker_class=DiesOnce,
                            on_message=messages.append)
    assert [r.status for r in results] == ["done"] * 3
    victim, dead_worker = died.read_text().splitlines()
    redone = next(r for r in results if r.input == victim)
    assert redone.attempts == 2 and redone.worker != dead_worker
    assert any(f"{dead_worker} died converting {victim}" in m for m in messages)
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.mkv"]  # nothing half-written


@pytest.mark.slow
def test_python_error_fails_file_and_killer_file_gives_up(tmp_path: Path, folder: Path, tiny_model: Path,
                                                         ray_address: str) -> None:
    class Picky(ConvertWorker):
        """A Python error on a.mp4 (the file's failure, no retry); c.mkv kills every worker that takes it."""

        def convert(self, item, overwrite, attempt):  # type: ignore[no-untyped-def]
            if item.rel.name == "a.mp4":
                raise ValueError("cannot handle this one")
            if item.rel.name == "c.mkv":
                os._exit(1)
            return super().convert(item, overwrite, attempt)

    out = tmp_path / "out"
    items, _ = find_videos(folder, out, exclude=["broken.mp4"])
    results = run_batch_ray(items, {}, model=str(tiny_model), engine="torch", device="cpu",
                            ray_options=RayOptions(ray_address, workers=2), worker_class=Picky)
    by_name = {r.input: r for r in results}
    assert by_name["b.mp4"].status == "done"
    assert by_name["a.mp4"].status == "failed" and by_name["a.mp4"].attempts == 1
    assert by_name["a.mp4"].error == "unexpected internal error: cannot handle this one"  # no class name
    assert by_name["c.mkv"].status == "failed" and by_name["c.mkv"].attempts == 3
    assert "died 3 times" in by_name["c.mkv"].error
    assert sorted(p.name for p in out.iterdir()) == ["b.mp4"]


def test_ray_options_errors(tmp_path: Path, folder: Path, tiny_model: Path, capsys) -> None:
    code, _, err = run(["batch", folder, "-o", tmp_path / "o", "--ray-workers", "2"], capsys)
    assert code == 2 and "--ray-workers and --ray-gpus need --ray ADDRESS" in err
    code, _, err = run(["batch", folder, "-o", tmp_path / "o", "--ray", "auto", "--jobs", "2"], capsys)
    assert code == 2 and "--ray-workers" in err
    with pytest.raises(VidtoonError, match="more GPUs"):
        plan_workers({"CPU": 8.0}, RayOptions("auto", gpus=0.5), "auto", 10)
    assert plan_workers({"CPU": 8.0}, RayOptions("auto"), "auto", 10) == (8, 0.0)
    assert plan_workers({"CPU": 8.0}, RayOptions("auto"), "auto", 3) == (3, 0.0)
    assert plan_workers({"CPU": 16.0, "GPU": 2.0}, RayOptions("auto", gpus=0.5), "auto", 10) == (4, 0.5)
    assert plan_workers({"CPU": 16.0, "GPU": 2.0}, RayOptions("auto"), "auto", 10) == (2, 1.0)
    assert plan_workers({"CPU": 16.0, "GPU": 2.0}, RayOptions("auto"), "cpu", 10) == (10, 0.0)
    assert not (tmp_path / "o").exists()
