"""The OpenAPI schema as the API's contract: every operation documents the error answers any
API view can give, with the one error body (`core.api.ErrorSerializer`, component "Error").

A drf-spectacular postprocessing hook (settings' SPECTACULAR_SETTINGS), so a new endpoint gets
them without a line of its own; what a view documents itself (a 409 naming its codes) is kept.
tests/test_api_contract.py fuzzes the schema against the API with schemathesis.
"""

from __future__ import annotations

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "description": 'Every API error: {"detail": message, "code": code} (core.errors.ErrorCode), '
    "with `errors` per field when the request does not parse.",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": True, "description": "Per-field messages."},
    },
    "required": ["detail", "code"],
}
# Any operation (DRF answers these before or around the view).
ALWAYS = {
    "400": "The request does not parse, or the service refuses it.",
    "401": "Not logged in, or a missing, invalid or expired token.",
    "403": "The caller lacks the role this endpoint needs.",
    "404": "No such object.",
    "405": "Method not allowed here.",
    "406": "No acceptable response format.",
    "409": "The object's state does not allow this now.",
    "429": "Too many requests: slow down (Retry-After says when to come back).",
}
WITH_BODY = {
    "413": "The request body is over the size limit.",
    "415": "Unsupported request content type.",
}


def document_errors(result: dict, generator, request, public) -> dict:
    """Add the shared error answers to every operation (postprocessing hook)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = {**ALWAYS, **(WITH_BODY if "requestBody" in operation else {})}
            responses = operation["responses"]
            for status, description in errors.items():
                response = responses.setdefault(status, {"description": description})
                content = response.setdefault("content", {})
                content.setdefault("application/json", {"schema": ERROR_REF})
    return result
