"""`@odata.nextLink` is server data: follow it only where the first request went.

A link must keep the scheme, host, port and path of the pull's first request (only the
query may change: `$skiptoken`), may not repeat (a loop), and a pull reads at most
`max_pages` pages. A refused link raises `ForeignRequestError` (a malformed answer); the
request is never sent, so no token goes with it.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from m365_smtp_exporter.graph.errors import ForeignRequestError

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _place(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is no number
        port = -1
    # Graph paths are case-insensitive ("messageTraces" may come back as "messagetraces")
    return parts.scheme.lower(), (parts.hostname or "").lower(), port, parts.path.lower()


def _same_page_key(url: str) -> str:
    """Equal for two spellings of one page ("$top" and "%24top")."""
    return unquote(urlsplit(url).query)


def max_pages_for(top: int, budget_limit: int) -> int:
    """Pages one pull may read: one more than the request budget allows in a window (each
    page is a budgeted request), so that in a back-fill larger than the budget the budget
    ends the pull (reason "budget", continued by the next pull) before this cap calls the
    answer malformed; a link loop stops here at the latest."""
    del top  # pages of any size: the budget, not the row count, bounds the requests
    return max(1, budget_limit) + 1


class LinkGuard:
    """The links of one paged pull, checked against its first request."""

    def __init__(self, first_url: str, max_pages: int) -> None:
        self._first = _place(first_url)
        self._max_pages = max_pages
        self._pages = 1
        self._seen: set[str] = {_same_page_key(first_url)}

    def check(self, link: str) -> str:
        """`link`, if it may be followed; ForeignRequestError otherwise."""
        place = _place(link)
        if place[:3] != self._first[:3]:
            raise ForeignRequestError("nextLink points to another origin: not followed")
        if place[3] != self._first[3]:
            raise ForeignRequestError("nextLink points to another path: not followed")
        key = _same_page_key(link)
        if key in self._seen:
            raise ForeignRequestError("nextLink repeats an earlier page: not followed")
        if self._pages >= self._max_pages:
            raise ForeignRequestError(f"more than {self._max_pages} pages in one pull")
        self._pages += 1
        self._seen.add(key)
        return link
