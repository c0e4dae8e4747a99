"""msgraph-sdk (kiota) against the emulated Graph: typed parsing, paging, retries, auth."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import trustme

from m365_emulator.graph.faults import EndpointKind, GraphFault
from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import FOLDER_IDS, EmulatorState
from tests.support.clock import ManualClock
from tests.support.graph import CONTOSO, PROBE, GraphService, fetch_token, graph_service
from tests.support.trace import stored_message, trace_row

# msgraph's generated request builders (imported lazily, as the client walks a path) and
# kiota_abstractions warn about their own deprecated classes at import time.
_GENERATED_CODE_DEPRECATIONS = (
    "ignore:This class is deprecated. Please use the generic RequestConfiguration:"
    "DeprecationWarning",
    "ignore:GetQueryParameters is deprecated:DeprecationWarning",
)
pytestmark = [pytest.mark.filterwarnings(rule) for rule in _GENERATED_CODE_DEPRECATIONS]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.admin.exchange.tracing.message_traces import (
        message_traces_request_builder as traces_builder,
    )
    from msgraph.generated.models.exchange_message_trace_status import ExchangeMessageTraceStatus
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.users.item.messages.messages_request_builder import (
        MessagesRequestBuilder,
    )
    from msgraph_core import GraphClientFactory


class StaticTokens(AccessTokenProvider):
    """Hands kiota one bearer token for the emulator's host."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._hosts = AllowedHostsValidator(["127.0.0.1"])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return self._token if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


@pytest.fixture
async def client(service: GraphService) -> AsyncIterator[GraphServiceClient]:
    async with aiohttp.ClientSession() as session:
        token = await fetch_token(session, service.base_url)
    # msgraph-core's transport wrapper does not close the transport it wraps: own it here.
    async with (
        httpx.AsyncHTTPTransport() as transport,
        httpx.AsyncClient(transport=transport) as http,
    ):
        adapter = GraphRequestAdapter(
            BaseBearerTokenAuthenticationProvider(StaticTokens(token)),
            GraphClientFactory.create_with_default_middleware(client=http),
        )
        adapter.base_url = f"{service.base_url}/v1.0"  # no trailing slash
        yield GraphServiceClient(request_adapter=adapter)


def _window(clock: ManualClock, hours: float) -> str:
    start = datetime.fromtimestamp(clock() - hours * 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = datetime.fromtimestamp(clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"receivedDateTime ge {start} and receivedDateTime le {end}"


def _trace_request(filter_text: str, top: int) -> RequestConfiguration[Any]:
    builder = traces_builder.MessageTracesRequestBuilder
    query = builder.MessageTracesRequestBuilderGetQueryParameters(filter=filter_text, top=top)
    return RequestConfiguration(query_parameters=query)


async def test_sdk_reads_typed_trace_pages_and_follows_next_link(
    client: GraphServiceClient, graph_state: EmulatorState, clock: ManualClock
) -> None:
    for minute in range(5):
        graph_state.add_trace_row(
            trace_row(clock() - 600 + minute * 60, status="filteredAsSpam" if minute else "failed")
        )
    graph_state.add_trace_row(trace_row(clock() - 300, sender="other@contoso.com"))
    traces = client.admin.exchange.tracing.message_traces
    config = _trace_request(_window(clock, 1) + " and senderAddress eq 'sender@contoso.com'", 3)

    first = await traces.get(request_configuration=config)

    assert first is not None and first.value is not None and first.odata_next_link
    assert len(first.value) == 3
    newest = first.value[0]
    assert newest.sender_address == "sender@contoso.com"
    assert newest.status is ExchangeMessageTraceStatus.FilteredAsSpam
    assert newest.received_date_time == datetime.fromtimestamp(clock() - 360, tz=UTC)
    assert newest.size == 4321 and newest.from_i_p == "203.0.113.7"
    second = await traces.with_url(first.odata_next_link).get()
    assert second is not None and second.value is not None
    assert second.odata_next_link is None
    assert [row.status for row in second.value] == [
        ExchangeMessageTraceStatus.FilteredAsSpam,
        ExchangeMessageTraceStatus.Failed,
    ]


async def test_sdk_reads_details_by_recipient(
    client: GraphServiceClient, graph_state: EmulatorState, clock: ManualClock
) -> None:
    row = trace_row(clock() - 120, recipient="colleague@contoso.com")
    graph_state.add_trace_row(row)

    details = (
        await client.admin.exchange.tracing.message_traces.by_exchange_message_trace_id(row.id)
        .get_details_by_recipient_with_recipient_address("colleague@contoso.com")
        .get()
    )

    assert details is not None and details.value is not None
    assert [detail.event for detail in details.value] == ["Receive", "Deliver"]
    assert all(detail.message_id == row.message_id for detail in details.value)
    assert details.value[0].date_time == datetime.fromtimestamp(clock() - 120, tz=UTC)


async def test_sdk_finds_reads_folder_and_deletes_a_probe(
    client: GraphServiceClient, graph_state: EmulatorState, clock: ManualClock
) -> None:
    probe = stored_message(clock() - 30, folder="junkemail")
    mailbox = graph_state.mailbox(PROBE)
    assert mailbox is not None
    mailbox.messages += [stored_message(clock() - 90), probe]
    user = client.users.by_user_id(PROBE)
    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        filter=f"internetMessageId eq '{probe.internet_message_id}'",
        select=[
            "internetMessageId",
            "receivedDateTime",
            "parentFolderId",
            "internetMessageHeaders",
        ],
    )

    found = await user.messages.get(RequestConfiguration(query_parameters=query))
    folder = await user.mail_folders.by_mail_folder_id("junkemail").get()

    assert found is not None and found.value is not None and len(found.value) == 1
    message = found.value[0]
    assert message.internet_message_id == probe.internet_message_id
    assert message.received_date_time == datetime.fromtimestamp(probe.received_at, tz=UTC)
    assert message.subject is None  # not selected
    headers = {header.name: header.value for header in message.internet_message_headers or []}
    assert headers["Authentication-Results"].startswith("spf=pass")
    assert folder is not None and folder.display_name == "Junk Email"
    assert message.parent_folder_id == folder.id == FOLDER_IDS["junkemail"]

    await user.messages.by_message_id(probe.id).delete()

    moved = await user.messages.get(RequestConfiguration(query_parameters=query))
    assert moved is not None and moved.value is not None
    assert [m.parent_folder_id for m in moved.value] == [FOLDER_IDS["deleteditems"]]


async def test_sdk_errors_are_odata_errors(client: GraphServiceClient) -> None:
    with pytest.raises(ODataError) as raised:
        await client.users.by_user_id("nobody@contoso.com").messages.get()

    assert raised.value.response_status_code == 404
    assert raised.value.error is not None and raised.value.error.code == "ErrorInvalidUser"


async def test_sdk_retry_honours_injected_429(
    client: GraphServiceClient, service: GraphService, clock: ManualClock
) -> None:
    service.faults.inject(GraphFault.THROTTLED, endpoint=EndpointKind.TRACE, retry_after=1)

    page = await client.admin.exchange.tracing.message_traces.get(
        request_configuration=_trace_request(_window(clock, 1), 10)
    )

    assert page is not None and page.value == []
    assert service.traffic.count(EndpointKind.TRACE, 429) == 1
    assert service.traffic.count(EndpointKind.TRACE, 200) == 1


async def test_sdk_with_azure_identity_over_tls(
    graph_state: EmulatorState, clock: ManualClock, tmp_path: Path
) -> None:
    """The exporter's setup: azure-identity gets the token, kiota calls Graph, all over TLS."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    graph_state.add_trace_row(trace_row(clock() - 60))
    async with (
        graph_service(graph_state, tls=ca) as service,
        ClientSecretCredential(
            CONTOSO.tenant_id,
            CONTOSO.client_id,
            CONTOSO.client_secret,
            authority=service.base_url.removeprefix("https://"),
            connection_verify=str(ca_file),
        ) as credential,
        httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=ca_file)) as transport,
        httpx.AsyncClient(transport=transport) as http,
    ):
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"]
        )
        adapter = GraphRequestAdapter(
            auth, GraphClientFactory.create_with_default_middleware(client=http)
        )
        adapter.base_url = f"{service.base_url}/v1.0"
        graph = GraphServiceClient(request_adapter=adapter)

        page = await graph.admin.exchange.tracing.message_traces.get(
            request_configuration=_trace_request(_window(clock, 1), 10)
        )

    assert page is not None and page.value is not None and len(page.value) == 1
    assert service.traffic.responses() == {"token.200": 1, "trace.200": 1}
