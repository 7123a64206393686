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
from pathlib import Path

import pytest

from ui.serve import CHROMIUM_ARGS, chromium_path, free_port, start_streamlit, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
FEATURE = 38  # a feature of the default SAE named by hypotheses/intent-l15.yaml

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def app_url():
    port = free_port()
    process = start_streamlit("Home.py", port)
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        stop(process)


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
    feature_box = page.get_by_role("textbox", name="Feature index")
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
    scenarios = page.get_by_role("textbox", name="Scenarios")
    scenarios.fill("4")
    scenarios.press("Enter")
    wait_idle(page)
    random_sets = page.get_by_role("textbox", name="Random matched feature sets")
    random_sets.fill("1")
    random_sets.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text(f"Result: ablate feature {FEATURE}").wait_for(timeout=300_000)
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() >= 1  # the sweep plot
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1  # the numbers
    assert page.locator('[data-testid="stTable"]').count() >= 1  # the generated answers, wrapped to the page
    assert page.get_by_text("n=4 scenarios").first.is_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shot = save(page, tmp_path, "causal-lab.png", publish=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    page.close()


TWO_SESSION_TEXT = "user: Repeat after me: the capital of Peru is Quito.\nassistant: The capital of Peru is Quito."


def _start_lab_sweep(page, app_url: str) -> None:
    """Open the causal lab in a session of its own and start a small ablation of FEATURE."""
    page.goto(f"{app_url}/Causal_lab")
    page.get_by_role("button", name="Run sweep").wait_for(timeout=300_000)
    wait_idle(page)
    # 10 scenarios: a sweep long enough (tens of seconds here) that the other session starts while it runs
    for label, value in (("Features", str(FEATURE)), ("Scenarios", "10"), ("Random matched feature sets", "1")):
        box = page.get_by_role("textbox", name=label)
        box.fill(value)
        box.press("Enter")
        wait_idle(page)
    page.get_by_role("button", name="Run sweep").click()


def _lab_numbers(page) -> list[str]:
    page.get_by_text(f"Result: ablate feature {FEATURE}").wait_for(timeout=600_000)
    wait_idle(page)
    return (page.locator('[data-testid="stMetric"]').all_inner_texts()
            + page.locator('[data-testid="stCaptionContainer"]').all_inner_texts())


def _start_try_your_own(page, app_url: str) -> None:
    """Open the explorer in a session of its own and start "Try your own" on a new conversation."""
    page.goto(f"{app_url}/Feature_explorer")
    page.get_by_role("button", name="Show activations").wait_for(timeout=300_000)
    wait_idle(page)
    page.get_by_role("textbox", name="Conversation or text").fill(TWO_SESSION_TEXT)
    page.get_by_role("button", name="Show activations").click()


def _explorer_numbers(page) -> list[str]:
    page.get_by_text("Features firing at token").wait_for(timeout=600_000)
    wait_idle(page)
    return page.locator('[data-testid="stTable"]').all_inner_texts()


def test_two_browser_sessions_at_once_get_what_they_get_alone(app_url, browser):
    """A lab sweep in one session and "Try your own" in another, started together, show exactly the
    numbers each shows when run alone (the app shares one model between sessions)."""
    errors: list[str] = []
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append(page)
    lab, explorer = pages

    _start_lab_sweep(lab, app_url)
    lab_alone = _lab_numbers(lab)
    _start_try_your_own(explorer, app_url)
    explorer_alone = _explorer_numbers(explorer)

    _start_lab_sweep(lab, app_url)  # a fresh page: a new session
    _start_try_your_own(explorer, app_url)
    # The explorer's capture was asked for while the sweep ran (the sweep takes far longer than opening
    # a page), so the two sessions used the model at the same time.
    assert lab.get_by_text(f"Result: ablate feature {FEATURE}").count() == 0
    explorer_together, lab_together = _explorer_numbers(explorer), _lab_numbers(lab)

    assert any("n=10 scenarios" in text for text in lab_alone), lab_alone
    assert explorer_alone and any(char.isdigit() for char in explorer_alone[0])
    assert lab_together == lab_alone
    assert explorer_together == explorer_alone
    for page in pages:
        assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    for page in pages:
        page.context.close()
