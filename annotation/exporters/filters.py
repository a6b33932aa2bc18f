"""The filter spec of an export: parsed, checked and written back in one canonical form.

Plain Python (no Django): the same spec object is built from a web form, a JSON body or command
line options, and its canonical dict is what the snapshot row stores and the card shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

INCLUDE, EXCLUDE, ONLY = "include", "exclude", "only"
TRISTATE = (INCLUDE, EXCLUDE, ONLY)
# Who cast the votes an export holds: everyone, people rating in the platform (Preference.source
# "rater"), or judges (programs voting through the same queue, source "judge"). Imported votes
# are in "all" only.
VOTERS = ("all", "human", "judge")
# A weight per row from rater quality: none, or "trust" (a `weight` column in raw and TRL rows).
WEIGHTS = ("none", "trust")


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ExportFilters:
    """Which votes and comparisons an export holds.

    rounds        comparison.round_id in this list (empty: every round, imported ones too)
    since, until  vote time: since <= created_at < until. A bare date means the start of that
                  day for `since` and the END of that day for `until` (both inclusive), on the
                  page, in the API and on the command line alike (`parse_time`).
    min_votes     comparisons with at least this many (filtered) votes
    min_agreement comparisons whose majority choice has at least this share of their votes
    gold          gold items included, excluded (the default: gold pairs are rater-quality
                  checks, not data, unless asked) or only
    unsafe        comparisons where any vote flagged a response unsafe: included, excluded or only
    voters        all | human | judge: whose votes count (VOTERS)
    texts         raw and per-comparison rows embed the prompt and both response texts (False:
                  ids only, for size); TRL and HH rows are texts and always hold them
    test_fraction share of prompts held out as the test split (0: no split column). A prompt's
                  side is decided by a seeded hash of its content, so no prompt is on both
                  sides and a prompt keeps its side as data is added
    seed          the split's seed
    min_trust     people's votes count only when their rater's trust (annotation.quality) is at
                  least this (0: every vote); judges' and imported votes are kept. Raw rows
                  carry each rater's trust and state as they were when the export ran
    weights       none | trust: with "trust", raw rows get a `weight` column (a person's vote:
                  their rater's trust when the export ran, 1 with no quality row yet; judges'
                  and imported votes 1) and TRL rows the mean weight of their pair's A/B votes
    """

    rounds: tuple[int, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_votes: int = 1
    min_agreement: float = 0.0
    gold: str = EXCLUDE
    unsafe: str = INCLUDE
    voters: str = "all"
    texts: bool = True
    test_fraction: float = 0.0
    seed: int = 0
    min_trust: float = 0.0
    weights: str = "none"

    @property
    def split(self) -> bool:
        return self.test_fraction > 0

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
            "voters": self.voters,
            "texts": self.texts,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "min_trust": self.min_trust,
            "weights": self.weights,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


def parse_time(name: str, value, *, end_of_day: bool) -> dt.datetime | None:
    """The one parser of an export's time bounds (page, API and command): an ISO date-time
    (naive means UTC) or a bare date, which means its start, or with `end_of_day` its end."""
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
        except OverflowError as exc:  # 9999-12-31 as an end of day
            raise FilterError(f"{name}: {value!r} is out of range") from exc
    else:
        raise FilterError(f"{name}: expected an ISO date or date-time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise FilterError(f"{name}: {value!r} is out of range") from exc


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
    if rounds and not (0 < rounds[0] and rounds[-1] <= _BIGINT):
        raise FilterError("rounds: every round id must be a positive 64-bit integer")
    return tuple(rounds)


def _parse_tristate(name: str, value, default: str = INCLUDE) -> str:
    if value in (None, ""):
        return default
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


_BIGINT = 2**63 - 1


def _parse_number(name: str, value, kind: type, default, what: str):
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        raise FilterError(f"{name}: expected {what}")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:  # float(10**400) overflows
        raise FilterError(f"{name}: expected {what}") from exc
    if kind is int and not -_BIGINT <= number <= _BIGINT:
        raise FilterError(f"{name}: expected {what} (64-bit)")
    return number


def _parse_bool(name: str, value, default: bool) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise FilterError(f"{name}: expected true or false")


def _parse_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value in (None, ""):
        return choices[0]
    text = str(value).strip().lower()
    if text not in choices:
        raise FilterError(f"{name}: expected one of {', '.join(choices)}")
    return text


KNOWN = (
    "rounds", "since", "until", "min_votes", "min_agreement", "gold", "unsafe", "voters", "texts",
    "test_fraction", "seed", "min_trust", "weights",
)  # fmt: skip


def parse_filters(data: dict | None) -> ExportFilters:
    """An ExportFilters from loosely typed input (form fields, JSON, options); FilterError if wrong."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(KNOWN))
    if unknown:
        raise FilterError(f"unknown filter(s): {', '.join(unknown)}")
    min_votes = _parse_number("min_votes", data.get("min_votes"), int, 1, "a whole number")
    if min_votes < 1:
        raise FilterError("min_votes: must be at least 1")
    between = "a number between 0 and 1"
    min_agreement = _parse_number("min_agreement", data.get("min_agreement"), float, 0.0, between)
    if not 0 <= min_agreement <= 1:
        raise FilterError(f"min_agreement: expected {between}")
    test_fraction = _parse_number(
        "test_fraction", data.get("test_fraction"), float, 0.0, "a number in [0, 1)"
    )
    if not 0 <= test_fraction < 1:
        raise FilterError("test_fraction: expected a number in [0, 1) (the share of prompts held out)")
    min_trust = _parse_number("min_trust", data.get("min_trust"), float, 0.0, between)
    if not 0 <= min_trust <= 1:
        raise FilterError(f"min_trust: expected {between}")
    since = parse_time("since", data.get("since"), end_of_day=False)
    until = parse_time("until", data.get("until"), end_of_day=True)
    if since and until and until <= since:
        raise FilterError("until must be after since")
    return ExportFilters(
        rounds=_parse_rounds(data.get("rounds")),
        since=since,
        until=until,
        min_votes=min_votes,
        min_agreement=round(min_agreement, 4),
        gold=_parse_tristate("gold", data.get("gold"), EXCLUDE),
        unsafe=_parse_tristate("unsafe", data.get("unsafe")),
        voters=_parse_choice("voters", data.get("voters"), VOTERS),
        texts=_parse_bool("texts", data.get("texts"), True),
        test_fraction=round(test_fraction, 4),
        seed=_parse_number("seed", data.get("seed"), int, 0, "a whole number"),
        min_trust=round(min_trust, 4),
        weights=_parse_choice("weights", data.get("weights"), WEIGHTS),
    )


_DEFAULTS = ExportFilters().as_dict()


def describe_filters(filters: dict, *, every: bool = False) -> list[str]:
    """A stored spec as short `name: value` lines a person reads (the page, the list): only what
    differs from the defaults unless `every`; ["all votes"] when nothing does."""
    lines = []
    for name, value in filters.items():
        if not every and _DEFAULTS.get(name) == value:
            continue
        if isinstance(value, list):
            shown = ", ".join(str(v) for v in value) or "all"
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        elif value is None:
            shown = "-"
        elif name in ("since", "until"):
            when = dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")
            shown = f"from {when}" if name == "since" else f"before {when}"
        else:
            shown = str(value)
        lines.append(f"{name}: {shown}")
    return lines or ["all votes"]
