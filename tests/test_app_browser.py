"""A real browser uses the served app: ``python -m cvlab serve CHECKPOINT`` on a free localhost port,
an image uploaded through the page, and the label the page shows compared with ``cvlab.train.predict``'s.

Debian's Chromium driven by Playwright, headless and offline, as in test_browser.py; skipped only when
Chromium is absent. The server is stopped whether the test passes or fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

import cvlab
from cvlab import data
from cvlab.train import predict

from test_browser import CHROMIUM, CHROMIUM_ARGS, _free_port

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: `apt-get install chromium` "
                                                         "(.ci/run installs it in CI)")
BUDGET_S = 120


@pytest.fixture
def server(fmnist_checkpoint, tmp_path):
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "cvlab", "serve", str(fmnist_checkpoint), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"cvlab serve exited with code {proc.returncode}:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"cvlab serve did not answer in 60 s:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own process group: Gradio's worker threads go with it
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def test_the_served_app_shows_what_predict_says(server, fmnist_checkpoint, tmp_path):
    from playwright.sync_api import sync_playwright
    test = data.load("fashion_mnist", "test")
    files = [tmp_path / "ankle_boot.png", tmp_path / "chelsea.png"]
    Image.fromarray(test.images[0, 0].numpy()).save(files[0])   # a Fashion-MNIST test image
    Image.fromarray(data.sample_image("chelsea")).save(files[1])  # a colour photo, far from the training data
    model = cvlab.load(fmnist_checkpoint)
    expected = [model.classes[i] for i in predict(model, data.load_images(files, size=28, channels=1)).argmax(1)]
    assert expected[0] == test.classes[test.labels[0]]  # the model gets the easy one right

    start = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            shown = []
            for f in files:  # a fresh page per image: the label starts empty, so a shown label is this image's
                page.goto(server, wait_until="domcontentloaded", timeout=60_000)
                upload = page.locator("#image input[type=file]")
                upload.wait_for(state="attached", timeout=60_000)
                upload.set_input_files(str(f))
                label = page.locator("#prediction [data-testid=label-output-value]")
                label.wait_for(state="visible", timeout=60_000)
                shown.append(label.text_content().strip())
                if f == files[0]:
                    page.locator("#gradcam img").wait_for(state="visible", timeout=30_000)  # the Grad-CAM overlay
            page.screenshot(path=str(tmp_path / "app.png"))
        finally:
            browser.close()
    assert shown == expected
    assert time.monotonic() - start < BUDGET_S
