"""A real browser drives JupyterLab: run a notebook that calls cvlab.augment.preview, move a slider,
and check that the rendered image changed.

Debian's Chromium (``apt-get install chromium``; .ci/run installs it) is driven by Playwright for
Python, headless and offline. The test is skipped only when Chromium is absent.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: `apt-get install chromium` "
                                                         "(.ci/run installs it in CI)")

BUDGET_S = 120  # the whole test, JupyterLab start included
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

CELLS = [
    # the kernel's pid lets the teardown stop it even if JupyterLab cannot
    "import os, pathlib\n_ = pathlib.Path('kernel.pid').write_text(str(os.getpid()))",
    "import cvlab.augment\nfrom cvlab.data import sample_image\nphoto = sample_image('chelsea')[::4, ::4]",
    "cvlab.augment.preview(photo, 'geometric', rotate=(0, 180, 5, 30), scale=0.0, translate=0.0,\n"
    "                      perspective=0.0, crop=1.0, flip=0.0)",
]


def _notebook() -> dict:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(CELLS)]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def ms(self, cap_s: float = BUDGET_S) -> float:
        """Milliseconds left (for Playwright timeouts), at most ``cap_s`` seconds."""
        return max(1.0, 1000 * min(cap_s, self.end - time.monotonic()))


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free localhost port with a token, in a temp root holding the notebook; always shut down."""
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    (root / "preview.ipynb").write_text(json.dumps(_notebook()))
    port, token = _free_port(), secrets.token_hex(16)
    # A user's JupyterLab: no pytest marker (preview would draw a static figure, as under nbval) and
    # no settings, workspaces or user kernels from this machine.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "CVLAB_WIDGETS", "MPLBACKEND")}
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):
        env[var] = str(home / sub)
    notifications = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notifications.parent.mkdir(parents=True)  # no "get Jupyter news?" toast: the machine is offline anyway
    notifications.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    command = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # CI containers often run as root, which Jupyter refuses unless told
        command.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        yield {"url": url, "token": token, "root": root, "proc": proc, "log": tmp_path / "jupyterlab.log"}
    finally:
        try:  # graceful: the server shuts its kernels down too
            request = urllib.request.Request(f"{url}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=10).close()
            proc.wait(timeout=20)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        pid_file = root / "kernel.pid"  # kernels run in their own session, so stop ours by its pid if it outlived the server
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        log.close()


def _wait_for_server(lab: dict, deadline: Deadline) -> None:
    while True:
        if lab["proc"].poll() is not None:
            pytest.fail(f"JupyterLab exited with code {lab['proc'].returncode}:\n{lab['log'].read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab['url']}/api/status?token={lab['token']}", timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if deadline.ms() <= 1:
            pytest.fail(f"JupyterLab did not answer in time:\n{lab['log'].read_text()[-3000:]}")
        time.sleep(0.5)


# Reads the PNG bytes behind the preview's <img> (the Image widget renders a blob: URL).
READ_IMAGE = """async (img) => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"""
KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}"""


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def test_preview_slider_redraws_image_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    deadline = Deadline(BUDGET_S)
    _wait_for_server(lab, deadline)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, chromium_sandbox=False, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(f"{lab['url']}/lab/tree/preview.ipynb?token={lab['token']}", timeout=deadline.ms(60))
            page.wait_for_function(KERNEL_IDLE, timeout=deadline.ms(60), polling=250)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            image = page.locator(".cvlab-preview img")
            image.wait_for(state="visible", timeout=deadline.ms())
            before = bytes(image.evaluate(READ_IMAGE))
            rotate = page.locator(".cvlab-preview .widget-slider").filter(has_text="rotate")
            readout = rotate.locator(".widget-readout")
            assert readout.inner_text().strip() == "30"

            old_src = image.get_attribute("src")
            rotate.locator(".noUi-handle").focus()
            for _ in range(3):  # three steps of 5 degrees: the limit goes 30 -> 45
                page.keyboard.press("ArrowRight")
            page.wait_for_function("([img, src]) => img.src !== src", arg=[image.element_handle(), old_src],
                                   timeout=deadline.ms(), polling=100)
            after = bytes(image.evaluate(READ_IMAGE))
            assert readout.inner_text().strip() == "45"
            assert before[:8] == after[:8] == b"\x89PNG\r\n\x1a\n"
            old, new = _pixels(before), _pixels(after)
            assert old.shape == new.shape
            changed = (old != new).any(axis=2).mean()
            assert changed > 0.05, f"only {changed:.1%} of the preview's pixels changed after moving the slider"
        except (AssertionError, PlaywrightError) as e:
            page.screenshot(path=str(tmp_path / "failure.png"))
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
            raise AssertionError(f"{e}\ncell outputs: {outputs}\nscreenshot: {tmp_path / 'failure.png'}\n"
                                 f"JupyterLab log:\n{lab['log'].read_text()[-2000:]}") from e
        finally:
            browser.close()
