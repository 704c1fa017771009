"""book/build.py's cache: a lesson is executed again when its code changes, not when only its prose does."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

# book/build.py is a script, not a package module: load it by path (a plain `import build` could find PyPI's `build`).
_spec = importlib.util.spec_from_file_location("book_build", Path(__file__).resolve().parents[1] / "book" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def _lesson(path: Path, prose: str, code: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(prose), nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, path)
    return path


def test_the_key_follows_code_and_mode_not_prose(tmp_path):
    a = build.cache_key(_lesson(tmp_path / "a.ipynb", "# 01 one", "x = 1"), quick=True)
    assert build.cache_key(_lesson(tmp_path / "b.ipynb", "# 01 one, reworded", "x = 1"), quick=True) == a
    assert build.cache_key(_lesson(tmp_path / "c.ipynb", "# 01 one", "x = 2"), quick=True) != a
    assert build.cache_key(tmp_path / "a.ipynb", quick=False) != a
    nb = nbformat.read(tmp_path / "a.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("a new paragraph"))
    nbformat.write(nb, tmp_path / "d.ipynb")
    assert build.cache_key(tmp_path / "d.ipynb", quick=True) != a  # cells added: prose can no longer be matched


def test_a_cached_lesson_takes_new_prose_and_keeps_its_outputs(tmp_path):
    lesson = _lesson(tmp_path / "01_x.ipynb", "# 01 x", "print(6 * 7)")
    out = tmp_path / "out"
    executed, seconds = build.execute(lesson, out, quick=True)
    assert seconds is not None and "42" in json.dumps(json.loads(executed.read_text())["cells"][1]["outputs"])
    _lesson(lesson, "# 01 x, reworded", "print(6 * 7)")
    again, seconds = build.execute(lesson, out, quick=True)
    cells = json.loads(again.read_text())["cells"]
    assert seconds is None and "".join(cells[0]["source"]) == "# 01 x, reworded"
    assert "42" in json.dumps(cells[1]["outputs"])


def test_a_failing_cell_names_the_lesson_and_the_error(tmp_path):
    lesson = _lesson(tmp_path / "02_bad.ipynb", "# 02 bad", "assert 1 + 1 == 3, 'arithmetic'")
    with pytest.raises(build.LessonFailed, match=r"(?s)02_bad\.ipynb failed in quick mode.*arithmetic"):
        build.execute(lesson, tmp_path / "out", quick=True)
