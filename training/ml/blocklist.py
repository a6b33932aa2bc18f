"""A round's blocklist: parse the ops' text into patterns, and decide whether a candidate is blocked.

Pure Python (no Django): the round's filtering step and the settings form share it, and it is
unit-tested on its own (tests/training/ml/test_blocklist.py).
"""

from __future__ import annotations

import re

Patterns = list[tuple[str, re.Pattern]]


class BlocklistError(ValueError):
    """A line of the blocklist is not a valid regex; the message names the line."""


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
            try:
                patterns.append((entry, re.compile(entry[1:-1], re.IGNORECASE)))
            except re.error as exc:
                raise BlocklistError(f"Blocklist line {number}: bad regex ({exc}).") from None
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
