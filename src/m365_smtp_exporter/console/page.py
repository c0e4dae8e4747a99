"""The console page, rendered on the server from the status document.

console.js re-renders the same sections from `/api/v1/status` every few seconds with the
same markup (keep the two in step). Every value goes through `html.escape`: reply texts,
transcripts and names come from the network or the configuration and are hostile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from m365_smtp_exporter.console.status import JsonObject

POLL_SECONDS = 5


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _cell(value: Any, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{_e(value if value is not None else '-')}</td>"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _state(ok: bool | None, yes: str, no: str) -> str:
    if ok is None:
        return '<span class="badge unknown">unknown</span>'
    return f'<span class="badge {"ok" if ok else "bad"}">{_e(yes if ok else no)}</span>'


def _table(head: Sequence[str], rows: Iterable[str], cls: str) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<table class="{cls}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


QUOTA_HEAD = ("sender", "limit", "used", "of", "left", "use", "recovers in")


def quota_row(tenant: str, row: JsonObject) -> str:
    sender = row["sender"] or "(tenant)"
    key = f"{tenant}|{row['sender'] or ''}|{row['limit']}"
    hot = " hot" if row["utilization"] >= 0.8 else ""
    share = f"{row['utilization'] * 100:.0f}%"
    recovery = duration(row["recovery_seconds"]) if row["recovery_seconds"] else "-"
    return (
        f'<tr data-key="{_e(key)}" class="quota{hot}">{_cell(sender)}{_cell(row["limit"])}'
        f"{_cell(row['used'], 'used num')}{_cell(row['limit_value'], 'limit num')}"
        f"{_cell(row['remaining'], 'remaining num')}"
        f"{_cell(share, 'num')}{_cell(recovery, 'recovery')}</tr>"
    )


def tenant_card(tenant: JsonObject) -> str:
    name = tenant["name"]
    trace = tenant["trace"]
    budget = tenant["graph_budget"]
    trace_text = "trace pulls off"
    if trace is not None:
        state = {True: "ok", False: "failing", None: "no pull yet"}[trace["last_pull_ok"]]
        trace_text = (
            f"trace: {state}; last good pull {trace['last_success_at'] or 'never'};"
            f" lag {duration(trace['lag_seconds'])}"
        )
    budget_text = (
        "Graph budget: -"
        if budget is None
        else f"Graph budget: {budget['remaining']} of {budget['limit']} left"
    )
    rows = [quota_row(name, row) for row in tenant["quota"]]
    microsoft = microsoft_text(tenant.get("microsoft"))
    return (
        f'<section class="card tenant" data-tenant="{_e(name)}"><h3>{_e(name)} '
        f"{_state(tenant['can_send'], 'can send', 'cannot send')}</h3>"
        f'<p class="meta">probes ok {_e(tenant["probes_ok"])} / {_e(tenant["probes_total"])};'
        f" last success {_e(tenant['last_success_at'] or 'never')}</p>"
        f'<p class="meta trace">{_e(trace_text)}</p><p class="meta budget">{_e(budget_text)}</p>'
        f'<p class="meta microsoft">{_e(microsoft)}</p>'
        f"{_table(QUOTA_HEAD, rows, 'quota-table')}</section>"
    )


def microsoft_text(view: JsonObject | None) -> str:
    """One line: Microsoft's own word on Exchange Online (console.js writes the same)."""
    if view is None:
        return "Microsoft service health: not monitored"
    if view["pull_ok"] is None:
        return "Microsoft service health: not read yet"
    status = view["exchange_online_status"] or "unknown"
    issues = view["issues"]
    if not issues:
        return f"Microsoft: Exchange Online {status}; no open issue"
    first = issues[0]
    more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
    stale = "" if view["pull_ok"] else " (last pull failed: as last read)"
    return (
        f"Microsoft: Exchange Online {status}; open {first['classification']} "
        f"{first['id']}: {first['title']}{more}{stale}"
    )


PROBE_HEAD = ("probe", "tenant", "state", "last run", "last success", "failing since", "reply")


def _reply_text(probe: JsonObject) -> str:
    reply = probe["reply"]
    if reply is None:
        return probe["detail"] or ""
    return " ".join(str(p) for p in (reply["code"], reply["enhanced_code"], reply["text"]) if p)


def probe_rows(probe: JsonObject) -> str:
    state = probe["state"]
    cls = {"ok": "ok", "failing": "bad"}.get(state, "unknown")
    cert = probe["tls"]["cert_days_left"] if probe["tls"] else None
    transcript = "\n".join(
        f"{line['elapsed']:8.3f}  {line['direction']}: {line['text']}"
        for line in probe["transcript"]
    )
    if probe["transcript_note"]:
        transcript = (transcript + "\n" if transcript else "") + probe["transcript_note"]
    return (
        f'<tr class="probe" data-probe="{_e(probe["name"])}">{_cell(probe["name"])}'
        f"{_cell(probe['tenant'])}"
        f'<td><span class="badge {cls}">{_e(state)}</span></td>'
        f"{_cell(probe['last_run_at'])}{_cell(probe['last_success_at'])}"
        f"{_cell(probe['failing_since'])}{_cell(_reply_text(probe), 'reply')}</tr>"
        f'<tr class="probe-detail" data-probe="{_e(probe["name"])}"><td colspan="7">'
        f'<p class="hint">{_e(probe["hint"] or "")}</p>'
        f'<p class="cert">{_e("" if cert is None else f"server certificate: {cert} days left")}</p>'
        f"<details><summary>transcript</summary><pre>{_e(transcript)}</pre></details></td></tr>"
    )


DELIVERY_HEAD = ("probe", "last mail", "outcomes", "avg latency", "pending", "SPF/DKIM/DMARC")
DOMAIN_HEAD = ("domain", "SPF", "DKIM", "DMARC", "checked")


def delivery_row(item: JsonObject) -> str:
    success = item["success"]
    last = "-" if success is None else ("delivered" if success else "junk or lost")
    outcomes = ", ".join(f"{k} {v}" for k, v in item["outcomes"].items()) or "-"
    auth = ", ".join(f"{k}={v}" for k, v in item["auth"].items()) or "-"
    latency = item["latency_avg_seconds"]
    return (
        f'<tr data-probe="{_e(item["probe"])}">{_cell(item["probe"])}{_cell(last)}'
        f"{_cell(outcomes)}{_cell(None if latency is None else f'{latency:.1f} s')}"
        f"{_cell(item['pending'])}{_cell(auth)}</tr>"
    )


def domain_row(item: JsonObject) -> str:
    spf, dkim, dmarc = item["spf"], item["dkim"], item["dmarc"]
    spf_text = "-" if spf is None else ("valid" if spf["valid"] else "invalid")
    if spf is not None and spf["all"]:
        spf_text += f", {spf['all']} all"
    dkim_text = (
        "-"
        if dkim is None
        else ", ".join(f"{d['selector']} {'on' if d['enabled'] else 'off'}" for d in dkim) or "none"
    )
    dmarc_text = "-" if dmarc is None else str(dmarc["policy"])
    return (
        f'<tr data-domain="{_e(item["domain"])}">{_cell(item["domain"])}{_cell(spf_text)}'
        f"{_cell(dkim_text)}{_cell(dmarc_text)}{_cell(item['checked_at'])}</tr>"
    )


def render_page(status: JsonObject, tenants: Sequence[str]) -> str:
    options = "".join(f'<option value="{_e(t)}">{_e(t)}</option>' for t in tenants)
    tenant_cards = "".join(tenant_card(t) for t in status["tenants"])
    probes = _table(PROBE_HEAD, (probe_rows(p) for p in status["probes"]), "probe-table")
    delivery = _table(DELIVERY_HEAD, map(delivery_row, status["delivery"]), "delivery-table")
    domains = _table(DOMAIN_HEAD, map(domain_row, status["domains"]), "domain-table")
    sender = '<input name="sender" type="email" required placeholder="newsletter@example.com">'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>m365-smtp-exporter console</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head><body data-poll-seconds="{POLL_SECONDS}">
<header><h1>m365-smtp-exporter</h1>
<p class="meta">version {_e(status["exporter_version"])} &middot;
updated <span id="generated-at">{_e(status["generated_at"])}</span>
<span id="live" class="badge unknown">static</span> &middot;
<a href="/metrics">metrics</a> &middot; <a href="/api/v1/status">status JSON</a></p></header>
<main>
<h2>Tenants</h2><div id="tenants" class="cards">{tenant_cards}</div>
<h2>Probes</h2><div id="probes">{probes}</div>
<h2>Delivery of probe mail</h2><div id="delivery">{delivery}</div>
<h2>Domains</h2><div id="domains">{domains}</div>
<h2>Plan a campaign</h2>
<form id="plan-form" action="/api/v1/plan" method="get">
<label>tenant <select name="tenant">{options}</select></label>
<label>sender {sender}</label>
<label>recipients <input name="recipients" type="number" min="1" required></label>
<label>external <input name="external" type="number" min="0" value="0"></label>
<label>per message <input name="per_message" type="number" min="1" value="1"></label>
<label>start (UTC, optional) <input name="start" placeholder="2026-01-20T09:00:00Z"></label>
<button type="submit">Plan</button></form>
<div id="plan-result" aria-live="polite"></div>
</main></body></html>
"""
