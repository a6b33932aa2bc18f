"""A round's blocklist: parse the ops' text into patterns, and decide whether a candidate is blocked.

Pure Python (no Django): the round's filtering step and the settings form share it, and it is
unit-tested on its own (tests/training/ml/test_blocklist.py).
"""

from __future__ import annotations

import re

import re2

Patterns = list[tuple[str, "re.Pattern | re2._Regexp"]]
MAX_REGEX_CHARS = 1000
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.case_sensitive = False
_RE2_OPTIONS.log_errors = False


class BlocklistError(ValueError):
    """A line of the blocklist is not a valid (RE2) regex; the message names the line."""


def _regex(source: str, number: int):
    """A /regex/ line compiled by RE2: matching takes linear time in the text, whatever the
    pattern (Python's `re` backtracks: `/(a+)+$/` on a long candidate would hang the round).
    RE2 has no lookaround or backreferences; such a line is refused with the reason."""
    if len(source) > MAX_REGEX_CHARS:
        raise BlocklistError(f"Blocklist line {number}: a regex of at most {MAX_REGEX_CHARS} characters.")
    try:
        return re2.compile(source, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise BlocklistError(
            f"Blocklist line {number}: bad regex ({reason}; lookarounds and backreferences are not supported)."
        ) from None


def blocklist_parse(text: str) -> Patterns:
    """One (label, pattern) per non-blank, non-comment line: `/regex/` as written, else the word
    or phrase as a stem: case-insensitive, at the start of a word, and matching the words that
    start with it ("kill" blocks "kill", "killing", "killers", not "skill"). A whole word only
    is a regex: `/\\bkill\\b/`."""
    patterns = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
            patterns.append((entry, _regex(entry[1:-1], number)))
        else:
            patterns.append((entry, re.compile(r"(?<!\w)" + re.escape(entry), re.IGNORECASE)))
    return patterns


def blocklist_match(patterns: Patterns, text: str) -> str | None:
    """The label of the first pattern found in `text`, or None."""
    for label, pattern in patterns:
        if pattern.search(text):
            return label
    return None


# Beside a learned harm model, lexical profanity at or over this still blocks (a floor of the
# hard filter; the lexical score is no longer the round's p(unsafe)).
PROFANITY_FLOOR = 0.9


def blocked_reasons(
    *, toxicity: float, threshold: float, text: str, patterns: Patterns, profanity: float | None = None
) -> str:
    """Why a candidate is blocked ("" when it is not): p(unsafe) over the threshold, lexical
    `profanity` (when given) at or over PROFANITY_FLOOR, and/or the first blocklist entry its
    text matches. At most 300 characters (the column's size)."""
    reasons = []
    if toxicity > threshold:
        reasons.append(f"toxicity {toxicity:.2f} > {threshold:g}")
    if profanity is not None and profanity >= PROFANITY_FLOOR:
        reasons.append(f"profanity {profanity:.2f} ≥ {PROFANITY_FLOOR:g}")
    label = blocklist_match(patterns, text)
    if label is not None:
        reasons.append(f"blocklist: {label}")
    return "; ".join(reasons)[:300]
