"""A real browser (headless Chromium via chromedriver) on the HTML report and on the MLflow UI.

Needs Debian's `chromium` and `chromium-driver` packages; skipped with the reason when missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import evaluate
from fake_openai import FakeOpenAI, Fault

PAYLOAD = (
    "<script>window.__pwned = 1; document.title = 'pwned'</script>"
    '<img src="x" onerror="window.__pwned = 2"> & done'
)
SCORE_HEADER = "answer_similarity/v1 score"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, with nothing in it that calls home."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (dev packages)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # with both paths given, Selenium Manager downloads nothing
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _report(tracking_uri: str, experiment: str, tmp_path: Path, capsys: Any) -> Path:
    """A two-model report from a real run: one answer is hostile markup, one row fails."""

    def reply(body: dict[str, Any]) -> str:
        if body["model"] == "chat":
            prompt = body["messages"][0]["content"]
            # The Spark rows' target is in the prompt: they get 5, the others 2.
            return f"score: {5 if 'Spark is' in prompt else 2}\njustification: <b>graded</b>"
        question = body["messages"][-1]["content"]
        if body["model"] == "fake-model-b":
            return PAYLOAD if "Spark" in question else "Model B: a platform."
        return "Spark is fast." if "Spark" in question else "A platform."

    report = tmp_path / "report.html"
    with FakeOpenAI(
        models=("fake-model", "fake-model-b"),
        reply=reply,
        gateway_endpoints={"chat": "llm/v1/chat"},
    ) as server:
        server.script = [Fault(status=500)]  # with --concurrency 1: fake-model's first row
        args = [
            "--stack", "external", "--model", "fake-model,fake-model-b",
            "--base-url", server.url, "--gateway-url", server.root,
            "--tracking-uri", tracking_uri, "--experiment", experiment,
            "--cache-dir", str(tmp_path / "cache"), "--max-retries", "0", "--concurrency", "1",
            "--quiet", "--report", str(report),
        ]  # fmt: skip
        code, out, err = evaluate(args, capsys)
    assert code == 3, out + err  # the failed row
    return report


def _column(driver: Any, header: str) -> list[str]:
    from selenium.webdriver.common.by import By

    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#rows thead th")]
    index = headers.index(header)
    rows = driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[index].text for r in rows if r.is_displayed()]


def _scores(driver: Any) -> list[str]:
    return [text.split("\n")[0] for text in _column(driver, SCORE_HEADER)]


def test_report_table_charts_and_escaping_in_chromium(
    browser, tracking_uri, capsys, request, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    report = _report(tracking_uri, request.node.name, tmp_path, capsys)
    browser.get(report.as_uri())
    _wait(browser, lambda d: d.find_element(By.ID, "shown").text == "4 of 4 rows")
    # Escaping: the hostile answer is text on the page, and none of it ran.
    assert browser.title == "Comparison of fake-model, fake-model-b"
    assert browser.execute_script("return window.__pwned === undefined")
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert not browser.find_elements(By.TAG_NAME, "img")
    assert PAYLOAD in _column(browser, "answer")
    assert "<b>graded</b>" in _column(browser, "answer_similarity/v1 justification")
    # Self-contained: the page loaded nothing, and its policy blocked nothing of its own.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    logs = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in logs if "Content Security Policy" in m], logs
    # Charts: a comparison chart and a histogram per model, drawn with bars of some height.
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.comparison, svg.histogram")
    assert len(charts) == 3 and all(c.size["width"] > 100 and c.size["height"] > 50 for c in charts)
    heights = [
        float(b.get_attribute("height"))
        for b in browser.find_elements(By.CSS_SELECTOR, "svg rect.bar")
    ]
    assert sum(h > 0 for h in heights) >= 4
    # At 1400 px the page does not scroll sideways, and the row table fits its box: every
    # column in view, none behind a scrollbar at the bottom of a long table.
    widths = browser.execute_script(
        "const box = document.querySelector('.rows-wrap');"
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.getElementById('rows').scrollWidth, box.clientWidth];"
    )
    assert browser.execute_script("return window.innerWidth") == 1400
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
    # Sorting: ascending puts the unscored (failed) row last; a second click reverses.
    header = browser.find_element(By.XPATH, f"//th[button='{SCORE_HEADER}']")
    header.find_element(By.TAG_NAME, "button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert _scores(browser) == ["2", "5", "5", "unscored"]
    header.find_element(By.TAG_NAME, "button").click()
    assert _scores(browser) == ["5", "5", "2", "unscored"]
    # Filtering: by text, by status, by model; the count follows.
    box = browser.find_element(By.ID, "filter-text")
    box.send_keys("model b")
    assert _column(browser, "answer") == ["Model B: a platform."]
    assert browser.find_element(By.ID, "shown").text == "1 of 4 rows"
    box.clear()
    box.send_keys(" ")  # an input event with an empty query: everything again
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
    assert _column(browser, "status") == ["failed\nHTTP 500: scripted failure"]
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-model")).select_by_value("fake-model-b")
    assert _column(browser, "model") == ["fake-model-b", "fake-model-b"]


@pytest.mark.slow
def test_mlflow_ui_shows_the_run_its_judge_metric_and_a_rows_assessment(
    browser, fake, run_args, tracking_uri, mlflow_ui, capsys, request
):
    """MLflow's UI on one run (the worker's `mlflow server` on `tracking_uri`): the run page
    with its judge metric, then the GenAI UI's Evaluation runs → the run → a row → its judge's
    feedback."""
    import mlflow
    from selenium.webdriver.common.by import By

    fake.reply = lambda body: (
        "score: 2\njustification: Misses the lifecycle part."
        if body["model"] == "chat"
        else "A fake answer."
    )
    code, _, err = evaluate(run_args, capsys)
    assert code == 0, err
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(request.node.name)
    (run,) = client.search_runs([experiment.experiment_id])
    browser.get(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")

    def page_text(driver: Any) -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    # The UI is a React app: wait until the run's data has been fetched and drawn.
    _wait(browser, lambda d: "answer_similarity/v1/mean" in page_text(d), timeout=90)
    text = page_text(browser)
    assert run.info.run_name.startswith("fake-model ") and run.info.run_name in text
    assert request.node.name in text  # the experiment, in the breadcrumb

    browser.get(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/evaluation-runs")

    def visible(xpath: str) -> Any:
        return _wait(
            browser,
            lambda d: next((e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()), None),
            timeout=90,
        )

    visible(f"//a[normalize-space(text())='{run.info.run_name}']").click()  # the run is listed
    visible("//*[contains(text(), 'What is MLflow?')]").click()  # its rows: open one
    visible("//button[contains(., 'Assess')]").click()
    toggle = "[data-component-id='shared.model-trace-explorer.toggle-assessment-expanded']"
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, toggle))[0].click()
    _wait(
        browser, lambda d: "Misses the lifecycle part." in d.find_element(By.TAG_NAME, "body").text
    )
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "answer_similarity" in text and "Rationale" in text
    assert "chat (openai:chat)" in text  # the judge: endpoint and the model behind it
