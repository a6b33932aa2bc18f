"""JSON from untrusted clients, parsed with limits: one parser for the API and for JSONL lines.

Python's `json` accepts what our storage and our code cannot take, and fails on some input with
errors no caller expects: a document nested 10,000 deep raises RecursionError, an integer over
4,300 digits a ValueError, `NaN` / `Infinity` parse into floats that PostgreSQL's jsonb refuses,
and NUL characters or lone surrogates (`"\\u0000"`, `"\\ud800"`) parse into strings that
PostgreSQL refuses at write time. `loads` refuses all of them up front with `JsonRejected` and
a reason fit to show the person who sent it; `SafeJSONParser` (DRF's default parser, set in
settings) turns that into a 400 with code `bad_json`; the JSONL imports report it per line.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rest_framework.parsers import JSONParser

from core.errors import ErrorCode, ServiceError

MAX_DEPTH = 64  # arrays and objects inside one another
MAX_NUMBER_CHARS = 100  # characters of one number literal
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class JsonRejected(ValueError):
    """The text is not JSON we accept; the message says why."""


def _number(kind):
    def parse(literal: str):
        if len(literal) > MAX_NUMBER_CHARS:
            raise JsonRejected(f"a number longer than {MAX_NUMBER_CHARS} characters")
        value = kind(literal)
        if isinstance(value, float) and not math.isfinite(value):
            raise JsonRejected(f"a number out of range ({literal[:20]})")
        return value

    return parse


def _constant(name: str):
    raise JsonRejected(f"{name} is not a JSON number")


def _check_string(text: str) -> None:
    found = _BAD_CHARS.search(text)
    if found:
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate (not Unicode text)"
        raise JsonRejected(f"{what} in a string")


def check(value: Any) -> None:
    """Raise JsonRejected when `value` (parsed JSON) nests too deep or holds text storage refuses."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_string(node)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise JsonRejected(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key in node:
                _check_string(key)
            stack.extend((child, depth + 1) for child in node.values())
        else:
            stack.extend((child, depth + 1) for child in node)


def loads(text: str | bytes) -> Any:
    """Parse JSON text within the limits above; JsonRejected (a ValueError) with the reason."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRejected(f"not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_number(int), parse_float=_number(float), parse_constant=_constant)
    except RecursionError:
        raise JsonRejected(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    check(value)
    return value


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with `loads`' limits: a refused body is a 400 with code `bad_json`."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        try:
            return loads(data)
        except JsonRejected as exc:
            raise ServiceError(
                f"The request body is not acceptable JSON: {exc}.", code=ErrorCode.BAD_JSON
            ) from None
