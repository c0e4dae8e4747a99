"""`m365-smtp-exporter plan`: ask a running exporter's `/api/v1/plan`, or pull the tenant's
message trace once and plan locally (the same engine either way)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import urlencode

import aiohttp
import orjson

from m365_smtp_exporter.config import Config
from m365_smtp_exporter.planner.engine import plan_campaign
from m365_smtp_exporter.planner.render import plan_to_json, plan_to_text
from m365_smtp_exporter.planner.request import PlanInputError, PlanRequest, parse_plan_request
from m365_smtp_exporter.planner.view import TraceFreshness

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
PASSWORD_ENV = "M365_EXPORTER_PASSWORD"  # basic-auth password for --exporter.url
MAX_ANSWER_BYTES = 1 << 20
TIMEOUT_SECONDS = 30.0


def add_plan_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="tenant name from the configuration")
    parser.add_argument("--sender", required=True, help="sending mailbox")
    parser.add_argument("--recipients", required=True, help="recipients in the campaign")
    parser.add_argument("--external", default="0", help="how many of them are external")
    parser.add_argument("--per-message", dest="per_message", default="1")
    parser.add_argument("--start", default=None, help="RFC 3339 start time (default: now)")
    parser.add_argument(
        "--exporter.url",
        dest="exporter_url",
        default=None,
        help="ask this running exporter (e.g. http://localhost:9587) instead of pulling the"
        " message trace once here",
    )
    parser.add_argument(
        "--exporter.user",
        dest="exporter_user",
        default=None,
        help=f"basic-auth user for --exporter.url (password from ${PASSWORD_ENV})",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON answer")


def _query(args: argparse.Namespace) -> dict[str, str]:
    values = {
        "tenant": args.tenant,
        "sender": args.sender,
        "recipients": args.recipients,
        "external": args.external,
        "per_message": args.per_message,
        "start": args.start,
    }
    return {key: value for key, value in values.items() if value is not None}


async def _ask_exporter(
    url: str, query: Mapping[str, str], user: str | None
) -> tuple[int, dict[str, Any]]:
    auth = None
    if user is not None:
        auth = aiohttp.BasicAuth(user, os.environ.get(PASSWORD_ENV, ""))
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with (
        aiohttp.ClientSession(timeout=timeout, auth=auth) as session,
        session.get(f"{url.rstrip('/')}/api/v1/plan?{urlencode(query)}") as response,
    ):
        body = await response.content.read(MAX_ANSWER_BYTES)
        document = orjson.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the exporter's answer is not a JSON object")
        return response.status, document


async def _plan_locally(config: Config, request: PlanRequest) -> dict[str, Any]:
    from m365_smtp_exporter.auth import AzureTokenProvider
    from m365_smtp_exporter.tenants import TenantServices

    tenant = config.tenants.get(request.tenant)
    if tenant is None:
        raise PlanInputError("tenant", "no such tenant in the configuration")
    services = TenantServices(
        request.tenant, tenant, token_provider_factory=AzureTokenProvider, probe_senders=()
    )
    try:
        if services.puller is None:
            raise PlanInputError("tenant", "has no credentials or trace pulls are disabled")
        result = await services.puller.pull()
        if not result.ok:
            raise RuntimeError(f"message trace pull failed: {result.outcome}")
        stats = services.puller.stats
        freshness = TraceFreshness(
            last_pull_ok=stats.last_pull_ok,
            last_success_at=stats.last_success_at or None,
            newest_row_at=stats.newest_received_at,
        )
        plan = plan_campaign(request, services.quota.engine, now=time.time(), freshness=freshness)
        return plan_to_json(plan)
    finally:
        await services.close()


async def run_plan_command(
    args: argparse.Namespace, config: Config | None, out: TextIO | None = None
) -> int:
    """Print the plan; exit 2 on bad input (the field is named), 1 when it cannot be made."""
    out = out or sys.stdout
    query = _query(args)
    try:
        request = parse_plan_request(query)
        if args.exporter_url:
            status, document = await _ask_exporter(args.exporter_url, query, args.exporter_user)
            if status == 400:
                print(f"bad input: {document.get('error')}", file=sys.stderr)
                return EXIT_INPUT
            if status != 200:
                print(f"the exporter answered HTTP {status}", file=sys.stderr)
                return EXIT_FAILED
        elif config is None:
            return EXIT_INPUT
        else:
            document = await _plan_locally(config, request)
    except PlanInputError as error:
        print(f"bad input: {error}", file=sys.stderr)
        return EXIT_INPUT
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as error:
        print(f"cannot plan: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(plan_to_text(document))
    return EXIT_OK
