"""Exchange Online's sending limits, hit through real SMTP sessions."""

from __future__ import annotations

import aiosmtplib
import pytest

from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.state import EmulatorState
from tests.support.clock import ManualClock
from tests.support.smtp_emulator import logged_in, message

QUOTA_TEXT = (
    "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
    "process message due to a permanent exception with message [BeginDiagnosticData]Message "
    "submission quota exceeded.[EndDiagnosticData]"
)
TERRL_TEXT = (
    "5.7.232 Your message can't be sent because your organization has exceeded its "
    "external recipient rate limit."
)


async def test_five_hundred_recipients_per_message(emulator: SmtpEmulator) -> None:
    recipients = [f"r{n:03d}@example.net" for n in range(501)]
    client = await logged_in(emulator)
    errors, _ = await client.sendmail(
        "probe@contoso.com", recipients, message("probe@contoso.com", ["list@example.net"])
    )
    await client.quit()
    refused = errors[recipients[-1]]
    assert list(errors) == [recipients[-1]]
    assert (refused.code, refused.message) == (452, "4.5.3 Too many recipients")
    assert emulator.ledger.recipients_last_day("probe@contoso.com") == 500


async def test_ten_thousand_recipients_per_rolling_day(
    emulator: SmtpEmulator, clock: ManualClock
) -> None:
    hour_ago = clock() - 3600
    emulator.ledger.record_history(
        "user001@contoso.com", [f"colleague{n}@contoso.com" for n in range(9_999)], hour_ago
    )
    client = await logged_in(emulator, "user001@contoso.com")
    mail = message("user001@contoso.com", ["probe-inbox@contoso.com"])
    errors, _ = await client.sendmail("user001@contoso.com", ["probe-inbox@contoso.com"], mail)
    with pytest.raises(aiosmtplib.SMTPDataError) as over_quota:
        await client.sendmail("user001@contoso.com", ["probe-inbox@contoso.com"], mail)
    clock.advance(86_400 - 3600 + 120)  # the back-filled hour leaves the window
    after_window, _ = await client.sendmail(
        "user001@contoso.com", ["probe-inbox@contoso.com"], mail
    )
    await client.quit()
    assert errors == {}
    assert (over_quota.value.code, over_quota.value.message) == (554, QUOTA_TEXT)
    assert after_window == {}
    assert emulator.ledger.recipients_last_day("user001@contoso.com") == 2


async def test_tenant_external_recipient_rate_limit(
    emulator: SmtpEmulator, state: EmulatorState, clock: ManualClock
) -> None:
    state.tenants["contoso"].external_recipient_limit = 5
    # other senders of the tenant used 4 external recipients a minute ago
    emulator.ledger.record_history(
        "user002@contoso.com", [f"x{n}@example.net" for n in range(4)], clock() - 60
    )
    client = await logged_in(emulator)
    within, _ = await client.sendmail(
        "probe@contoso.com", ["a@example.org"], message("probe@contoso.com", ["a@example.org"])
    )
    with pytest.raises(aiosmtplib.SMTPDataError) as over:
        await client.sendmail(
            "probe@contoso.com", ["b@example.org"], message("probe@contoso.com", ["b@example.org"])
        )
    internal, _ = await client.sendmail(
        "probe@contoso.com",
        ["probe-inbox@contoso.com"],
        message("probe@contoso.com", ["probe-inbox@contoso.com"]),
    )
    await client.quit()
    assert within == {}
    assert (over.value.code, over.value.message) == (550, TERRL_TEXT)
    assert internal == {}
    assert emulator.ledger.external_recipients_last_day("contoso") == 5


async def test_limits_are_counted_in_the_reply_tally(emulator: SmtpEmulator) -> None:
    client = await logged_in(emulator)
    with pytest.raises(aiosmtplib.SMTPSenderRefused):
        await client.mail("someone-else@contoso.com")
    await client.quit()
    assert emulator.replies["550 5.7.60"] == 1
    assert emulator.replies["235 2.7.0"] == 1
