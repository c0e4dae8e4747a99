"""A plan as JSON (the API's stable shape, see docs/api.md) and as text (the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from m365_smtp_exporter.planner.engine import Plan

API_VERSION = 1


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def plan_to_json(plan: Plan) -> dict[str, Any]:
    request = plan.request
    finish = plan.finish_at
    return {
        "version": API_VERSION,
        "tenant": request.tenant,
        "sender": request.sender,
        "request": {
            "recipients": request.recipients,
            "external": request.external,
            "internal": request.internal,
            "per_message": request.per_message,
            "messages": request.messages,
            "start": iso(request.start_epoch),
        },
        "computed_at": iso(plan.computed_at),
        "start_at": iso(plan.start_at),
        "can_start_now": plan.can_start_now,
        "now": {"recipients": plan.now_recipients, "binding": plan.now_binding},
        "binding": plan.schedule_binding,
        "limits": [
            {
                "name": limit.name,
                "scope": limit.scope,
                "applies_to": limit.applies_to,
                "window_seconds": limit.window_seconds,
                "limit": limit.limit,
                "used": limit.used,
                "remaining": limit.remaining,
            }
            for limit in plan.limits
        ],
        "schedule": [
            {
                # the first minute starts at the plan's start, not at the top of the minute
                "start": iso(max(segment.start_at, plan.start_at)),
                "end": iso(segment.end_at),
                "minutes": segment.minutes,
                "recipients": segment.recipients,
                "messages": segment.messages,
                "recipients_per_minute": segment.recipients_per_minute,
                "binding": segment.binding or None,
            }
            for segment in plan.segments
        ],
        "finish_at": iso(finish),
        "duration_seconds": None if finish is None else round(finish - plan.start_at, 1),
        "unscheduled_recipients": plan.unscheduled,
        "notes": list(plan.notes),
    }


def duration_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{minutes} min")
    return " ".join(parts)


def plan_to_text(document: dict[str, Any]) -> str:
    """The CLI's rendering of a plan JSON document (local or from a running exporter)."""
    request = document["request"]
    now = document["now"]
    lines = [
        f"Plan for {document['sender']} (tenant {document['tenant']}): {request['recipients']}"
        f" recipients ({request['external']} external), {request['per_message']} per message"
        f" = {request['messages']} messages, from {document['start_at']}",
        f"Can start now: {'yes' if document['can_start_now'] else 'no'};"
        f" {now['recipients']} recipients can go under every limit"
        + (f" (bound by {now['binding']})" if now["binding"] else ""),
        "",
        "Limits:",
    ]
    for limit in document["limits"]:
        lines.append(
            f"  {limit['name']:<28} {limit['scope']:<6} {limit['applies_to']:<8}"
            f" used {limit['used']:>7} of {limit['limit']:>7}, {limit['remaining']:>7} left"
        )
    lines += ["", "Schedule (UTC):"]
    for segment in document["schedule"]:
        lines.append(
            f"  {segment['start']} -> {segment['end']}  {segment['recipients']:>7} recipients"
            f" ({segment['recipients_per_minute']}/min, {segment['messages']} messages)"
            + (f"  held by {segment['binding']}" if segment["binding"] else "")
        )
    if document["finish_at"]:
        lines.append(
            f"Finishes at {document['finish_at']}"
            f" (after {duration_text(document['duration_seconds'])});"
            f" mostly held by {document['binding'] or 'nothing'}"
        )
    if document["unscheduled_recipients"]:
        lines.append(f"{document['unscheduled_recipients']} recipients do not fit in the horizon")
    lines += ["", "How sure:"] + [f"  - {note}" for note in document["notes"]]
    return "\n".join(lines) + "\n"
