from __future__ import annotations

import re
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.message import build_probe_message, data_payload

SENT_AT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_identify_the_probe(make_config: Callable[..., ProbeConfig]) -> None:
    config = make_config(25, subject="M365 probe", name="eu-west")
    raw, message_id = build_probe_message(config, now=SENT_AT, token="0123456789abcdef")
    message = parse(raw)

    assert message["Message-ID"] == message_id
    assert re.fullmatch(r"<m365probe\.[0-9a-f]{32}@contoso\.test>", message_id)
    assert message["X-M365-Probe-Token"] == "0123456789abcdef"
    assert message["X-M365-Probe-Name"] == "eu-west"
    assert message["Subject"] == "M365 probe [01234567]"
    assert message["From"] == config.mail_from
    assert [str(address.addr_spec) for address in message["To"].addresses] == config.rcpt_to
    assert parsedate_to_datetime(message["Date"]).timestamp() == SENT_AT


def test_no_auto_replies(make_config: Callable[..., ProbeConfig]) -> None:
    raw, _ = build_probe_message(make_config(25), now=SENT_AT, token="t" * 16)
    message = parse(raw)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"


def test_body_names_the_probe_and_token(make_config: Callable[..., ProbeConfig]) -> None:
    raw, _ = build_probe_message(make_config(25, name="apac"), now=SENT_AT, token="feedface" * 2)
    body = parse(raw).get_content()
    assert "'apac'" in body
    assert "feedfacefeedface" in body


def test_each_message_gets_its_own_id(make_config: Callable[..., ProbeConfig]) -> None:
    config = make_config(25)
    ids = {build_probe_message(config, now=SENT_AT, token="t" * 16)[1] for _ in range(50)}
    assert len(ids) == 50


def test_lines_end_in_crlf(make_config: Callable[..., ProbeConfig]) -> None:
    raw, _ = build_probe_message(make_config(25), now=SENT_AT, token="t" * 16)
    assert raw.count(b"\n") == raw.count(b"\r\n") > 5
    assert raw.isascii()


def test_non_ascii_subject_is_encoded(make_config: Callable[..., ProbeConfig]) -> None:
    raw, _ = build_probe_message(make_config(25, subject="Prüfung"), now=SENT_AT, token="t" * 16)
    assert raw.isascii()
    assert parse(raw)["Subject"] == "Prüfung [tttttttt]"


def test_data_payload_dot_stuffs_and_terminates() -> None:
    payload = data_payload(b"Subject: x\r\n\r\n.leading dot\nbare lf\r\n.\r\nend")
    assert payload == (b"Subject: x\r\n\r\n..leading dot\r\nbare lf\r\n..\r\nend\r\n.\r\n")


def test_data_payload_keeps_a_final_crlf() -> None:
    assert data_payload(b"a\r\n") == b"a\r\n.\r\n"


def test_filled_template_equals_a_full_render(make_config: Callable[..., ProbeConfig]) -> None:
    from m365_smtp_exporter.smtp import message as module

    for config in (make_config(25), make_config(25, subject="Prüfung " * 12)):
        raw, message_id = build_probe_message(config, now=SENT_AT, token="0123456789abcdef")
        values = {
            module._DATE: parse(raw)["Date"],
            module._MESSAGE_ID: message_id,
            module._TOKEN: "0123456789abcdef",
            module._SHORT_TOKEN: "01234567",
            module._SENT_AT: "2026-01-01T00:00:00+00:00",
        }
        full = module._render(config, values)
        filled, rendered = parse(raw), parse(full)
        assert filled.items() == rendered.items()  # every header, in order
        assert filled.get_content() == rendered.get_content()
