"""The sample clip in ``samples/``: what the README's first command converts on a fresh clone."""
from __future__ import annotations

import shlex
from pathlib import Path

import av
from clirun import run_cli as run

ROOT = Path(__file__).resolve().parents[1]


def _first_command() -> list[str]:
    """The ``vidtoon convert ...`` part of the README's first set-up command."""
    lines = (ROOT / "README.md").read_text().splitlines()
    setup = next(line for line in lines if line.startswith("    pip install") and "vidtoon convert" in line)
    return shlex.split(setup.split("&&")[-1])


def test_readme_first_command_converts_the_shipped_sample(tmp_path: Path, tiny_model: Path, capsys) -> None:
    cmd = _first_command()
    assert cmd[:2] == ["vidtoon", "convert"] and "-o" in cmd
    src = ROOT / cmd[2]
    assert src.is_file() and src.stat().st_size <= 1.5 * 2**20  # in the repository, small
    notes = (src.parent / "README.md").read_text()
    assert src.name in notes and "CC-BY" in notes and "Blender Foundation" in notes  # source and licence beside it
    with av.open(str(src)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"] and 2 <= c.duration / 1e6 <= 6
        frames = sum(1 for f in c.decode(video=0) if f.time < 1)
    out = tmp_path / cmd[cmd.index("-o") + 1]
    # its first second (enough to show that it converts; the tiny model keeps it to seconds)
    code, stdout, err = run(["convert", src, "-o", out, "--model", tiny_model, "--end", "1", "--no-stabilize"], capsys)
    assert code == 0, err
    assert f"{out.name}: {frames} frames" in stdout
    with av.open(str(src)) as a, av.open(str(out)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert (vb.width, vb.height) == (va.width, va.height)
        assert b.streams.audio[0].codec_context.layout.name == a.streams.audio[0].codec_context.layout.name
