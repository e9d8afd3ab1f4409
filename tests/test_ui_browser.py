"""The MLflow UI and the Prefect UI, seen in headless Chromium after the nightly deployment's
first run (the deployment of nightly_harness.py, shared with test_flows.py).

MLflow: the experiment opens on its runs table (not MLflow 3's GenAI traces view), with the
pipeline's parent run and, expanded, exactly its stage runs; two clicks from there (expand the
parent, the chart view) show FID against step of the ordinary and the unbalanced run on one
chart and the report's figures (FID of both runs, their sample grids); the Models page lists
the registered model with its champion alias. Prefect: every flow run of the deployment is
Completed, and the first one has exactly one Completed task run per DVC stage.

Names are matched as whole cells, never as substrings (`train_gan@dcgan` is inside
`train_gan@dcgan-unbalanced`). Screenshots go to the test's temporary folder and are copied to
reports/screenshots/, which .gitignore ignores, so the work tree stays clean.

Chromium comes from the Debian packages `chromium` and `chromium-driver` (`make chromium`,
which `make test` runs). Where they are missing the tests skip, except under CI (`CI` set, as
.ci/run does): there a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from nightly_harness import BIN, MODEL, UNTRACKED_STAGES, free_port, nightly, wait_for

from ugan.pipeline.dvc_plan import dvc_stages
from ugan.pipeline.flows import DEFAULT_DEPLOYMENT, FLOW_NAME
from ugan.tracking.store import runs_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "reports" / "screenshots"  # git-ignored (.gitignore)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1600,2400",  # tall: MLflow draws only the chart cards in view
)
# MLflow's runs table: the run-name cells, a parent run's expander, the view switch.
NAME_CELL = "//div[@role='gridcell'][@col-id='attributes.`Run Name`']//a[contains(@href, '/runs/')]"
EXPAND = (
    "//div[@role='row'][.//a[contains(@href, '/runs/')]/span[text()={name!r}]]"
    "//button[contains(@data-component-id, 'runnamecellrenderer')]"
)
CHART_VIEW = "//label[.//input[@name='runs-view-mode' and @value='CHART']]"
CARD = "//div[@data-testid='experiment-view-compare-runs-card'][.//h4[@title={title!r}]]"
CHART_SEARCH = "input[placeholder='Search metric charts']"
CLOSE_ASSISTANT = "button[data-component-id$='chat_panel.close']"  # MLflow 3's side panel


# -- Chromium ------------------------------------------------------------------------------------


def chromium_or_skip() -> tuple[str, str]:
    """The paths of chromium and chromedriver. Missing: a skip, or under CI a failure."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = (
        "Chromium is not installed (Debian packages chromium and chromium-driver: "
        "`make chromium`, which `make test` runs)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the browser checks must run")
    pytest.skip(reason)


def start_chromium(user_data_dir: Path, *flags: str):
    """A headless Chromium session; Selenium neither looks for nor downloads a browser."""
    chromium, driver = chromium_or_skip()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("selenium is not installed (the dev extra); CI is set")
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    os.environ["SE_OFFLINE"] = os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, *flags, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def save_screenshot(browser, folder: Path, name: str) -> Path:
    """`name` in `folder` (the test's), copied to reports/screenshots/ (git-ignored)."""
    shot = folder / name
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copyfile(shot, SCREENSHOTS / name))
    if (ROOT / ".git").exists() and shutil.which("git"):
        ignored = subprocess.run(["git", "check-ignore", "-q", str(copy)], cwd=ROOT)
        assert ignored.returncode == 0, f"{copy} would dirty the work tree: not git-ignored"
    return copy


def wait_until(check, what: str, timeout: float = 60):
    """`check()`'s first truthy value; on timeout an assertion naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # the page is still rendering: an element went stale or is absent
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"not on the page within {timeout} s: {what}"
        time.sleep(0.5)


def _text(element) -> str:
    return " ".join((element.get_attribute("textContent") or "").split())


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Chromium's and chromedriver's paths; session-wide, so a missing browser stops a test
    before any slower fixture starts."""
    return chromium_or_skip()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    session = start_chromium(tmp_path_factory.mktemp("chromium"))
    yield session
    session.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


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


# -- MLflow --------------------------------------------------------------------------------------


def _run_names(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [_text(cell) for cell in browser.find_elements(By.XPATH, NAME_CELL)]


def _open_runs(browser, project, mlflow_ui) -> str:
    """The experiment's page as `ugan run` links it; returns the first pipeline's parent."""
    from selenium.webdriver.common.by import By

    experiment = project.mlflow.get_experiment_by_name("ugan").experiment_id
    browser.get(runs_url(experiment, mlflow_ui))
    parent = f"pipeline {project.first['pipeline_id']}"
    wait_until(lambda: parent in _run_names(browser), f"the runs table with {parent!r}")
    for close in browser.find_elements(By.CSS_SELECTOR, CLOSE_ASSISTANT):
        close.click()  # room for the runs table
    return parent


def _expand(browser, parent: str) -> None:
    """Show the stage runs of `parent` (the expander toggles; the UI remembers it)."""
    from selenium.webdriver.common.by import By

    if not [n for n in _run_names(browser) if not n.startswith("pipeline ")]:
        browser.find_element(By.XPATH, EXPAND.format(name=parent)).click()


def test_mlflow_experiment_opens_on_its_runs_table_with_each_stage_run(
    chromium, browser, project, mlflow_ui, shots
):
    from selenium.webdriver.common.by import By

    parent = _open_runs(browser, project, mlflow_ui)
    assert "/runs" in browser.current_url.split("#", 1)[1].split("?")[0]
    page = _text(browser.find_element(By.TAG_NAME, "body"))
    assert "Token Usage" not in page and "Tool calls" not in page, "the GenAI traces overview"
    parents = [n for n in _run_names(browser) if n.startswith("pipeline ")]
    assert Counter(parents)[parent] == 1

    _expand(browser, parent)
    expected = sorted(s for s in project.first["ran"] if s not in UNTRACKED_STAGES)

    def children() -> list[str]:
        names = sorted(n for n in _run_names(browser) if not n.startswith("pipeline "))
        return names if names == expected else []

    wait_until(children, f"exactly the stage runs {expected} under {parent!r}", timeout=30)
    save_screenshot(browser, shots, "mlflow-runs.png")


def test_two_clicks_show_fid_of_both_runs_on_one_chart_and_their_sample_grids(
    chromium, browser, project, mlflow_ui, shots
):
    from selenium.webdriver.common.by import By

    parent = _open_runs(browser, project, mlflow_ui)
    _expand(browser, parent)  # click 1 (done already by the test above in this browser)
    wait_until(lambda: "report" in _run_names(browser), "the stage runs")
    browser.find_element(By.XPATH, CHART_VIEW).click()  # click 2

    # The report's figures, logged as MLflow images: the first section of the chart view.
    for title in ("report/fid", "report/samples"):
        card = wait_until(
            lambda title=title: browser.find_element(By.XPATH, CARD.format(title=title)),
            f"chart card {title}",
        )
        wait_until(
            lambda card=card: [
                i for i in card.find_elements(By.TAG_NAME, "img")
                if int(i.get_attribute("naturalWidth") or 0) > 100
            ],
            f"the image of {title}, loaded",
        )  # fmt: skip
    save_screenshot(browser, shots, "mlflow-charts.png")

    # The metric chart `fid` (IS / FID / KID per checkpoint, logged by evaluate@<run>).
    browser.find_element(By.CSS_SELECTOR, CHART_SEARCH).send_keys("fid")  # typing, no click
    card = wait_until(lambda: browser.find_element(By.XPATH, CARD.format(title="fid")), "fid")
    drawn = wait_until(
        lambda: [
            p for p in card.find_elements(By.CSS_SELECTOR, "path.js-line")
            if "stroke-opacity: 1;" in p.get_attribute("style") and p.get_attribute("d")
        ],
        "lines in the fid chart",
    )  # fmt: skip
    legend = {}
    for span in card.find_elements(By.XPATH, ".//span[contains(., ' (fid)')]"):
        mark = span.find_elements(By.XPATH, "preceding-sibling::*[local-name()='svg']/*")
        if mark:
            legend[_text(span).removesuffix(" (fid)")] = _stroke(mark[0])
    runs = ("evaluate@dcgan", "evaluate@dcgan-unbalanced")
    assert set(runs) <= set(legend), legend
    assert len({p.get_attribute("d") for p in drawn}) == 2, "one line per evaluated run"
    assert {legend[r] for r in runs} <= {_stroke(p) for p in drawn}, (legend, drawn)
    save_screenshot(browser, shots, "mlflow-fid-chart.png")


def _stroke(element) -> str:
    style = element.get_attribute("style") or ""
    return next(s.split(":", 1)[1].strip() for s in style.split(";") if "stroke:" in s)


def test_the_models_page_lists_the_registered_model_with_its_champion(
    chromium, browser, project, mlflow_ui, shots
):
    from selenium.webdriver.common.by import By

    browser.get(f"{mlflow_ui}/#/models?workflowType=machine_learning")
    row = f"//div[@role='row'][.//a[normalize-space(.)={MODEL!r}]]"
    found = wait_until(lambda: browser.find_element(By.XPATH, row), f"model {MODEL}")
    assert "champion" in _text(found)
    names = [_text(a) for a in browser.find_elements(By.XPATH, "//div[@role='row']//a")]
    assert names.count(MODEL) == 1
    save_screenshot(browser, shots, "mlflow-models.png")


# -- Prefect -------------------------------------------------------------------------------------


def _flow_runs(project) -> list[dict]:
    """The deployment's flow runs that have started (its cron schedule also makes future ones,
    in state Scheduled)."""
    deployment = project.deployment()["id"]
    body = {"deployments": {"id": {"any_": [deployment]}}}
    response = httpx.post(f"{project.api}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return [run for run in response.json() if run["state"]["type"] != "SCHEDULED"]


def test_prefect_ui_shows_the_nightly_flow_runs_completed_with_a_task_run_per_stage(
    chromium, browser, project, shots
):
    from selenium.webdriver.common.by import By

    ui = project.api.removesuffix("/api")
    browser.get(f"{ui}/deployments")
    wait_until(
        lambda: browser.find_elements(By.XPATH, f"//a[normalize-space(.)={DEFAULT_DEPLOYMENT!r}]"),
        f"deployment {FLOW_NAME}/{DEFAULT_DEPLOYMENT}",
    )
    runs = _flow_runs(project)
    assert runs, "the deployment has flow runs"
    browser.get(f"{ui}/runs")

    def states() -> dict[str, str]:
        seen = {}
        for item in browser.find_elements(By.CSS_SELECTOR, ".flow-run-list-item"):
            name = item.find_element(By.CSS_SELECTOR, "a.flow-run-bread-crumbs__flow-run-link")
            seen[_text(name)] = _text(item.find_element(By.CSS_SELECTOR, ".state-badge"))
        return seen if {r["name"] for r in runs} <= set(seen) else {}

    listed = wait_until(states, f"flow runs {[r['name'] for r in runs]}")
    assert {r["name"]: listed[r["name"]] for r in runs} == {r["name"]: "Completed" for r in runs}
    save_screenshot(browser, shots, "prefect-runs.png")

    prefix = project.first["pipeline_id"].removeprefix("prefect-")
    (first,) = [r for r in runs if r["id"].replace("-", "").startswith(prefix)]
    browser.get(f"{ui}/runs/flow-run/{first['id']}")
    header = ".page-heading-flow-run__meta .state-badge"
    badge = wait_until(lambda: browser.find_element(By.CSS_SELECTOR, header), "flow run state")
    assert _text(badge) == "Completed"
    browser.find_element(By.ID, "task-runs").click()
    stages = dvc_stages(project.path)

    def task_runs() -> list[tuple[str, str]]:
        items = browser.find_elements(By.CSS_SELECTOR, ".task-run-list-item")
        found = [
            (
                _text(item.find_element(By.CSS_SELECTOR, ".task-run-list-item__breadcrumbs a")),
                _text(item.find_element(By.CSS_SELECTOR, ".state-badge")),
            )
            for item in items
        ]
        return found if len(found) >= len(stages) else []

    found = wait_until(task_runs, f"task runs of {first['name']}")
    by_stage = Counter(name for name, _ in found if not name.startswith("champion"))
    assert by_stage == Counter(stages), "one task run per DVC stage, named as the stage"
    assert {state for _, state in found} == {"Completed"}, found
    assert [name for name, _ in found if name.startswith("champion")], "the champion check"
    save_screenshot(browser, shots, "prefect-flow-run.png")
