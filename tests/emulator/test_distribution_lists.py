"""Distribution lists: Microsoft counts a list as one recipient for the sender's limits and
its members for the tenant external limit; trace shows an `expanded` row plus the members."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.state import EmulatorState
from m365_emulator.world import (
    DistributionListConfig,
    WorldError,
    default_world,
    load_world,
)
from tests.support.clock import ManualClock
from tests.support.smtp_emulator import logged_in, message

SENDER = "probe@contoso.com"
TEAM = "team@contoso.com"
PARTNERS = "partners@contoso.com"
PARTNER_ADDRESSES = [f"p{n}@partner.example" for n in range(4)]


@pytest.fixture
def lists(state: EmulatorState) -> EmulatorState:
    state.add_distribution_list(PARTNERS, PARTNER_ADDRESSES)
    state.add_distribution_list(
        TEAM, ["probe-inbox@contoso.com", "user001@contoso.com", PARTNERS, TEAM]
    )
    return state


async def test_list_is_one_recipient_for_the_sender_and_its_members_in_trace(
    emulator: SmtpEmulator, lists: EmulatorState, clock: ManualClock
) -> None:
    client = await logged_in(emulator)
    errors, _ = await client.sendmail(
        SENDER, [TEAM, "user001@contoso.com"], message(SENDER, [TEAM], "to the team")
    )
    await client.quit()
    rows = [row for row in lists.all_trace_rows() if row.tenant == "contoso"]
    by_recipient = {row.recipient: row.status for row in rows}

    assert errors == {}
    # Microsoft's figure for the sender: the envelope's two recipients, not the 6 members
    assert emulator.ledger.recipients_last_day(SENDER) == 2
    # the tenant external limit counts after expansion: the 4 partner addresses
    assert emulator.ledger.external_recipients_last_day("contoso") == 4
    assert by_recipient[TEAM] == "expanded"
    assert by_recipient[PARTNERS] == "expanded"  # nested list: its own expanded row
    members = {"probe-inbox@contoso.com", "user001@contoso.com", *PARTNER_ADDRESSES}
    assert {r for r, status in by_recipient.items() if status != "expanded"} == members
    # a member that was also addressed directly gets one row, not two
    assert [row.recipient for row in rows].count("user001@contoso.com") == 1
    assert len(rows) == 2 + len(members)


async def test_list_members_are_delivered(emulator: SmtpEmulator, lists: EmulatorState) -> None:
    client = await logged_in(emulator)
    await client.sendmail(SENDER, [TEAM], message(SENDER, [TEAM], "delivered to members"))
    await client.quit()
    await emulator.delivery.wait_idle()
    inbox = lists.mailbox("probe-inbox@contoso.com")
    assert inbox is not None
    assert [stored.subject for stored in inbox.messages] == ["delivered to members"]
    assert {record.recipient for record in emulator.delivery.records} == {
        "probe-inbox@contoso.com",
        "user001@contoso.com",
        *PARTNER_ADDRESSES,
    }


def test_world_file_with_lists(tmp_path: Path) -> None:
    world = tmp_path / "world.yml"
    world.write_text(
        """
tenants:
  - {name: t, tenant_id: tid, client_id: cid, client_secret: s, accepted_domains: [t.example]}
mailboxes:
  - {address: a@t.example, tenant: t, password: pw}
distribution_lists:
  - {address: all@t.example, tenant: t, members: [a@t.example, someone@outside.example]}
""",
        encoding="utf-8",
    )
    state = EmulatorState()
    from m365_emulator.world import populate

    populate(state, load_world(world))
    assert state.expand_list("ALL@t.example") == ["a@t.example", "someone@outside.example"]
    assert state.expand_list("a@t.example") is None


@pytest.mark.parametrize(
    ("group", "message_part"),
    [
        (
            DistributionListConfig(
                address="all@elsewhere.example", tenant="contoso", members=["a@b.c"]
            ),
            "is not in an accepted domain of contoso",
        ),
        (
            DistributionListConfig(
                address="probe@contoso.com", tenant="contoso", members=["a@b.c"]
            ),
            "is defined twice or is a mailbox",
        ),
        (
            DistributionListConfig(address="x@contoso.com", tenant="nowhere", members=["a@b.c"]),
            "names unknown tenant nowhere",
        ),
    ],
)
def test_inconsistent_lists_are_refused(
    tmp_path: Path, group: DistributionListConfig, message_part: str
) -> None:
    import yaml

    document = default_world().model_dump(mode="json")
    for tenant, original in zip(document["tenants"], default_world().tenants, strict=True):
        tenant["client_secret"] = original.client_secret.get_secret_value()
    document["distribution_lists"] = [group.model_dump()]
    world = tmp_path / "world.yml"
    world.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(WorldError) as refused:
        load_world(world)
    assert message_part in str(refused.value)
