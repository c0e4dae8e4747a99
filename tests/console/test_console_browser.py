"""The console in a real browser (headless Chromium) against the demo.

Skipped when Chromium is missing, failed instead when M365_EXPORTER_REQUIRE_BROWSER=1.
Each test saves a screenshot under its tmp_path; with M365_EXPORTER_SCREENSHOTS set to a
directory, the overview and phone screenshots are also written there (docs/ uses them).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.browser import chromium, require_browser
from tests.console.live_demo import LiveDemo, live_demo, wait_for
from tests.support.prom import value

MARKER = "window.__notReloaded"
HOSTILE = '550 5.7.1 <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> denied'

# One browser and one demo for the module: its tests share a test worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-browser")]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDemo]:
    require_browser()
    # With traffic: back-filled history puts the campaign mailbox near its limits.
    with live_demo(tmp_path_factory.mktemp("demo"), traffic=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser(live: LiveDemo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver


def shoot(driver: Any, tmp_path: Path, name: str, *, for_docs: bool = False) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    docs = os.environ.get("M365_EXPORTER_SCREENSHOTS")
    if docs and for_docs:
        driver.save_screenshot(str(Path(docs) / f"{name}.png"))


def open_console(driver: Any, live: LiveDemo) -> None:
    driver.get(live.base + "/")
    wait_for(lambda: text(driver, "#live") == "live", 30, "the first poll")
    driver.execute_script(f"{MARKER} = true;")


def text(driver: Any, css: str) -> str | None:
    """textContent of the first match, read in one script: the page re-renders every poll,
    so a located element can be replaced before a second command reads it."""
    found = driver.execute_script(
        "var e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css
    )
    return None if found is None else str(found)


def not_reloaded(driver: Any) -> bool:
    return driver.execute_script(f"return {MARKER} === true;") is True


QUOTA_CELLS = """
return Array.from(document.querySelectorAll('#tenants tr.quota')).map(function (row) {
  return [row.dataset.key, row.querySelector('.used').textContent,
          row.querySelector('.limit').textContent, row.querySelector('.remaining').textContent];
});
"""
PROBE_STATES = """
return Array.from(document.querySelectorAll('#probes tr.probe')).map(function (row) {
  return [row.dataset.probe, row.querySelector('.badge').textContent];
});
"""


def test_console_shows_the_same_figures_as_metrics(
    live: LiveDemo, browser: Any, tmp_path: Path
) -> None:
    browser.set_window_size(1500, 2600)
    open_console(browser, live)
    first = text(browser, "#generated-at")
    # the back-filled history reaches the page once the first trace pull is counted
    campaign = "[data-key='contoso|campaign@contoso.com|recipients_per_day']"
    wait_for(
        lambda: browser.execute_script(
            "var row = document.querySelector(arguments[0]);"
            "return row !== null && row.classList.contains('hot');",
            campaign,
        ),
        60,
        "the campaign mailbox near its 10,000 limit",
    )

    def page_equals_metrics() -> str | None:
        rows = browser.execute_script(QUOTA_CELLS)
        probes = browser.execute_script(PROBE_STATES)
        _, _, exposition = live.get("/metrics")
        if not rows or not probes:
            return None
        for key, used, limit, remaining in rows:
            tenant, sender, name = key.split("|")
            labels = {"tenant": tenant, "sender": sender, "limit": name}
            exported = (
                value(exposition, "m365_quota_used", **labels),
                value(exposition, "m365_quota_limit", **labels),
                value(exposition, "m365_quota_remaining", **labels),
            )
            if exported != (float(used), float(limit), float(remaining)):
                return None
        for probe, state in probes:
            success = value(exposition, "m365_smtp_probe_success", probe=probe)
            expected = {1.0: "ok", 0.0: "failing", None: "pending"}[success]
            if state != expected:
                return None
        return f"{len(rows)} quota rows, {len(probes)} probes"

    wait_for(page_equals_metrics, 60, "the console's figures to equal /metrics")
    # the page keeps itself current without a reload
    wait_for(lambda: text(browser, "#generated-at") != first, 20, "a newer poll")
    assert not_reloaded(browser)
    shoot(browser, tmp_path, "console", for_docs=True)
    browser.set_window_size(390, 1800)
    shoot(browser, tmp_path, "console-phone", for_docs=True)


def test_planner_form_answers_like_the_api(live: LiveDemo, browser: Any, tmp_path: Path) -> None:
    browser.set_window_size(1400, 1600)
    open_console(browser, live)
    form = browser.find_element("id", "plan-form")

    def submit(**fields: str) -> None:
        for name, text in fields.items():
            element = form.find_element("name", name)
            if element.tag_name == "select":
                element.find_element("css selector", f'option[value="{text}"]').click()
            else:
                element.clear()
                element.send_keys(text)
        form.find_element("css selector", "button").click()

    query = {"tenant": "fabrikam", "sender": "newsletter@fabrikam.com", "recipients": "10000"}
    submit(**query, external="0", per_message="1")
    answer = live.get_json("/api/v1/plan?" + urllib.parse.urlencode(query))
    finish = wait_for(
        lambda: browser.find_element("id", "plan-result").text, 20, "the planner's answer"
    )
    assert "Can start now: 10000 of 10000 recipients" in finish
    assert "mostly held by messages_per_minute" in finish and "(5 h 3" in finish
    assert answer["request"]["messages"] == 10_000
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('.plan-limits tr[data-limit]')).map("
        "function (r) { return [r.dataset.limit, r.querySelector('.remaining').textContent]; });"
    )
    assert {name: int(left) for name, left in shown} == {
        limit["name"]: limit["remaining"] for limit in answer["limits"]
    }
    # the busy campaign mailbox: only what its 24 h window has left can go now
    submit(
        tenant="contoso",
        sender="campaign@contoso.com",
        recipients="3000",
        external="2000",
        per_message="10",
    )
    query = {
        "tenant": "contoso",
        "sender": "campaign@contoso.com",
        "recipients": "3000",
        "external": "2000",
        "per_message": "10",
    }

    def matches_api() -> bool:
        answer = live.get_json("/api/v1/plan?" + urllib.parse.urlencode(query))
        shown = text(browser, "#plan-result .plan-now") or ""
        return (
            shown.startswith(
                f"{'Can' if answer['can_start_now'] else 'Cannot'} start now: "
                f"{answer['now']['recipients']} of 3000"
            )
            and (answer["now"]["binding"] or "") in shown
        )

    wait_for(matches_api, 20, "the campaign plan to match the API")
    browser.execute_script("document.getElementById('plan-form').scrollIntoView();")
    shoot(browser, tmp_path, "console-planner", for_docs=True)
    submit(external="4000")
    error = wait_for(
        lambda: browser.find_elements("css selector", "#plan-result .plan-error"), 20, "an error"
    )
    assert error[0].text == "external: cannot exceed recipients"
    assert not_reloaded(browser)


def test_injected_fault_shows_without_reload(live: LiveDemo, browser: Any, tmp_path: Path) -> None:
    browser.set_window_size(1400, 1600)
    open_console(browser, live)
    state = "#probes tr.probe[data-probe='submission'] .badge"
    wait_for(lambda: text(browser, state) == "ok", 60, "probe ok")
    live.fault("PUT", "/faults", {"outage": "refuse"})
    try:
        wait_for(
            lambda: text(browser, state) == "failing",
            60,
            "the probe to show as failing",
        )
        note = browser.execute_script(
            "return document.querySelector(\"tr.probe-detail[data-probe='submission'] pre\")"
            ".textContent;"
        )
        assert "no connection to 127.0.0.1:" in note
        since = text(browser, "#probes tr.probe[data-probe='submission'] td:nth-child(6)")
        assert since is not None and since.startswith("20")  # failing since: a timestamp
        assert "cannot send" in (text(browser, "section.tenant[data-tenant='contoso'] h3") or "")
        shoot(browser, tmp_path, "fault")
    finally:
        live.fault("DELETE", "/faults")
    wait_for(lambda: text(browser, state) == "ok", 60, "recovery")
    assert not_reloaded(browser)


REPLY_TEXTS = """
return [Array.from(document.querySelectorAll('#probes td.reply')).map(function (c) {
  return c.textContent; }), document.querySelectorAll('#probes img, #probes script').length,
  window.__pwned];
"""


def test_hostile_reply_text_renders_inert(live: LiveDemo, browser: Any, tmp_path: Path) -> None:
    browser.set_window_size(1400, 1600)
    open_console(browser, live)
    browser.execute_script("window.__pwned = 0;")
    # background traffic shares the SMTP server and takes some of the scripted replies
    replies = [{"reply": HOSTILE, "count": 500, "command": "MAIL"}]
    live.fault("PUT", "/faults", {"scripted_replies": replies})
    try:

        def hostile_shown() -> list[Any] | None:
            texts, elements, pwned = browser.execute_script(REPLY_TEXTS)
            shown = [text for text in texts if "onerror" in text]
            return [shown, elements, pwned] if shown else None

        shown, elements, pwned = wait_for(hostile_shown, 60, "the hostile reply on the page")
        assert '<img src=x onerror="window.__pwned=1">' in shown[0]
        assert "<script>window.__pwned=2</script>" in shown[0]
        assert (elements, pwned) == (0, 0)
        shoot(browser, tmp_path, "hostile")
        # the server-rendered page is escaped too
        browser.refresh()
        assert browser.find_elements("css selector", "#probes img, #probes script") == []
    finally:
        live.fault("DELETE", "/faults")
