"""The one REST shape of the emulator's control API, shared by its SMTP and Graph sides.

Each control path is a resource with a few methods (`GET` reads, `PUT` sets, `DELETE`
resets), JSON in and out. A method the resource does not have answers 405 with an `Allow`
header and a JSON error that shows the body the resource expects, so a wrong guess tells
the caller what to send; an invalid body answers 400 naming the offending field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024  # control documents are small; refuse anything bigger


class BadRequestError(Exception):
    """An invalid control request; the message names the field and the problem."""


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_response(status: int, message: str, **extra: object) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


async def parse_body(request: web.Request, model: type[Model]) -> Model:
    """The request's JSON body as `model` (an empty body is `{}`), else BadRequestError."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequestError(f"body: larger than {MAX_BODY_BYTES} bytes")
    body = b""
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - len(body)):
        body += chunk  # read() returns what has arrived so far, not the whole body
        if len(body) > MAX_BODY_BYTES:
            raise BadRequestError(f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        return model.model_validate_json(body if body.strip() else b"{}")
    except ValidationError as exc:
        raise BadRequestError(
            "; ".join(
                f"{'.'.join(str(part) for part in error['loc'] if part != '[key]') or 'body'}: "
                f"{error['msg']}"
                for error in exc.errors()
            )
        ) from None


def resource(
    path: str,
    methods: Mapping[str, Handler],
    *,
    expected_body: Mapping[str, object] | None = None,
) -> web.RouteDef:
    """One route serving `methods` on `path`; `expected_body` documents each method's body
    (shown in 405 and 400 answers)."""
    allowed = sorted(methods, key=["GET", "PUT", "POST", "DELETE"].index)
    examples = dict(expected_body or {})

    async def dispatch(request: web.Request) -> web.StreamResponse:
        method = "GET" if request.method == "HEAD" else request.method
        handler = methods.get(method)
        if handler is None:
            response = error_response(
                405,
                f"{request.method} is not allowed on {path}; use {', '.join(allowed)}",
                allowed=allowed,
                expected_body=examples,
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        try:
            return await handler(request)
        except BadRequestError as error:
            hint = examples.get(method)
            return error_response(400, str(error), **({"expected_body": hint} if hint else {}))
        except ValueError as error:
            return error_response(400, str(error))

    return web.route("*", path, dispatch)
