"""A campaign planning request: validated input, errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_RECIPIENTS = 1_000_000
MAX_PER_MESSAGE = 1_000  # Exchange's RecipientLimits can be raised up to 1,000
QUERY_FIELDS = ("tenant", "sender", "recipients", "external", "per_message", "start")
_MAX_QUERY_VALUE = 512


class PlanInputError(ValueError):
    """Bad planning input; `field` names the offending parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PlanRequest(BaseModel):
    """Send `recipients` recipients (`external` of them outside the tenant) from `sender`,
    `per_message` recipients per message, starting at `start` (default: now)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    sender: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    recipients: int = Field(ge=1, le=MAX_RECIPIENTS)
    external: int = Field(default=0, ge=0, le=MAX_RECIPIENTS)
    per_message: int = Field(default=1, ge=1, le=MAX_PER_MESSAGE)
    start: datetime | None = None

    @field_validator("sender")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a time without an offset is read as UTC
        return value

    @model_validator(mode="after")
    def _external_within(self) -> PlanRequest:
        if self.external > self.recipients:
            raise ValueError("external: cannot exceed recipients")
        return self

    @property
    def internal(self) -> int:
        return self.recipients - self.external

    @property
    def messages(self) -> int:
        return -(-self.recipients // self.per_message)

    @property
    def start_epoch(self) -> float | None:
        return None if self.start is None else self.start.timestamp()


def _first_error(error: ValidationError) -> PlanInputError:
    first = error.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    if not location and ":" in message:  # model-level checks name their field themselves
        location, _, message = message.removeprefix("Value error, ").partition(": ")
    return PlanInputError(location or "request", message)


def parse_plan_request(values: Mapping[str, Any]) -> PlanRequest:
    """A `PlanRequest` from query parameters or CLI options; raises `PlanInputError`."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        if key not in QUERY_FIELDS:
            raise PlanInputError(key, "unknown parameter")
        if isinstance(value, str):
            if len(value) > _MAX_QUERY_VALUE:
                raise PlanInputError(key, f"longer than {_MAX_QUERY_VALUE} characters")
            if value == "":
                continue  # an empty form field means "default"
        data[key] = value
    try:
        return PlanRequest.model_validate(data)
    except ValidationError as error:
        raise _first_error(error) from None
