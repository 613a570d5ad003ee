"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium against a
live Shipyard (``shipyard up`` with its registry and a local busybox base), with no network
beyond loopback. Screenshots of each page go to tests/artifacts/ for review."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.helpers import webhook_payloads as wp
from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.live import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE} AS app
ARG GREETING=hello
COPY app.txt /app/app.txt
RUN for i in 1 2 3 4 5 6; do echo "working $i"; printf '\\033[32mok\\033[0m step %s\\n' "$i"; sleep 0.4; done
RUN echo "$GREETING" > /app/greeting

FROM app AS slow
RUN echo "sleeping a long time"; sleep 300
"""


def _git(cwd: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
    }  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = tmp_path_factory.mktemp("dash-repo")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    (repo / "app.txt").write_text("hello\n")
    _git(repo, "init", "-q", "--initial-branch=main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    with live.client() as c:
        r = c.post("/v1/projects", json={"name": "shop", "description": "Web shop and workers"})
        assert r.status_code == 200, r.text
        body = {
            "name": "web",
            "vcsData": {"projectUrl": repo.as_uri(), "projectBranch": "main"},
            "buildSettings": {
                "dockerfile": {"dockerFilePath": "/Dockerfile", "dockerWorkDir": "/"}
            },
            "buildConfiguration": {"dockerfileTarget": "app"},
        }
        assert c.post("/v1/projects/shop/services/combined", json=body).status_code == 200
        job = {"name": "migrate", "vcsData": {"projectUrl": repo.as_uri(), "projectBranch": "main"}}
        assert c.post("/v1/projects/shop/jobs/manual", json=job).status_code == 200
    return "shop"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing = "chromium and chromium-driver are not installed (scripts/install-system.sh)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs them: a skip there would hide the browser suite
        pytest.skip(missing)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        # Nothing but loopback resolves: an asset from anywhere else would fail to load.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str, phone: bool = False) -> None:
    """A full-page screenshot (not just the viewport) under tests/artifacts/; ``phone``: as
    a 390 px wide phone renders it."""
    width = 390 if phone else driver.execute_script("return document.documentElement.clientWidth")
    driver.execute_script("window.scrollTo(0, 0)")  # the sticky header stays on top
    metrics = {"width": width, "height": 844, "deviceScaleFactor": 1, "mobile": phone}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        metrics["height"] = min(height, 4000)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        data = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    (ARTIFACTS / f"dashboard-{name}.png").write_bytes(base64.b64decode(data["data"]))


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 90) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def text_of(driver: WebDriver, css: str) -> str:
    # In one script: htmx may swap the element between a lookup and a read.
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css
    )
    return str(found)


def log_text(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.getElementById('logview').textContent"))


def assets_from_elsewhere(driver: WebDriver, live: LiveServer) -> list[str]:
    entries = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return [e for e in entries if not e.startswith(live.url)]


def sign_in(driver: WebDriver, live: LiveServer, token: str) -> None:
    driver.get(f"{live.url}/signin")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    field.send_keys(Keys.ENTER)  # the keyboard submits


@pytest.fixture
def signed_in(browser: WebDriver, live: LiveServer) -> WebDriver:
    """The browser with the admin token's session (each test may run alone)."""
    browser.get(f"{live.url}/signin")
    if browser.get_cookie("shipyard_session") is None:
        sign_in(browser, live, live.token)
        wait_for(browser, lambda d: d.get_cookie("shipyard_session"))
    return browser


def test_a_bad_token_shows_an_error(browser: WebDriver, live: LiveServer) -> None:
    browser.delete_all_cookies()
    browser.get(f"{live.url}/")
    assert browser.current_url.startswith(f"{live.url}/signin")  # pages need a session
    sign_in(browser, live, "sy_not-a-real-token")
    error = wait_for(browser, lambda d: text_of(d, "#signin-error"))
    assert error == "That token is not valid."
    assert browser.get_cookie("shipyard_session") is None
    shot(browser, "signin-error")


def test_sign_in_and_see_the_projects_services_and_builds(
    browser: WebDriver, live: LiveServer, project: str
) -> None:
    with live.client() as c:
        r = c.post(f"/v1/projects/{project}/services/web/build", json={})
        first = r.json()["data"]["id"]
    live.wait(f"/v1/projects/{project}/services/web/build/{first}")
    browser.delete_all_cookies()
    sign_in(browser, live, live.token)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#projects a.tile"))
    cookie = browser.get_cookie("shipyard_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert live.token not in browser.current_url
    assert assets_from_elsewhere(browser, live) == []
    shot(browser, "projects")

    browser.find_element(By.CSS_SELECTOR, f'a[href="/ui/projects/{project}"]').click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "services"))
    assert "migrate" in text_of(browser, "#jobs")
    assert f"/v1/webhooks/github/{project}" in text_of(browser, "#webhook-github")
    shot(browser, "project")

    browser.find_element(By.LINK_TEXT, "web").click()
    row = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-build="{first}"]'))
    assert "SUCCESS" in row[0].text and "API" in row[0].text and "main" in row[0].text
    # The status filter swaps the list in place (htmx) and keeps the URL shareable.
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("FAILURE")
    wait_for(browser, lambda d: "No builds match" in text_of(d, "#builds"))
    assert "status=FAILURE" in browser.current_url
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-build="{first}"]'))
    shot(browser, "service")

    # Keyboard only: Tab reaches "Start build", Enter opens the form.
    browser.find_element(By.TAG_NAME, "body").click()
    for _ in range(40):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.get_attribute("id") == "start-build":
            break
    assert browser.switch_to.active_element.get_attribute("id") == "start-build"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: d.find_elements(By.ID, "start-form"))


def test_start_a_build_and_watch_its_log_live_until_success(
    signed_in: WebDriver, live: LiveServer, project: str
) -> None:
    browser = signed_in
    browser.get(f"{live.url}/ui/projects/{project}/services/web")
    browser.find_element(By.ID, "start-build").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "start-form"))
    browser.find_element(By.CSS_SELECTOR, "[data-add-row=buildArguments]").click()
    browser.find_element(By.CSS_SELECTOR, "[data-rows=buildArguments] [data-k]").send_keys(
        "GREETING"
    )
    browser.find_element(By.CSS_SELECTOR, "[data-rows=buildArguments] [data-v]").send_keys(
        "from-the-page"
    )
    browser.find_element(By.CSS_SELECTOR, "[data-add-row=dockerSecretMounts]").click()
    browser.find_element(By.CSS_SELECTOR, "[data-rows=dockerSecretMounts] [data-k]").send_keys(
        "npm"
    )
    browser.find_element(By.CSS_SELECTOR, "[data-rows=dockerSecretMounts] [data-v]").send_keys(
        "npm-secret-value"
    )
    shot(browser, "start-build")
    browser.find_element(By.ID, "start-submit").click()
    wait_for(browser, lambda d: "/builds/" in d.current_url)
    build_id = browser.current_url.rsplit("/", 1)[-1]

    # Lines arrive while the build is still running (the live stream), then SUCCESS.
    seen_running = wait_for(
        browser,
        lambda d: (
            "working 1" in log_text(d)
            and text_of(d, "#live-state").lower() == "live"
            and text_of(d, "#build-status") != "SUCCESS"
        ),
        timeout=120,
    )
    assert seen_running
    shot(browser, "build-running")
    wait_for(browser, lambda d: text_of(d, "#build-status") == "SUCCESS", timeout=180)
    wait_for(browser, lambda d: "==> success" in log_text(d))
    text = log_text(browser)
    assert "working 6" in text and "from-the-page" not in text  # build-arg values are redacted
    assert "npm-secret-value" not in browser.page_source
    # ANSI colours became styled spans, not escape codes.
    assert "\x1b[" not in text
    assert browser.find_elements(By.CSS_SELECTOR, "#logview .txt span")
    assert text_of(browser, "#live-state").lower() == "finished"
    # Timeline, steps, image reference with a copy button.
    assert "Uploading" in text_of(browser, ".timeline")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#steps tbody tr")) >= 5
    assert "@sha256:" in text_of(browser, "#image-ref")
    assert browser.find_elements(By.CSS_SELECTOR, 'button[data-copy="#image-ref"]')
    with live.client() as c:
        data = c.get(f"/v1/projects/{project}/services/web/build/{build_id}").json()["data"]
    assert data["status"] == "SUCCESS"
    assert assets_from_elsewhere(browser, live) == []
    shot(browser, "build-success")

    # A line link: #L<n> highlights that line.
    browser.get(f"{live.url}/ui/projects/{project}/services/web/builds/{build_id}#L3")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#L3.hl"))
    # Search over the whole log lists the matching lines.
    box = browser.find_element(By.ID, "log-search-input")
    box.send_keys("working 4")
    box.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "matching line" in text_of(d, "#log-results"))
    shot(browser, "build-search")


def test_rerun_a_build_from_its_page(signed_in: WebDriver, live: LiveServer, project: str) -> None:
    browser = signed_in
    with live.client() as c:
        r = c.post(
            f"/v1/projects/{project}/services/web/build",
            json={"overrides": {"buildArguments": {"GREETING": "rerun-me"}}},
        )
        original = r.json()["data"]["id"]
    live.wait(f"/v1/projects/{project}/services/web/build/{original}")
    browser.get(f"{live.url}/ui/projects/{project}/services/web/builds/{original}")
    browser.find_element(By.ID, "rerun-build").click()
    wait_for(
        browser, lambda d: not d.current_url.endswith(original) and "/builds/" in d.current_url
    )
    rerun = browser.current_url.rsplit("/", 1)[-1]
    wait_for(browser, lambda d: text_of(d, "#build-status") == "SUCCESS", timeout=180)
    # Same source and same overrides: Shipyard reuses the original's image (its reuse key
    # covers the commit, settings and build arguments) or, if it built, the build-args key (a
    # digest of the arguments) is the same.
    first_log = live.logs(f"/v1/projects/{project}/services/web/build-logs", original)
    second_log = live.logs(f"/v1/projects/{project}/services/web/build-logs", rerun)
    key = [line for line in first_log if "build-args-key" in line]
    reused = any(f"reused from build {original}" in line for line in second_log)
    assert reused or (key and key[0] in second_log), second_log
    with live.client() as c:
        a = c.get(f"/v1/projects/{project}/services/web/build/{original}").json()["data"]
        b = c.get(f"/v1/projects/{project}/services/web/build/{rerun}").json()["data"]
    assert a["sha"] == b["sha"] and a["branch"] == b["branch"]
    shot(browser, "build-rerun")


def test_abort_a_running_build(signed_in: WebDriver, live: LiveServer, project: str) -> None:
    browser = signed_in
    browser.get(f"{live.url}/ui/projects/{project}/services/web/start")
    browser.find_element(By.NAME, "dockerfileTarget").send_keys("slow")
    browser.find_element(By.ID, "start-submit").click()
    wait_for(browser, lambda d: "/builds/" in d.current_url)
    build_id = browser.current_url.rsplit("/", 1)[-1]
    wait_for(browser, lambda d: "sleeping a long time" in log_text(d), timeout=180)
    shot(browser, "build-abortable")
    browser.find_element(By.ID, "abort-build").click()
    with contextlib.suppress(NoAlertPresentException):
        browser.switch_to.alert.accept()
    wait_for(browser, lambda d: text_of(d, "#build-status") == "ABORTED", timeout=60)
    wait_for(browser, lambda d: d.find_elements(By.ID, "rerun-build"))  # actions follow
    with live.client() as c:
        data = c.get(f"/v1/projects/{project}/services/web/build/{build_id}").json()["data"]
    assert data["status"] == "ABORTED"
    shot(browser, "build-aborted")


def test_edit_build_settings(signed_in: WebDriver, live: LiveServer, project: str) -> None:
    browser = signed_in
    browser.get(f"{live.url}/ui/projects/{project}/services/web")
    browser.find_element(By.ID, "edit-settings").click()
    rules = wait_for(browser, lambda d: d.find_elements(By.NAME, "pathIgnoreRules"))[0]
    rules.send_keys("docs/**")
    shot(browser, "settings")
    browser.find_element(By.ID, "settings-submit").click()
    wait_for(browser, lambda d: d.current_url.endswith("/services/web"))
    assert "docs/**" in browser.page_source
    with live.client() as c:
        spec = c.get(f"/v1/projects/{project}/services/web").json()["data"]
    assert spec["buildConfiguration"]["pathIgnoreRules"] == ["docs/**"]
    assert spec["buildConfiguration"]["dockerfileTarget"] == "app"  # untouched fields kept


def test_webhook_deliveries_page(signed_in: WebDriver, live: LiveServer, project: str) -> None:
    """A real signed GitHub push to a branch no service builds: the page says why."""
    browser = signed_in
    with live.client() as c:
        secret = c.post(f"/v1/projects/{project}/webhook").json()["data"]["secret"]
        repo = c.get(f"/v1/projects/{project}/services/web").json()["data"]["vcsData"]
    body = wp.encode(
        wp.github_push(repo["projectUrl"], "refs/heads/feature/x", "1" * 40, "2" * 40, "wip")
    )
    r = httpx.post(f"{live.url}/v1/webhooks/github/{project}", content=body,
                   headers=wp.github_headers("push", body, secret), timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    browser.get(f"{live.url}/ui/projects/{project}")
    browser.find_element(By.LINK_TEXT, "Webhook deliveries").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "deliveries"))
    text = browser.find_element(By.ID, "deliveries").text
    assert "feature/x" in text, text
    assert "branch feature/x is not the service's branch (main)" in text, text
    shot(browser, "deliveries")


def test_phone_width_and_api_docs(signed_in: WebDriver, live: LiveServer, project: str) -> None:
    browser = signed_in
    with live.client() as c:
        builds = c.get(f"/v1/projects/{project}/services/web/build").json()["data"]["builds"]
        if not builds:
            builds = [c.post(f"/v1/projects/{project}/services/web/build", json={}).json()["data"]]
    phone = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    pages = {
        "phone-build": f"/ui/projects/{project}/services/web/builds/{builds[0]['id']}",
        "phone-service": f"/ui/projects/{project}/services/web",
        "phone-project": f"/ui/projects/{project}",
    }
    for name, path in pages.items():
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
        try:
            browser.get(f"{live.url}{path}")
            wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"))
            time.sleep(0.5)  # the log's first page
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"{name} scrolls sideways by {overflow}px on a phone"
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        shot(browser, name, phone=True)
    browser.get(f"{live.url}/docs")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
    assert assets_from_elsewhere(browser, live) == []
    time.sleep(0.2)
    shot(browser, "api-docs")


BIG_LOG_LINES = 2_000_000


def _fill_log(live: LiveServer, build_id: str, count: int) -> int:
    """Append ``count`` lines to a concluded build's log, straight into the live server's
    SQLite database, generated by SQLite itself (a recursive CTE: seconds, not a minute of
    Python rows); returns the log's new length."""
    import sqlite3
    from datetime import UTC, datetime

    db = sqlite3.connect(live.data_dir / "shipyard.db", timeout=30)
    try:
        (last,) = db.execute(
            "SELECT max(seq) FROM build_logs WHERE build_id = ?", (build_id,)
        ).fetchone()
        start = int(last) + 1
        # The format SQLAlchemy stores UTCDateTime in on SQLite.
        ts = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with db:
            db.execute(
                """
                WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
                INSERT INTO build_logs (build_id, attempt, seq, ts, line)
                SELECT ?, 1, ? + i, ?, 'filler line ' || (? + i + 1) || ' ' || char(27)
                       || '[33mwarning' || char(27) || '[0m with some more text'
                FROM n
                """,
                (count, build_id, start, ts, start),
            )
    finally:
        db.close()
    return start + count


def test_a_two_million_line_log_is_paged(
    signed_in: WebDriver, live: LiveServer, project: str
) -> None:
    browser = signed_in
    with live.client() as c:
        build = c.post(f"/v1/projects/{project}/services/web/build", json={}).json()["data"]
    live.wait(f"/v1/projects/{project}/services/web/build/{build['id']}")
    total = _fill_log(live, build["id"], BIG_LOG_LINES)
    browser.get(f"{live.url}/ui/projects/{project}/services/web/builds/{build['id']}")
    wait_for(browser, lambda d: f"of {total:,}" in text_of(d, "#log-range"), timeout=60)
    # Only a page of lines is in the document, never the log.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#logview .line")) <= 1000
    assert f"filler line {total - 5}" in log_text(browser)
    # Scrolling up pauses auto-scroll; "Latest" resumes it.
    follow = browser.find_element(By.ID, "log-follow")
    assert follow.is_selected()
    browser.execute_script("document.getElementById('logview').scrollTop = 0")
    wait_for(browser, lambda d: not d.find_element(By.ID, "log-follow").is_selected())
    browser.find_element(By.ID, "log-last").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "log-follow").is_selected())
    browser.find_element(By.ID, "log-first").click()
    wait_for(browser, lambda d: text_of(d, "#log-range").startswith("lines 1\u2013500 of"))
    goto = browser.find_element(By.ID, "log-goto-input")
    goto.send_keys("1234567")
    goto.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#L1234567.hl"), timeout=60)
    box = browser.find_element(By.ID, "log-search-input")
    box.send_keys(f"filler line {total - 3}")
    box.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "1 matching line" in text_of(d, "#log-results"), timeout=60)
    shot(browser, "build-2m-lines")
