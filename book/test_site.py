"""The built reader's edition in a real browser: lesson 01's page shows every figure the executed lesson has.

Run by ``make test`` after ``book/build.py --quick`` has executed the lessons and built ``book/site``
(``make test-notebooks``). Debian's Chromium driven by Playwright, headless, offline, on the static files.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SITE = ROOT / "book" / "site"
EXECUTED = ROOT / "book" / "_cache" / "quick"
LESSON = "01_image_basics_color_spaces"
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: `apt-get install chromium` "
                                                         "(.ci/run installs it in CI)")


def _figures(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in out.get("data", {}) for c in cells if c["cell_type"] == "code" for out in c["outputs"])


def test_lesson_01_page_shows_its_figures_and_the_site_lists_every_lesson():
    page_file = SITE / "notebooks" / f"{LESSON}.html"
    if not page_file.exists():
        pytest.fail(f"{page_file} does not exist: build the site first (`python book/build.py --quick`, "
                    "which `make test` runs before this test)")
    expected = _figures(EXECUTED / f"{LESSON}.ipynb")
    assert expected >= 5, f"the executed lesson 01 has only {expected} figures"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, chromium_sandbox=False, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_file.as_uri(), wait_until="load", timeout=60_000)
            shown = page.evaluate("""() => [...document.querySelectorAll('img')]
                .filter(img => img.src.startsWith('data:image/png') && img.complete && img.naturalWidth > 50)
                .length""")
            title = page.title()
            nav = page.evaluate("""() => [...document.querySelectorAll('nav a.md-nav__link')]
                .map(a => a.getAttribute('href') || '')""")
        finally:
            browser.close()
    assert shown == expected, f"the page shows {shown} figures; the executed notebook has {expected}"
    assert title.startswith("01"), title
    linked = [name for name in LESSONS if any(f"{name}.html" in href for href in nav)]
    assert linked == LESSONS, f"navigation links {linked}"
