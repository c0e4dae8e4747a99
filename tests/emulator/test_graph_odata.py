"""The `$filter` parser, the message-trace filter rules, windows, skiptokens and the limiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365_emulator.graph.http_common import GraphError
from m365_emulator.graph.odata import (
    Comparison,
    FunctionCall,
    Junction,
    Negation,
    ODataError,
    TokenKind,
    Value,
    conjuncts,
    evaluate,
    parse_filter,
    referenced_properties,
    tokenize,
)
from m365_emulator.graph.throttle import RollingWindowLimiter
from m365_emulator.graph.trace import (
    DAY,
    TraceFilter,
    TraceLimits,
    TraceQuery,
    compile_trace_filter,
    resolve_window,
)
from tests.support.clock import ManualClock
from tests.support.trace import trace_row

T0 = datetime(2026, 1, 20, tzinfo=UTC)
T1 = datetime(2026, 1, 23, tzinfo=UTC)
WINDOW = "receivedDateTime ge 2026-01-20T00:00:00Z and receivedDateTime le 2026-01-23T00:00:00Z"

# -- tokenizer and parser


def test_tokenizer_tells_timestamps_numbers_strings_and_names_apart() -> None:
    tokens = list(
        tokenize("receivedDateTime ge 2026-01-20T00:00:00Z and size gt -5 or x eq 'it''s'")
    )

    assert [(token.kind, token.text) for token in tokens] == [
        (TokenKind.NAME, "receivedDateTime"),
        (TokenKind.NAME, "ge"),
        (TokenKind.DATETIME, "2026-01-20T00:00:00Z"),
        (TokenKind.NAME, "and"),
        (TokenKind.NAME, "size"),
        (TokenKind.NAME, "gt"),
        (TokenKind.NUMBER, "-5"),
        (TokenKind.NAME, "or"),
        (TokenKind.NAME, "x"),
        (TokenKind.NAME, "eq"),
        (TokenKind.STRING, "'it''s'"),
        (TokenKind.END, ""),
    ]


def test_parser_builds_comparisons_with_typed_literals() -> None:
    assert parse_filter("receivedDateTime ge 2026-01-20T00:00:00Z") == Comparison(
        "receivedDateTime", "ge", T0
    )
    assert parse_filter("size le 1.5") == Comparison("size", "le", 1.5)
    assert parse_filter("isRead eq false") == Comparison("isRead", "eq", False)
    assert parse_filter("from/emailAddress/address eq 'a@b.c'") == Comparison(
        "from/emailAddress/address", "eq", "a@b.c"
    )
    offset = parse_filter("receivedDateTime ge 2026-01-20T01:00:00+01:00")
    assert isinstance(offset, Comparison) and offset.value == T0


def test_and_binds_tighter_than_or_and_parentheses_override() -> None:
    a, b, c = (Comparison(name, "eq", "1") for name in "abc")

    assert parse_filter("a eq '1' or b eq '1' and c eq '1'") == Junction(
        "or", (a, Junction("and", (b, c)))
    )
    assert parse_filter("(a eq '1' or b eq '1') and c eq '1'") == Junction(
        "and", (Junction("or", (a, b)), c)
    )
    assert parse_filter("not a eq '1'") == Negation(a)


def test_function_calls_are_case_insensitive_by_name() -> None:
    assert parse_filter("startsWith(subject,'Probe')") == FunctionCall(
        "startswith", "subject", "Probe"
    )
    assert parse_filter("contains( subject , 'x y' )") == FunctionCall("contains", "subject", "x y")


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_string_literals_round_trip_with_doubled_quotes(text: str) -> None:
    expression = parse_filter(f"subject eq '{text.replace(chr(39), chr(39) * 2)}'")

    assert expression == Comparison("subject", "eq", text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("receivedDateTime ge", "expected a literal value but found 'end of input' at position 19"),
        ("status eq 'delivered", "unterminated string literal at position 10"),
        ("status eq delivered", "expected a literal value but found 'delivered'"),
        ("status equals 'x'", "expected a comparison operator"),
        ("status eq 'x' and", "found 'end of input'"),
        ("(status eq 'x'", "expected ) but found 'end of input'"),
        ("status eq 'x')", "expected end of input but found ')'"),
        ("status eq 'x' # y", "character '#' is not valid at position 14"),
        ("substringof('x',subject)", "unknown function with name 'substringof'"),
        ("contains(subject, 5)", "needs a string literal argument"),
        ("  ", "must not be empty"),
    ],
)
def test_syntax_errors_say_where(text: str, fragment: str) -> None:
    with pytest.raises(ODataError, match=None) as raised:
        parse_filter(text)

    assert fragment in str(raised.value)


def test_conjuncts_and_referenced_properties() -> None:
    expression = parse_filter("(a eq '1' and b eq '2') and (c eq '3' or not d eq '4')")

    assert [type(part) for part in conjuncts(expression)] == [Comparison, Comparison, Junction]
    assert referenced_properties(expression) == {"a", "b", "c", "d"}


def test_evaluate_compares_strings_without_case_and_checks_types() -> None:
    record: dict[str, Value] = {"subject": "Weekly Report", "size": 10, "when": T0}

    def lookup(name: str) -> Value:
        return record[name]

    assert evaluate(parse_filter("subject eq 'weekly report'"), lookup)
    assert evaluate(parse_filter("contains(subject,'REPORT') and size ge 10"), lookup)
    assert not evaluate(parse_filter("endswith(subject,'week') or size lt 10"), lookup)
    assert evaluate(parse_filter("when le 2026-01-20T00:00:00Z"), lookup)
    with pytest.raises(ODataError, match="incompatible types"):
        evaluate(parse_filter("when ge '2026-01-20'"), lookup)


# -- message trace filter rules


def test_trace_filter_extracts_bounds_and_keeps_conditions() -> None:
    trace_filter = compile_trace_filter(
        f"{WINDOW} and senderAddress eq 'A@Contoso.com' and startsWith(subject,'weekly')"
    )

    assert (trace_filter.start, trace_filter.end) == (T0, T1)
    assert len(trace_filter.conditions) == 2
    row = trace_row(T0.timestamp(), sender="a@contoso.com", subject="Weekly report")
    assert trace_filter.matches(row)
    assert not trace_filter.matches(trace_row(T0.timestamp(), sender="b@contoso.com"))


def test_trace_filter_drops_or_silently() -> None:
    trace_filter = compile_trace_filter(f"{WINDOW} and (status eq 'failed' or status eq 'pending')")

    assert trace_filter.conditions == ()
    assert trace_filter.matches(trace_row(T0.timestamp(), status="delivered"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("receivedDateTime gt 2026-01-20T00:00:00Z", "operator 'gt' is not supported"),
        ("receivedDateTime ge '2026-01-20T00:00:00Z'", "'Edm.DateTimeOffset' and 'Edm.String'"),
        (f"{WINDOW} and receivedDateTime ge 2026-01-21T00:00:00Z", "more than one 'ge'"),
        ("senderAddress ne 'a@contoso.com'", "operator 'ne' is not supported"),
        ("size eq 5", "Could not find a property named 'size'"),
        ("status eq 5", "must be compared with a quoted string"),
        ("contains(senderAddress,'x')", "only supported on 'subject'"),
        ("not status eq 'failed'", "'not' operator is not supported"),
    ],
)
def test_trace_filter_rejects_what_the_service_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ODataError) as raised:
        compile_trace_filter(text)

    assert fragment in str(raised.value)


# -- windows

NOW = T1.timestamp()


def _window(start: datetime | None, end: datetime | None) -> tuple[float, float]:
    return resolve_window(TraceFilter(start, end, ()), NOW, TraceLimits())


def test_no_bounds_mean_the_last_48_hours() -> None:
    assert _window(None, None) == (NOW - 2 * DAY, NOW)


def test_a_valid_window_is_taken_as_given() -> None:
    assert _window(T1 - timedelta(days=10), T1) == (NOW - 10 * DAY, NOW)


@pytest.mark.parametrize(
    ("start", "end", "fragment"),
    [
        (T0, None, "Both 'receivedDateTime ge' and 'receivedDateTime le'"),
        (T1, T0, "start must not be after its end"),
        (T0, T1 + timedelta(seconds=1), "end must not be in the future"),
        (T1 - timedelta(days=91), T1 - timedelta(days=85), "within the last 90 days"),
        (T1 - timedelta(days=10, seconds=1), T1, "must not span more than 10 days"),
    ],
)
def test_window_rules(start: datetime, end: datetime | None, fragment: str) -> None:
    with pytest.raises(GraphError) as raised:
        _window(start, end)

    assert raised.value.status == 400 and raised.value.code == "BadRequest"
    assert fragment in raised.value.message


# -- skiptokens


def test_skiptoken_round_trips_and_is_bound_to_the_tenant() -> None:
    query = TraceQuery("contoso", 1.5, 2.5, 10, "status eq 'x'", (-2.0, "r@x.com", "id-1"))

    token = query.to_skiptoken()

    assert TraceQuery.from_skiptoken(token, "contoso") == query
    assert token.isascii() and "=" not in token
    with pytest.raises(GraphError, match="skiptoken"):
        TraceQuery.from_skiptoken(token, "fabrikam")
    with pytest.raises(GraphError, match="skiptoken"):
        TraceQuery.from_skiptoken("not-a-token", "contoso")


# -- rolling window limiter


def test_limiter_admits_up_to_the_limit_per_key_and_recovers() -> None:
    clock = ManualClock()
    limiter = RollingWindowLimiter(3, 300, clock)

    assert [limiter.admit("a") for _ in range(3)] == [None, None, None]
    clock.advance(100)
    assert limiter.admit("a") == 200  # the first admission leaves the window in 200 s
    assert limiter.admit("b") is None
    assert limiter.used("a") == 3
    clock.advance(200)
    assert limiter.admit("a") is None  # all three earlier ones have left the window
    assert limiter.used("a") == 1
