"""Small checks at the edge: ids from paths and query strings, bounded numbers.

A database id is a PostgreSQL bigint. Python's `int()` accepts far larger numbers, superscript
and other Unicode digits ("²".isdigit() is True, int("²") fails), so an id taken as-is from a
URL could reach the database and come back as a 500. `id_from` and the `id` path converter
take ASCII digits only, within bigint; anything else is a 400 (query string) or a 404 (path).
"""

from __future__ import annotations

from django.urls import register_converter

from core.errors import ErrorCode, ServiceError

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


def id_from(value: str | None, *, name: str) -> int | None:
    """The id in a query parameter (None when absent or empty); ServiceError 400 otherwise."""
    if value in (None, ""):
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > BIGINT_MAX:
        raise ServiceError(f"{name}: expected an id (a whole number).", code=ErrorCode.INVALID)
    return int(value)


class IdConverter:
    """`<id:name>` in a path: ASCII digits within bigint, else no match (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > BIGINT_MAX:
            raise ValueError(value)  # Django: this pattern does not match
        return number

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")
