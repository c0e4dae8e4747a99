"""Browser tests skip without Chromium locally, and fail without it in CI."""

from __future__ import annotations

import pytest

from tests.console import browser


def test_missing_browser_skips_locally_and_fails_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv(browser.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="/nonexistent/chromium"):
        browser.require_browser()
    monkeypatch.setenv(browser.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="M365_EXPORTER_REQUIRE_BROWSER=1"):
        browser.require_browser()
