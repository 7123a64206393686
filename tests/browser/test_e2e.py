"""The main flow in a real browser: start the app, load the default model, open a feature in the
explorer, run a small ablation in the causal lab, and check what is rendered.

Run: ``.venv/bin/python -m pytest -m browser tests/browser`` (needs chromium: ``make chromium``).
With ``WORKBENCH_UPDATE_SCREENSHOTS=1`` the causal lab's screenshot is copied to
``docs/screenshots/causal-lab.png`` (the explorer's stays in pytest's tmp dir: the committed
``feature-explorer.png`` is framed by hand).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
FEATURE = 493  # a feature of the default SAE named by hypotheses/intent-l15.yaml

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def chromium_path() -> str | None:
    return os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_app(port: int) -> subprocess.Popen:
    """``streamlit run Home.py`` on ``port`` (headless, local only)."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true", "--server.address",
         "localhost", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def app_url():
    port = free_port()
    process = start_app(port)
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium found (install it with `make chromium`, or set WORKBENCH_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait_idle(page, timeout: float = 300_000) -> None:
    """Until the script has finished running (no 'Running...' status widget)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)


def save(page, tmp_path: Path, name: str, publish: bool = False) -> Path:
    """A screenshot of the whole page (Streamlit scrolls inside its main section, so the viewport
    is stretched to the content first); copied to docs/screenshots/ when ``publish`` and
    ``WORKBENCH_UPDATE_SCREENSHOTS=1``."""
    path = tmp_path / name
    size = page.viewport_size
    height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body).scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height) + 40, size["height"]), 8000)})
    page.wait_for_timeout(800)  # plotly re-lays out to the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    if publish and os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / name)
    return path


def test_explore_a_feature_then_ablate_it_in_the_causal_lab(app_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Home: the default model and SAE load
    page.goto(app_url)
    page.get_by_text("Residual width").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_text("SmolLM2").first.is_visible()

    # Feature explorer: open one feature
    page.get_by_role("link", name="Feature explorer").click()
    feature_box = page.get_by_role("spinbutton", name="Feature index")
    feature_box.wait_for(timeout=300_000)
    wait_idle(page)
    feature_box.fill(str(FEATURE))
    feature_box.press("Enter")
    page.get_by_text(f"Feature {FEATURE} at").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() >= 1
    save(page, tmp_path, "feature-explorer.png")

    # Causal lab: the explorer's feature is pre-filled; ablate it on a few lie scenarios
    page.get_by_role("link", name="Causal lab").click()
    page.get_by_role("button", name="Run sweep").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_role("textbox", name="Features").input_value() == str(FEATURE)
    scenarios = page.get_by_role("spinbutton", name="Scenarios", exact=True)
    scenarios.fill("4")
    scenarios.press("Enter")
    wait_idle(page)
    random_sets = page.get_by_role("spinbutton", name="Random matched feature sets")
    random_sets.fill("1")
    random_sets.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text(f"Result: ablating feature {FEATURE}").wait_for(timeout=300_000)
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() >= 1  # the sweep plot
    assert page.locator('[data-testid="stDataFrame"]').count() >= 2  # numbers and generations
    assert page.get_by_text("n=4 scenarios").first.is_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shot = save(page, tmp_path, "causal-lab.png", publish=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    page.close()
