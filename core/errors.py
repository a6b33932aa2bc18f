"""Errors a service raises for the person who asked, each with a code from one registry.

Every refusal is a `ServiceError(message, code=ErrorCode.X)`: the message is fit to show the
person who sent the request; the code is stable for clients and carries its HTTP status, so
the same refusal is the same status on every route (`core.api.exception_handler` turns it into
`{"detail": message, "code": code}`; pages show the message). New codes are added here, never
typed as free strings at the raise site (Zulip's `zerver/lib/exceptions.py` does the same).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A refusal's stable code and its HTTP status."""

    def __new__(cls, value: str, status: int):
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.status = status
        return obj

    # 400: the request itself is wrong.
    INVALID = "invalid", 400
    CHOICE = "choice", 400
    STRENGTH = "strength", 400
    REASON = "reason", 400
    CLIENT_MS = "client_ms", 400
    UNSAFE_CATEGORY = "unsafe_category", 400
    IDEMPOTENCY_KEY = "idempotency_key", 400
    INVALID_LINES = "invalid_lines", 400
    KIND = "kind", 400
    FORMAT = "format", 400
    FILTERS = "filters", 400
    CONFIG = "config", 400
    SCHEDULE = "schedule", 400
    CRON = "cron", 400
    BLOCKLIST = "blocklist", 400
    BAD_JSON = "bad_json", 400  # core.safejson: too deep, NaN, huge numbers, NUL / surrogates
    TOO_LARGE = "too_large", 413  # an upload or import over its size limit
    # 403: the caller may not do this.
    FORBIDDEN = "forbidden", 403
    # 404: the thing asked for does not exist (or has no file yet).
    NOT_FOUND = "not_found", 404
    NOT_READY = "not_ready", 404
    MISSING = "missing", 404
    # 409: the request is fine but the state of the thing does not allow it now.
    NO_LEASE = "no_lease", 409
    REVISE_WINDOW = "revise_window", 409
    CONFLICT = "conflict", 409
    FINISHED = "finished", 409
    RUNNING = "running", 409
    STATE = "state", 409
    STATUS = "status", 409
    DONE = "done", 409
    NO_PREFERENCES = "no_preferences", 409
    NO_PROMPTS = "no_prompts", 409
    NO_REWARD_MODEL = "no_reward_model", 409
    POLICY_BASE = "policy_base", 409
    POLICY_MISSING = "policy_missing", 409
    POLICY_HASH = "policy_hash", 409
    ARTEFACT = "artefact", 409
    TOO_FAST = "too_fast", 409  # a vote under the project's floor of time on task
    ALREADY_GOLD = "already_gold", 409  # promote a pair that is gold already
    NOT_GOLD_CANDIDATE = "not_gold_candidate", 409  # promote a pair whose people do not agree enough
    # 429: too many requests (accounts/throttles.py: DRF's "throttled"; accounts/lockout.py).
    THROTTLED = "throttled", 429
    LOCKED_OUT = "locked_out", 429

    def __str__(self) -> str:
        return self.value


class ServiceError(Exception):
    """A request the service refuses, with a message fit to show the person who sent it."""

    default_code = ErrorCode.INVALID

    def __init__(self, message: str, *, code: ErrorCode | None = None):
        super().__init__(message)
        self.message = message
        self.code = ErrorCode(code) if code is not None else self.default_code

    @property
    def status(self) -> int:
        return self.code.status


class NotFound(ServiceError):
    default_code = ErrorCode.NOT_FOUND


class NoLease(ServiceError):
    default_code = ErrorCode.NO_LEASE


class Forbidden(ServiceError):
    default_code = ErrorCode.FORBIDDEN
