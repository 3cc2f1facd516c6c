"""The web console in a real headless Chromium, on the stack ``make run`` starts.

One stack, several checks: both demo flows with non-zero counts, a demo approval found by its
business id with its Kingdee bill number, a dead letter produced on purpose opened, dry-run and
replayed as operator (the audit record names the user), refused as viewer, refused without
sign-in. Screenshots go to ``test-artifacts/console/`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from dingdee_common.kafka import headers as hdr
from dingdee_common.settings import RetrySettings
from dingdee_dev.procs import Supervisor
from dingdee_dev.run import RunOptions, run
from dingdee_dev.stack import Stack, StackConfig
from dingdee_ops.dlq.scan import read_audits
from dingdee_sandbox.demo_org import PROCESS_CODES
from tests.helpers import demo_flows_file, poll_until, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SUMMARY = "approved demo approvals are bills in the Kingdee sandbox"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromedriver are missing: run `make browser` (as root)")
    profile = tempfile.mkdtemp(prefix="dingdee-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


async def load(driver: WebDriver, url: str) -> None:
    await asyncio.to_thread(driver.get, url)


async def click(driver: WebDriver, css: str) -> None:
    """Click something that loads a page, and wait for that page: a click on a submit button
    returns before the POST's answer replaces the page (under load the old page was read)."""
    page = driver.find_element(By.TAG_NAME, "html")
    await asyncio.to_thread(driver.find_element(By.CSS_SELECTOR, css).click)

    def replaced() -> bool:
        try:
            page.is_enabled()  # any call on an element of a page that is gone raises
        except StaleElementReferenceException:
            return bool(driver.execute_script("return document.readyState") == "complete")
        return False

    await poll_until(replaced, timeout=30, what=f"the page {css} leads to")


async def bad_approval(stack: Stack) -> str:
    """A petty-cash claim with an empty 费用明细 table (min_rows 1): the transformer dead-letters
    it. Returns its instance id."""
    async with httpx.AsyncClient(base_url=stack.dingtalk_url, timeout=10) as client:
        made = await client.post(
            "/_sandbox/instances",
            json={"process_code": PROCESS_CODES["petty-cash"], "table_rows": 0},
        )
        made.raise_for_status()
        pid = str(made.json()["id"])
        (await client.post(f"/_sandbox/instances/{pid}/approve")).raise_for_status()
    return pid


async def flow_counts(driver: WebDriver, base: str, flow: str) -> dict[str, int]:
    await load(driver, f"{base}/flows")
    out = {}
    for stage in ("extracted", "mapped", "loaded"):
        out[stage] = int(text(driver, f"#flow-{flow} .stage-{stage}-day"))
    return out


async def test_console_in_a_browser(
    kafka_bootstrap: str, tmp_path: Path, browser: WebDriver
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=30,
        seed=11,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
        console=True,
        console_env={"DINGDEE_CONSOLE__REFRESH_SECONDS": "2"},
    )
    options = RunOptions(
        timeout=400,
        poll_timeout=2.0,
        interval=0.5,
        restart_backoff=RetrySettings(initial_backoff_seconds=0.2, max_backoff_seconds=1.0),
    )
    out = io.StringIO()
    stop = asyncio.Event()
    running: list[tuple[Stack, Supervisor]] = []
    task = asyncio.create_task(
        run(config, options, Console(file=out, width=400), stop, lambda *s: running.append(s))
    )
    try:
        await poll_until(lambda: bool(running) or task.done(), timeout=180, what="the stack")
        assert not task.done(), out.getvalue()
        stack = running[0][0]
        link = re.search(r"console (http://\S+\?token=\S+)", out.getvalue())
        assert link is not None, "make run prints the console URL with its token"
        base = stack.console_url
        await poll_until(lambda: SUMMARY in out.getvalue(), timeout=400, what="the demo loaded")
        pid = await bad_approval(stack)  # after the summary: the run expects no bill of it

        # refused without sign-in: every page, and the browser sees the sign-in notice
        async with httpx.AsyncClient(base_url=base) as anonymous:
            for path in ("/flows", "/approvals?q=1", "/dlq", "/try"):
                assert (await anonymous.get(path)).status_code == 401, path
        await load(browser, f"{base}/flows")
        assert "Sign-in required" in browser.page_source
        shot(browser, "0-unauthenticated")

        # operator: the token once, then a cookie; both flows counted
        await load(browser, link.group(1))
        assert browser.current_url == f"{base}/flows" and "token" not in browser.current_url
        assert text(browser, "#role") == "operator"

        async def counted() -> bool:
            counts = [await flow_counts(browser, base, f) for f in PROCESS_CODES]
            return all(c["extracted"] > 0 and c["loaded"] > 0 for c in counts)

        await poll_until(counted, timeout=60, what="non-zero counts of both flows")
        shot(browser, "1-flows")

        # where is my approval: a demo petty-cash claim by its business id → its bill number
        approved = await stack.expected_approvals()
        claim = next(a for a in approved if a["process_code"] == PROCESS_CODES["petty-cash"])
        await load(browser, f"{base}/approvals")
        browser.find_element(By.ID, "q").send_keys(claim["business_id"])
        await click(browser, "#search")
        assert text(browser, ".journey .bill-number") == "BYJ" + claim["business_id"]
        shot(browser, "2-approval")

        # try a mapping: the extracted snapshot picked from its journey becomes the same bill
        await load(browser, f"{base}/try")
        assert browser.find_elements(By.CSS_SELECTOR, "a[href^='/try?from=']"), "latest picks"
        await load(browser, f"{base}/approvals?q={claim['business_id']}")
        await click(browser, ".journey a[href^='/try']")
        await click(browser, "#preview")
        assert text(browser, "#bill-key") == "BYJ" + claim["business_id"]
        assert "FEntity[0].FTaxSubmitAmt" in text(browser, "#bill")
        shot(browser, "2b-try-a-mapping")

        # the dead letter produced on purpose: listed, opened, dry-run, then replayed
        async def listed() -> bool:
            await load(browser, f"{base}/dlq?stage=transformer&key={pid}")
            return len(browser.find_elements(By.CSS_SELECTOR, "#letters tr.letter")) == 1

        await poll_until(listed, timeout=90, what="the dead letter in the console")
        await click(browser, "#letters tr.letter a")
        assert "FEntity" in text(browser, "#reason")
        shot(browser, "3-dead-letter")
        letter_page = browser.current_url
        await click(browser, "a[href^='/try?letter=']")  # the same engine says why
        await click(browser, "#preview")
        assert "FEntity" in text(browser, "#errors")
        await load(browser, letter_page)
        await click(browser, "#dry-run")
        assert text(browser, ".report .outcome") == "dry_run"
        assert text(browser, ".report .planned-replay") == "1"
        shot(browser, "4-dry-run")
        assert not [
            r for r in await read_topic(stack.kafka, stack.topics.approvals_raw)
            if hdr.get(r.headers, "dlq-replayed-by")
        ], "a dry run copies nothing"  # fmt: skip
        await click(browser, "#confirm")
        assert text(browser, ".report .outcome") == "completed"
        assert text(browser, ".report .done-replay") == "1"
        shot(browser, "5-replayed")
        copies = [
            r for r in await read_topic(stack.kafka, stack.topics.approvals_raw)
            if hdr.get(r.headers, "dlq-replayed-by")
        ]  # fmt: skip
        assert [hdr.get(r.headers, "dlq-replayed-by") for r in copies] == ["local-operator"]
        done = [a for a in await read_audits(stack.kafka, stack.topics) if not a.dry_run]
        assert [a.who for a in done] == ["local-operator"]
        async with httpx.AsyncClient() as ops:  # the ops port, like every other process
            metrics = (await ops.get(f"http://127.0.0.1:{stack.ops_ports['console']}/metrics")).text
        assert 'dingdee_console_replays_total{mode="execute"} 1.0' in metrics
        assert 'dingdee_console_replays_total{mode="dry_run"} 1.0' in metrics

        # viewer: sees the dead letters, has no replay button, and a replay POST is refused
        browser.delete_all_cookies()
        await load(browser, f"{base}/?token={stack.console_viewer_token}")
        assert text(browser, "#role") == "viewer"
        await load(browser, f"{base}/dlq?state=all")
        assert browser.find_elements(By.CSS_SELECTOR, "#letters tr.letter")
        assert not browser.find_elements(By.ID, "dry-run")
        await load(browser, f"{base}/try")
        csrf = browser.find_element(By.NAME, "csrf").get_attribute("value")
        cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
        async with httpx.AsyncClient(base_url=base, cookies=cookies) as viewer:
            refused = await viewer.post(
                "/dlq/replay", data={"csrf": csrf, "pick": "transformer:0:0", "confirm": "yes"}
            )
        assert refused.status_code == 403 and "operators only" in refused.text
        shot(browser, "6-viewer")

        # a phone: the flow page fits the screen's width (tables scroll inside their boxes)
        await asyncio.to_thread(browser.set_window_size, 390, 844)
        await load(browser, f"{base}/flows")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
        shot(browser, "7-phone-flows")
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 120)
        print(out.getvalue()[-4000:])
    assert code == 0
