"""SPF, DKIM, DMARC and compauth verdicts from an `Authentication-Results` header.

Exchange Online writes the header without the RFC 8601 authserv-id and with free-text
comments, sometimes without a space after `;`:

    spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=contoso.com; dkim=pass (signature was
    verified) header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;compauth=pass
    reason=100

The parser drops comments (nested parentheses, quoted strings kept intact), splits the rest
on `;` outside quotes and reads `method[/version]=result` at the start of each clause, so the
RFC form (`mx.example.net; spf=pass ...`) parses too. The first verdict of a method wins
(Exchange puts its own first). Results outside the known set become `unknown`, which keeps
the `result` label bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

HEADER = "authentication-results"
CHECKS = ("spf", "dkim", "dmarc", "compauth")
UNKNOWN_RESULT = "unknown"
# RFC 8601 / 7601 result keywords, plus Microsoft's own (bestguesspass, softpass for compauth)
# and hardfail, which some receivers write for SPF -all.
RESULTS = frozenset(
    {
        "pass",
        "fail",
        "softfail",
        "hardfail",
        "neutral",
        "none",
        "temperror",
        "permerror",
        "policy",
        "bestguesspass",
        "softpass",
    }
)

_RESINFO = re.compile(
    r"^\s*(?P<method>[A-Za-z][A-Za-z0-9_.-]*)(?:\s*/\s*\d+)?\s*=\s*(?P<result>[A-Za-z][\w-]*)"
)


def parse_authentication_results(value: str) -> dict[str, str]:
    """Verdict per check in `CHECKS` that the header names, e.g. {"spf": "pass", ...}."""
    verdicts: dict[str, str] = {}
    for clause in _clauses(_without_comments(value)):
        match = _RESINFO.match(clause)
        if match is None:
            continue  # the authserv-id, or `none` (no checks were run)
        method = match["method"].lower()
        if method not in CHECKS or method in verdicts:
            continue
        result = match["result"].lower()
        verdicts[method] = result if result in RESULTS else UNKNOWN_RESULT
    return verdicts


def first_authentication_results(headers: Iterable[Mapping[str, object]]) -> str | None:
    """The value of the first `Authentication-Results` header in Graph's
    `internetMessageHeaders` list (`[{"name": ..., "value": ...}]`), or None."""
    for header in headers:
        name = header.get("name")
        value = header.get("value")
        if isinstance(name, str) and name.strip().lower() == HEADER and isinstance(value, str):
            return value
    return None


def _without_comments(text: str) -> str:
    """`text` with (possibly nested) parenthesised comments replaced by a space."""
    kept: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                kept.append(char)
            continue
        if char == "\\" and (quoted or depth > 0):
            escaped = True
            if depth == 0:
                kept.append(char)
            continue
        if quoted:
            quoted = char != '"'
            kept.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth > 0:
            depth -= 1
            if depth == 0:
                kept.append(" ")
        elif depth == 0:
            quoted = char == '"'
            kept.append(char)
    return "".join(kept)


def _clauses(text: str) -> list[str]:
    """`text` split on `;` outside quoted strings."""
    clauses: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            clauses.append("".join(current))
            current = []
            continue
        current.append(char)
    clauses.append("".join(current))
    return clauses
