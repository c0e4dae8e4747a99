"""The campaign planner: how much of a send can go now, and when the rest can go.

Pure computation (no I/O, the clock is an argument). It projects the quota engine's own
minute buckets forward, so "now" is exactly the headroom `/metrics` shows and the schedule
follows the same window rule (window.py): a bucket b counts while the clock is in a bucket
<= b + window minutes. Each minute from the start the planner sends as many recipients as
every limit allows, then lets them count in the windows like any other traffic:

- per sender, rolling 24 h: `recipients_per_day` and the spam policy's `recipients_per_day`
  (internal + external recipients);
- per tenant, rolling 24 h: the external recipient limit (TERRL), external recipients only;
- per sender, rolling 1 h: the spam policy's external / internal caps;
- messages per minute: pacing only. Microsoft delays submissions over the limit instead of
  rejecting them, so the planner spreads messages at that rate; it never blocks the plan.
  Messages other mail of the sender already put in a minute are taken off that minute.

External recipients go first in each minute (they draw on the scarcer, tenant-wide limit),
internal ones fill what is left. Messages carry `per_message` recipients; a minute's
messages are ceil(recipients / per_message).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from m365_smtp_exporter.planner.request import PlanInputError, PlanRequest
from m365_smtp_exporter.planner.view import QuotaView, SenderBuckets, TraceFreshness
from m365_smtp_exporter.quota.limits import LimitName, QuotaLimits
from m365_smtp_exporter.quota.window import BUCKET_SECONDS, DAY, HOUR, Window, bucket_of

DEFAULT_HORIZON_SECONDS = 14 * 86_400
MAX_START_AHEAD_SECONDS = 7 * 86_400
START_SLACK_SECONDS = 60.0  # a start a little in the past (clock skew, slow form) means now
RECIPIENTS_PER_MESSAGE_DEFAULT = 500  # Exchange's default RecipientLimits
PACING = LimitName.MESSAGES_PER_MINUTE
PER_MESSAGE = "recipients_per_message"
DONE = ""

ALL, EXTERNAL, INTERNAL = "all", "external", "internal"


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit as it stands at the start: the same used/limit as the exported figure."""

    name: str
    scope: str  # "sender" or "tenant"
    applies_to: str  # which recipients it counts: all, external or internal
    window_seconds: int
    limit: int
    used: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive minutes sending the same number of recipients, held by the same limit."""

    start_bucket: int
    minutes: int
    recipients_per_minute: int
    messages_per_minute: int
    binding: str  # what capped each minute; DONE when the campaign simply ran out

    @property
    def start_at(self) -> float:
        return float(self.start_bucket * BUCKET_SECONDS)

    @property
    def end_at(self) -> float:
        return float((self.start_bucket + self.minutes) * BUCKET_SECONDS)

    @property
    def recipients(self) -> int:
        return self.recipients_per_minute * self.minutes

    @property
    def messages(self) -> int:
        return self.messages_per_minute * self.minutes


@dataclass(frozen=True, slots=True)
class Plan:
    request: PlanRequest
    computed_at: float
    start_at: float
    limits: tuple[LimitState, ...]
    now_recipients: int  # what every blocking limit lets go at the start (pacing aside)
    now_binding: str | None  # the limit capping now_recipients; None when all can go
    segments: tuple[Segment, ...]
    unscheduled: int  # recipients that do not fit within the horizon
    notes: tuple[str, ...]

    @property
    def can_start_now(self) -> bool:
        return self.now_recipients > 0

    @property
    def finish_at(self) -> float | None:
        if self.unscheduled or not self.segments:
            return None
        return self.segments[-1].end_at

    @property
    def schedule_binding(self) -> str | None:
        """The limit that holds the campaign back the longest."""
        minutes: dict[str, int] = {}
        for segment in self.segments:
            if segment.binding != DONE:
                minutes[segment.binding] = minutes.get(segment.binding, 0) + segment.minutes
        return max(minutes, key=lambda name: minutes[name]) if minutes else None


class _Rolling:
    """A window sum over existing buckets plus the plan's own sends, advanced minute by
    minute: at minute m it holds the buckets m - window.buckets .. m."""

    __slots__ = ("_existing", "_planned", "_span", "total")

    def __init__(self, existing: tuple[Mapping[int, int], ...], window: Window, first: int):
        self._span = window.buckets
        self._existing = existing
        self._planned: dict[int, int] = {}
        # the window at minute first - 1: buckets first - 1 - span .. first - 1;
        # `advance(first)` then adds bucket `first` and drops bucket first - 1 - span
        self.total = sum(
            count
            for counts in existing
            for bucket, count in counts.items()
            if first - 1 - self._span <= bucket < first
        )

    def _at(self, bucket: int) -> int:
        return sum(counts.get(bucket, 0) for counts in self._existing)

    def advance(self, bucket: int) -> None:
        leaving = bucket - self._span - 1
        self.total += self._at(bucket) - self._at(leaving) - self._planned.pop(leaving, 0)

    def send(self, bucket: int, count: int) -> None:
        if count:
            self._planned[bucket] = self._planned.get(bucket, 0) + count
            self.total += count


@dataclass(slots=True)
class _Limit:
    state: LimitState
    rolling: _Rolling

    def headroom(self) -> int:
        return max(0, self.state.limit - self.rolling.total)


def _limits_for(
    request: PlanRequest, limits: QuotaLimits, buckets: SenderBuckets, first: int
) -> list[_Limit]:
    sender_all = (buckets.external, buckets.internal)
    wanted: list[tuple[str, str, str, Window, int, tuple[Mapping[int, int], ...]]] = []
    for name, limit in limits.sender_limits(request.sender):
        if name in (LimitName.RECIPIENTS_PER_DAY, LimitName.SPAM_RECIPIENTS_PER_DAY):
            wanted.append((name, "sender", ALL, DAY, limit, sender_all))
        elif name is LimitName.SPAM_EXTERNAL_PER_HOUR:
            wanted.append((name, "sender", EXTERNAL, HOUR, limit, (buckets.external,)))
        elif name is LimitName.SPAM_INTERNAL_PER_HOUR:
            wanted.append((name, "sender", INTERNAL, HOUR, limit, (buckets.internal,)))
    wanted.append(
        (
            LimitName.EXTERNAL_RECIPIENTS_PER_DAY,
            "tenant",
            EXTERNAL,
            DAY,
            limits.tenant_external_limit,
            (buckets.tenant_external,),
        )
    )
    result = []
    for limit_name, scope, applies_to, window, limit, counts in wanted:
        rolling = _Rolling(counts, window, first)
        rolling.advance(first)
        state = LimitState(str(limit_name), scope, applies_to, window.seconds, limit, rolling.total)
        result.append(_Limit(state, rolling))
    return result


def _headroom(limits: list[_Limit], applies_to: str) -> tuple[int, str | None]:
    """The tightest headroom among limits counting `applies_to` recipients, and its name."""
    best, name = math.inf, None
    for limit in limits:
        if limit.state.applies_to == applies_to and limit.headroom() < best:
            best, name = limit.headroom(), limit.state.name
    return (int(best), name) if name is not None else (-1, None)


def _minute(
    limits: list[_Limit], external_left: int, internal_left: int, pacing_room: int
) -> tuple[int, int, str]:
    """(external, internal, binding) to send in one minute."""
    all_room, all_name = _headroom(limits, ALL)
    ext_room, ext_name = _headroom(limits, EXTERNAL)
    int_room, int_name = _headroom(limits, INTERNAL)
    caps: list[tuple[int, str]] = [(pacing_room, PACING)]
    if all_name is not None:
        caps.append((all_room, all_name))
    want_ext = external_left if ext_name is None else min(external_left, ext_room)
    want_int = internal_left if int_name is None else min(internal_left, int_room)
    budget = min(cap for cap, _ in caps)
    external = min(want_ext, budget)
    internal = min(want_int, budget - external)
    sent = external + internal
    if sent == external_left + internal_left:
        return external, internal, DONE
    if sent == budget:  # a cap on every recipient stopped this minute short
        return external, internal, next(name for cap, name in caps if cap == budget)
    # otherwise a limit on one direction did: the external one when externals were left over
    if external < external_left and ext_name is not None:
        return external, internal, ext_name
    return external, internal, int_name or PACING


def _segments(minutes: list[tuple[int, int, int, str]]) -> tuple[Segment, ...]:
    """Merge (bucket, recipients, messages, binding) minutes into segments."""
    segments: list[Segment] = []
    for bucket, recipients, messages, binding in minutes:
        last = segments[-1] if segments else None
        if (
            last is not None
            and last.start_bucket + last.minutes == bucket
            and (last.recipients_per_minute, last.messages_per_minute, last.binding)
            == (recipients, messages, binding)
        ):
            segments[-1] = Segment(
                last.start_bucket, last.minutes + 1, recipients, messages, binding
            )
        else:
            segments.append(Segment(bucket, 1, recipients, messages, binding))
    return tuple(segments)


def plan_campaign(
    request: PlanRequest,
    view: QuotaView,
    *,
    now: float,
    freshness: TraceFreshness | None = None,
    horizon_seconds: int = DEFAULT_HORIZON_SECONDS,
    max_per_message: int = RECIPIENTS_PER_MESSAGE_DEFAULT,
) -> Plan:
    """Plan `request` against `view`'s usage at `now` (see the module docstring)."""
    start = request.start_epoch
    if start is not None and start < now - START_SLACK_SECONDS:
        raise PlanInputError("start", "is in the past")
    if start is not None and start > now + MAX_START_AHEAD_SECONDS:
        raise PlanInputError("start", "is more than 7 days ahead")
    start_at = max(now, start or now)
    first = bucket_of(start_at)
    quota = view.limits
    buckets = view.usage_buckets(request.sender)
    limits = _limits_for(request, quota, buckets, first)
    states = tuple(limit.state for limit in limits)
    notes = _notes(request, quota, freshness, now, max_per_message)
    if request.per_message > max_per_message:
        return Plan(request, now, start_at, states, 0, PER_MESSAGE, (), request.recipients, notes)

    now_recipients, now_binding = _now(limits, request)
    external_left, internal_left = request.external, request.internal
    minutes: list[tuple[int, int, int, str]] = []
    last = first + horizon_seconds // BUCKET_SECONDS
    bucket = first
    while external_left + internal_left and bucket < last:
        if bucket != first:
            for limit in limits:
                limit.rolling.advance(bucket)
        already = buckets.messages.get(bucket, 0)
        pacing_room = max(0, quota.messages_per_minute - already) * request.per_message
        external, internal, binding = _minute(limits, external_left, internal_left, pacing_room)
        for limit in limits:
            applies = limit.state.applies_to
            count = {ALL: external + internal, EXTERNAL: external, INTERNAL: internal}[applies]
            limit.rolling.send(bucket, count)
        sent = external + internal
        minutes.append((bucket, sent, -(-sent // request.per_message), binding))
        external_left -= external
        internal_left -= internal
        bucket += 1
    return Plan(
        request,
        now,
        start_at,
        states,
        now_recipients,
        now_binding,
        _segments(minutes),
        external_left + internal_left,
        notes,
    )


def _now(limits: list[_Limit], request: PlanRequest) -> tuple[int, str | None]:
    """Recipients every blocking limit lets go at the start, and the limit capping them."""
    all_room, all_name = _headroom(limits, ALL)
    ext_room, ext_name = _headroom(limits, EXTERNAL)
    int_room, int_name = _headroom(limits, INTERNAL)
    external = request.external if ext_name is None else min(request.external, ext_room)
    internal = request.internal if int_name is None else min(request.internal, int_room)
    total = external + internal
    if all_name is not None and all_room < total:
        return all_room, all_name
    if total == request.recipients:
        return total, None
    return total, ext_name if external < request.external else int_name


def _notes(
    request: PlanRequest,
    quota: QuotaLimits,
    freshness: TraceFreshness | None,
    now: float,
    max_per_message: int,
) -> tuple[str, ...]:
    notes: list[str] = []
    if request.per_message > max_per_message:
        notes.append(
            f"{request.per_message} recipients per message is over Exchange's default limit of"
            f" {max_per_message}: such messages are rejected unless RecipientLimits was raised."
        )
    if freshness is None or freshness.last_pull_ok is None:
        notes.append(
            "No message trace pull has finished yet: usage counts only what this exporter"
            " sent itself, so the real headroom may be smaller."
        )
    else:
        if not freshness.last_pull_ok:
            notes.append("The last message trace pull failed: usage may be out of date.")
        if freshness.newest_row_at is None:
            notes.append("The message trace has returned no rows yet: usage may be incomplete.")
        else:
            age = max(0.0, now - freshness.newest_row_at) / 60
            notes.append(
                f"The newest trace row is {age:.0f} min old and Microsoft's trace runs 5-10"
                " minutes behind: mail sent in the last ~10 minutes may not be counted yet."
            )
    if freshness is not None and freshness.probe_recipients:
        notes.append(
            f"Includes {freshness.probe_recipients} recipients of this exporter's own probe"
            " mail from this sender in the last 24 h."
        )
    notes.append(
        "Microsoft counts a distribution list as one recipient; the trace lists each member,"
        " so the used figures can be higher than Microsoft's (on the safe side)."
    )
    notes.append(
        f"Over {quota.messages_per_minute} messages per minute Microsoft delays submission,"
        " it does not reject: the schedule paces messages at that rate."
    )
    if request.external:
        notes.append(
            "The tenant external limit is shared by every sender of the tenant: their mail"
            " during the campaign pushes the schedule out."
        )
    if (
        quota.spam_external_per_hour is None
        and quota.spam_internal_per_hour is None
        and quota.spam_recipients_per_day is None
    ):
        notes.append(
            "No outbound spam policy caps are configured: if the tenant's policy sets lower"
            " ones, add them to the quota configuration or the plan is optimistic."
        )
    return tuple(notes)
