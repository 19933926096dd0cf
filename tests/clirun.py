"""Run the real ``vidtoon`` CLI in-process, as the tests of every command do."""
from __future__ import annotations

import pytest

from vidtoon.cli import main


def run_cli(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI with ``args``; returns (exit code, stdout, stderr).

    ``convert`` runs on the PyTorch engine unless ``--engine`` is given: ``auto`` may pick ONNX Runtime,
    whose first use exports the model (tested with the engines and in test_python_m_vidtoon_end_to_end).
    """
    args = [str(a) for a in args]
    if args and args[0] == "convert" and "--engine" not in args:
        args += ["--engine", "torch"]
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
