"""Bounded fuzz runs: the reply parser and the trace page parser never raise on hostile
input, and what they produce is always in its closed form."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from m365_smtp_exporter.graph.errors import MalformedPageError
from m365_smtp_exporter.graph.records import parse_trace_page
from m365_smtp_exporter.smtp.replies import CATEGORIES, classify, code_label, parse_reply
from tests.support.examples import examples

from .promises import ENHANCED_CODE, assert_safe_text

# Reply lines built from the pieces that matter: codes, dots, digits of every script,
# control characters, undecodable bytes (as aiosmtplib hands them over: surrogate escapes).
_PIECES = st.sampled_from(
    [
        "5",
        "4",
        "2",
        ".",
        " ",
        "\t",
        "\n",
        "\r",
        "\x1b[2J",
        "\x00",
        "\u0663",
        "\uff17",
        "0",
        "7",
        "999",
        "1234",
        "\udce9",
        "\u202e",
        "Authentication unsuccessful",
        "550 ",
        "5.7.139",
    ]
)
_REPLY_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=5)), max_size=30).map("".join)


@settings(max_examples=examples(200), deadline=None)
@given(code=st.integers(min_value=-100, max_value=1100), text=_REPLY_TEXT)
def test_reply_parsing_never_raises_and_labels_stay_closed(code: int, text: str) -> None:
    reply = parse_reply(code, text)
    classification = classify(reply)
    assert reply.code == 0 or 200 <= reply.code <= 599
    assert code_label(reply.code) == "invalid" or code_label(reply.code).isdigit()
    assert reply.enhanced_code == "" or ENHANCED_CODE.fullmatch(reply.enhanced_code)
    assert reply.enhanced_code.isascii()
    assert classification.category in CATEGORIES
    for line in reply.text.split("\n"):
        assert_safe_text(line)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_ROW_KEYS = ["id", "receivedDateTime", "senderAddress", "recipientAddress", "messageId", "status"]
_ROW = st.fixed_dictionaries({}, optional={key: _JSON for key in _ROW_KEYS})
_PAGE = st.fixed_dictionaries(
    {}, optional={"value": st.lists(_ROW, max_size=5) | _JSON, "@odata.nextLink": _JSON}
)


@settings(max_examples=examples(300), deadline=None)
@given(page=_PAGE | _JSON, garbage=st.binary(max_size=40))
def test_trace_page_parsing_never_crashes(page: object, garbage: bytes) -> None:
    encoded = json.dumps(page).encode()  # big integers too, which orjson refuses to read
    for body in (encoded, garbage, encoded[:-1]):
        try:
            parsed = parse_trace_page(body, ["contoso.com"])
        except MalformedPageError:
            continue  # counted as a malformed page by the pull
        assert parsed.next_link is None or isinstance(parsed.next_link, str)
