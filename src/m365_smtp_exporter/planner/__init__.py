"""Campaign planner: how much a sender can send now and when the rest can go, projected
from the quota engine's own minute buckets (pure: no I/O)."""

from m365_smtp_exporter.planner.engine import LimitState, Plan, Segment, plan_campaign
from m365_smtp_exporter.planner.render import plan_to_json, plan_to_text
from m365_smtp_exporter.planner.request import PlanInputError, PlanRequest, parse_plan_request
from m365_smtp_exporter.planner.view import QuotaView, SenderBuckets, TraceFreshness

__all__ = [
    "LimitState",
    "Plan",
    "PlanInputError",
    "PlanRequest",
    "QuotaView",
    "Segment",
    "SenderBuckets",
    "TraceFreshness",
    "parse_plan_request",
    "plan_campaign",
    "plan_to_json",
    "plan_to_text",
]
