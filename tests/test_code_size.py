"""The project's size rules, measured: no module over 400 lines, no function over 80 (STYLE.md, issue 21).

Lines of a function: from its ``def`` to its last line (decorators, such as click's options, not counted).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the folders whose Python files are held to the rules
FOLDERS = ("vidtoon", "engines", "trainer", "tests", "bench")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def too_long(files: list[Path], root: Path = ROOT) -> list[str]:
    """``path: N lines`` for each module over the limit, ``path:line name: N lines`` for each function
    (paths relative to ``root``)."""
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root)
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    return found


def test_the_check_sees_a_long_function_and_a_long_module(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "ok.py").write_text(f"def f():\n{body[:body.rindex(chr(10))]}\n")
    found = too_long(sorted(tmp_path.glob("*.py")), tmp_path)
    assert found == ["big.py: 401 lines", "long.py:1 f: 81 lines"]


def test_no_module_over_400_lines_and_no_function_over_80() -> None:
    files = _files()
    assert len(files) > 50  # the folders were found
    assert too_long(files) == []
