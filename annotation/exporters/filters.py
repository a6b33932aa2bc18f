"""The filter spec of an export: parsed, checked and written back in one canonical form.

Plain Python (no Django): the same spec object is built from a web form, a JSON body or command
line options, and its canonical dict is what the snapshot row stores and the card shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

INCLUDE, EXCLUDE, ONLY = "include", "exclude", "only"
TRISTATE = (INCLUDE, EXCLUDE, ONLY)


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ExportFilters:
    """Which votes and comparisons an export holds.

    rounds        comparison.round_id in this list (empty: every round, imported ones too)
    since, until  vote time: since <= created_at < until (a date-only `until` means the end of that day)
    min_votes     comparisons with at least this many (filtered) votes
    min_agreement comparisons whose majority choice has at least this share of their votes
    gold          gold items included, excluded or only
    unsafe        comparisons where any vote flagged a response unsafe: included, excluded or only
    """

    rounds: tuple[int, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_votes: int = 1
    min_agreement: float = 0.0
    gold: str = INCLUDE
    unsafe: str = INCLUDE

    @property
    def needs_aggregates(self) -> bool:
        """Whether picking the comparisons needs their vote aggregates (min votes, agreement, unsafe)."""
        return self.min_votes > 1 or self.min_agreement > 0 or self.unsafe != INCLUDE

    def as_dict(self) -> dict:
        """Canonical JSON-able form: every key, fixed order, ISO times in UTC."""
        return {
            "rounds": list(self.rounds),
            "since": _iso(self.since),
            "until": _iso(self.until),
            "min_votes": self.min_votes,
            "min_agreement": self.min_agreement,
            "gold": self.gold,
            "unsafe": self.unsafe,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


def _parse_time(name: str, value, *, end_of_day: bool) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time())
        if end_of_day:
            parsed += dt.timedelta(days=1)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:  # YYYY-MM-DD
                parsed = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
                if end_of_day:
                    parsed += dt.timedelta(days=1)
            else:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FilterError(f"{name}: {value!r} is not an ISO date or date-time") from exc
    else:
        raise FilterError(f"{name}: expected an ISO date or date-time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _parse_rounds(value) -> tuple[int, ...]:
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        value = [part for part in value.replace(" ", "").split(",") if part]
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, list | tuple):
        raise FilterError("rounds: expected a list of round ids")
    try:
        rounds = sorted({int(v) for v in value})
    except (TypeError, ValueError) as exc:
        raise FilterError("rounds: every round id must be an integer") from exc
    return tuple(rounds)


def _parse_tristate(name: str, value) -> str:
    if value in (None, ""):
        return INCLUDE
    if value is True:
        return ONLY
    if value is False:
        return EXCLUDE
    text = str(value).strip().lower()
    aliases = {"in": INCLUDE, "out": EXCLUDE, "yes": INCLUDE, "no": EXCLUDE}
    text = aliases.get(text, text)
    if text not in TRISTATE:
        raise FilterError(f"{name}: expected one of {', '.join(TRISTATE)}")
    return text


def parse_filters(data: dict | None) -> ExportFilters:
    """An ExportFilters from loosely typed input (form fields, JSON, options); FilterError if wrong."""
    data = dict(data or {})
    known = {"rounds", "since", "until", "min_votes", "min_agreement", "gold", "unsafe"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FilterError(f"unknown filter(s): {', '.join(unknown)}")
    try:
        raw_votes = data.get("min_votes")
        min_votes = 1 if raw_votes in (None, "") else int(raw_votes)
    except (TypeError, ValueError) as exc:
        raise FilterError("min_votes: expected a whole number") from exc
    if min_votes < 1:
        raise FilterError("min_votes: must be at least 1")
    try:
        raw_agreement = data.get("min_agreement")
        min_agreement = 0.0 if raw_agreement in (None, "") else float(raw_agreement)
    except (TypeError, ValueError) as exc:
        raise FilterError("min_agreement: expected a number between 0 and 1") from exc
    if not 0 <= min_agreement <= 1:
        raise FilterError("min_agreement: expected a number between 0 and 1")
    since = _parse_time("since", data.get("since"), end_of_day=False)
    until = _parse_time("until", data.get("until"), end_of_day=True)
    if since and until and until <= since:
        raise FilterError("until must be after since")
    return ExportFilters(
        rounds=_parse_rounds(data.get("rounds")),
        since=since,
        until=until,
        min_votes=min_votes,
        min_agreement=round(min_agreement, 4),
        gold=_parse_tristate("gold", data.get("gold")),
        unsafe=_parse_tristate("unsafe", data.get("unsafe")),
    )
