"""The Graph SDK request builders the exporter uses, in one module that callers import on
first use (inside the function that builds a request): an exporter without a tenant never
loads msgraph's generated modules, and the warnings they raise on import are silenced once,
here, not on every request."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # msgraph's generated modules warn about their own deprecated classes on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.admin.exchange.tracing.message_traces.message_traces_request_builder import (  # noqa: E501
        MessageTracesRequestBuilder,
    )
    from msgraph.generated.users.item.mail_folders.item.mail_folder_item_request_builder import (
        MailFolderItemRequestBuilder,
    )
    from msgraph.generated.users.item.messages.messages_request_builder import (
        MessagesRequestBuilder,
    )

__all__ = [
    "MailFolderItemRequestBuilder",
    "MessageTracesRequestBuilder",
    "MessagesRequestBuilder",
    "RequestConfiguration",
]
