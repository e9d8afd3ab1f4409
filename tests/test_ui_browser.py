"""The MLflow UI, seen in headless Chromium after a tiny pipeline run.

`ugan ui` serves the tiny project's store (the nightly deployment's, shared with test_flows.py);
the page shows the experiment, the pipeline's parent run and, expanded, its stage runs. The
screenshot goes to reports/mlflow-ui.png (and the Prefect UI's to reports/prefect-ui.png).

Chromium comes from the Debian packages `chromium` and `chromium-driver` (`make test` installs
them); where they cannot be installed the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from test_flows import BIN, UNTRACKED_STAGES, free_port, nightly, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1600,1000",
)
# The expander of a parent run in MLflow's runs table.
EXPAND = (
    "//div[@role='row'][.//*[text()={name!r}]]//button[contains(@data-component-id, 'runname')]"
)
CLOSE_ASSISTANT = "button[data-component-id$='chat_panel.close']"  # MLflow 3's side panel


@pytest.fixture(scope="module")
def browser(tmp_path_factory, monkeypatch_module):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "Chromium is not installed (Debian packages chromium and chromium-driver; "
            "`make test` installs them where apt-get can)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    # Selenium must not look for, or download, a browser or driver of its own.
    monkeypatch_module.setenv("SE_OFFLINE", "true")
    monkeypatch_module.setenv("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """The nightly deployment of test_flows.py (session-wide: one full pipeline run)."""
    with nightly(tmp_path_factory) as instance:
        yield instance


@pytest.fixture(scope="module")
def mlflow_ui(project):
    """`ugan ui` on a free port of 127.0.0.1, with the project's store."""
    port = free_port()
    proc = project.start([str(BIN / "ugan"), "ui", "--port", str(port)], "mlflow-ui.log")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200, 120, "ui", proc)
    return url


def _page_text(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def _wait_for_text(browser, texts: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = [t for t in texts if t not in _page_text(browser)]
        if not missing:
            return
        assert time.monotonic() < deadline, f"not on the page: {missing}"
        time.sleep(0.5)


def test_mlflow_ui_shows_the_experiment_and_the_stage_runs(project, mlflow_ui, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{mlflow_ui}/#/experiments")
    _wait_for_text(browser, ["ugan"])

    experiment = project.mlflow.get_experiment_by_name("ugan").experiment_id
    browser.get(f"{mlflow_ui}/#/experiments/{experiment}/runs")
    parent = f"pipeline {project.first['pipeline_id']}"
    _wait_for_text(browser, [parent])
    browser.find_element(By.XPATH, EXPAND.format(name=parent)).click()
    stages = [s for s in project.first["ran"] if s not in UNTRACKED_STAGES]
    _wait_for_text(browser, stages)
    for close in browser.find_elements(By.CSS_SELECTOR, CLOSE_ASSISTANT):
        close.click()  # room for the runs table in the screenshot

    REPORTS.mkdir(exist_ok=True)
    shot = REPORTS / "mlflow-ui.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_prefect_ui_shows_the_nightly_flow_runs(project, browser):
    ui = project.api.removesuffix("/api")
    browser.get(f"{ui}/deployments")
    _wait_for_text(browser, ["nightly", "ugan-pipeline"])
    browser.get(f"{ui}/runs")
    _wait_for_text(browser, ["ugan-pipeline"])
    shot = REPORTS / "prefect-ui.png"
    REPORTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
