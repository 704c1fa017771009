"""The reader's edition: every lesson executed once, with its outputs, as a static site (mkdocs-material).

    python book/build.py                 # full mode (the default): hours the first time, then only what changed
    python book/build.py --quick         # quick mode (what CI builds: tiny subsets, minutes)
    python book/build.py --execute-only  # run the lessons and cache the outputs, build no site

Why mkdocs-material with mkdocs-jupyter rather than Jupyter Book: both render executed notebooks, but
Jupyter Book 2 moved to a Node.js toolchain (mystmd) and version 1 is in maintenance; mkdocs and its two
plugins are plain Python packages from PyPI that build one static folder in seconds. Execution is this
script's job, not the site generator's, so the cache key is ours: a lesson is executed again only when its
code cells, the mode, or (with ``--key-package``) the cvlab package change; edited prose is copied into the
cached copy. A failing lesson does not stop the others: all failures are reported at the end. Outputs go to
``book/_cache/<mode>/``; the site to ``book/site/`` (open ``book/site/index.html``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


class LessonFailed(RuntimeError):
    pass


def package_hash() -> str:
    """A hash of the cvlab package's source: its code decides what a lesson prints."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "cvlab").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(notebook: Path, quick: bool, extra: str = "") -> str:
    """The notebook's code and the mode (plus ``extra``): prose, outputs and metadata do not count.

    The cell types count, so adding or removing a markdown cell re-executes; editing one does not (the cached
    copy takes the new prose, see :func:`refresh_prose`).
    """
    cells = json.loads(notebook.read_text())["cells"]
    code = [(c["cell_type"], "".join(c["source"]) if c["cell_type"] == "code" else "") for c in cells]
    return hashlib.sha256(json.dumps([code, quick, extra]).encode()).hexdigest()


def refresh_prose(notebook: Path, target: Path) -> None:
    """Copy the lesson's markdown cells into its executed copy (same cells, same order: the cache key checks it)."""
    src, out = json.loads(notebook.read_text()), json.loads(target.read_text())
    changed = False
    for a, b in zip(src["cells"], out["cells"]):
        if a["cell_type"] == "markdown" and a["source"] != b["source"]:
            b["source"], changed = a["source"], True
    if changed:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, target)


def execute(notebook: Path, out_dir: Path, *, quick: bool, force: bool = False, extra_key: str = "",
            timeout: int | None = None) -> tuple[Path, float | None]:
    """Run one lesson top to bottom in a fresh kernel and save it with its outputs in ``out_dir``.

    Returns the executed notebook and the seconds it took (``None`` when the cached copy was current).
    A failing cell raises :class:`LessonFailed` naming the lesson, the cell and the error.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    out_dir.mkdir(parents=True, exist_ok=True)
    target, stamp = out_dir / notebook.name, out_dir / f"{notebook.stem}.key"
    key = cache_key(notebook, quick, extra_key)
    if not force and target.exists() and stamp.exists() and stamp.read_text() == key:
        refresh_prose(notebook, target)
        return target, None
    nb = nbformat.read(notebook, as_version=4)
    saved = {k: os.environ.get(k) for k in ("CVLAB_QUICK", "MPLBACKEND", "CVLAB_WIDGETS")}
    os.environ["CVLAB_QUICK"] = "1" if quick else "0"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures become outputs (not Agg's nothing)
    os.environ["CVLAB_WIDGETS"] = "0"  # a page has no kernel to move a slider: lessons draw the static figure instead
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
                       ).execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:  # a failing cell, or a kernel that died
        raise LessonFailed(f"{notebook.name} failed in {'quick' if quick else 'full'} mode:\n{e}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - t0
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)  # a crash never leaves a half-written lesson in the cache
    stamp.write_text(key)
    return target, seconds


def _readme_for_site(text: str) -> str:
    # The README's links to lessons point at notebooks/NN_name.ipynb; in the site the same relative path is the
    # executed copy, which mkdocs-jupyter turns into a page. Links to other files of the repository would point at
    # nothing in the site: they go to the file on GitHub.
    return re.sub(r"\]\((?!https?://|#|notebooks/)([^)]+)\)", r"](https://github.com/cvlab-course/cvlab/blob/main/\1)", text)


def build_site(executed: Path, site: Path) -> None:
    """Write docs (the README as the home page, the executed lessons in order) and run mkdocs."""
    docs = BOOK / "_docs"
    shutil.rmtree(docs, ignore_errors=True)
    (docs / "notebooks").mkdir(parents=True)
    (docs / "index.md").write_text(_readme_for_site((ROOT / "README.md").read_text()))
    nav = [{"Home": "index.md"}]
    for lesson in LESSONS:
        shutil.copy(executed / lesson.name, docs / "notebooks" / lesson.name)
        title = json.loads(lesson.read_text())["cells"][0]["source"][0].lstrip("# ").strip()
        nav.append({title: f"notebooks/{lesson.name}"})
    config = {
        "site_name": "cvlab: a hands-on computer-vision course",
        "docs_dir": str(docs),
        "site_dir": str(site),
        "use_directory_urls": False,  # pages open from the file system too (site/index.html)
        "theme": {"name": "material", "features": ["navigation.sections", "search.highlight"]},
        "plugins": ["search", {"mkdocs-jupyter": {"execute": False, "include_source": True, "ignore_h1_titles": True}}],
        "markdown_extensions": ["tables", "admonition", {"toc": {"permalink": True}}],
        "nav": nav,
    }
    config_file = BOOK / "_mkdocs.yml"
    config_file.write_text(json.dumps(config, indent=1))  # JSON is valid YAML
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "--clean", "-f", str(config_file)], check=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="quick mode (CVLAB_QUICK=1), what CI builds")
    p.add_argument("--force", action="store_true", help="execute every lesson, even where the cache is current")
    p.add_argument("--key-package", action="store_true", help="also re-execute when the cvlab package changed")
    p.add_argument("--execute-only", action="store_true", help="run and cache the lessons, build no site")
    p.add_argument("--site", type=Path, default=BOOK / "site", help="where the site goes (default book/site)")
    p.add_argument("lessons", nargs="*", type=Path, help="lessons to execute (default: all, in order)")
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "full"
    executed = BOOK / "_cache" / mode
    extra = package_hash() if args.key_package else ""
    total = time.perf_counter()
    failed = []
    for lesson in [path.resolve() for path in args.lessons] or LESSONS:
        try:  # a failing lesson does not stop the others: every failure is reported at the end
            _, seconds = execute(lesson, executed, quick=args.quick, force=args.force, extra_key=extra)
        except LessonFailed as e:
            print(f"{lesson.name:<45} FAILED", flush=True)
            failed.append(str(e))
            continue
        print(f"{lesson.name:<45} " + (f"executed in {seconds:6.0f} s ({mode} mode)" if seconds is not None
                                        else "cached (unchanged)"), flush=True)
    if failed:
        print(f"total {time.perf_counter() - total:.0f} s", flush=True)
        raise SystemExit("\n\n".join(failed) + f"\n\n{len(failed)} lesson(s) failed; no site built")
    if not args.execute_only:
        missing = [lesson.name for lesson in LESSONS if not (executed / lesson.name).exists()]
        if missing:
            raise SystemExit(f"no executed copy of {', '.join(missing)} in {executed}: run without lesson arguments first")
        build_site(executed, args.site)
        print(f"site: {args.site / 'index.html'}")
    print(f"total {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
