"""The `name=value; name=value` tag lists of DKIM key records and DMARC records (RFC 6376 3.2)."""

from __future__ import annotations

import re

_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class TagListError(ValueError):
    pass


def parse_tag_list(text: str) -> dict[str, str]:
    """Tags in order, names lower-cased, values stripped. Raises TagListError on a malformed
    or repeated tag (both make the whole record unusable)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # a trailing ";" is allowed
        name, separator, value = part.partition("=")
        name = name.strip()
        if not separator or not _TAG_NAME.match(name):
            raise TagListError(f"malformed tag {part.strip()!r}")
        key = name.lower()
        if key in tags:
            raise TagListError(f"tag {key} appears more than once")
        tags[key] = value.strip()
    return tags
