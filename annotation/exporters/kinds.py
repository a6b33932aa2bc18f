"""What each kind of export holds: its columns (with a description for the card), its Parquet
schema, and how rows read from the database become lines or columns.

trl          prompt / chosen / rejected as conversations (lists of {role, content}) and a margin;
             only comparisons whose majority is A or B (ties, both-bad and split votes left out).
hh           Anthropic HH-RLHF: chosen / rejected full transcripts, same comparisons as trl.
raw          every vote, with a pseudonymous rater id.
comparisons  one row per comparison: vote counts, majority, agreement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import starmap

import msgspec
import pyarrow as pa

from annotation.formats import render_hh

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str


@dataclass(frozen=True)
class KindSpec:
    name: str
    title: str
    columns: tuple[Column, ...]
    to_columns: Callable[[list[tuple]], list[list]]
    # A batch of rows as JSON Lines bytes (one object per row, keys in column order); None: one
    # JSON object per row holding the columns as they are (filled in below).
    to_lines: Callable[[list[tuple]], bytes] | None = None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.type) for c in self.columns])


# JSON Lines are encoded with msgspec rather than the standard library's json (or orjson): a
# batch of rows becomes msgspec Structs (one C call per row, no dict) and `encode_lines` writes
# the whole batch in one C call. Measured on 1M raw votes this is ~1 us per row, against ~8 us
# for json/orjson over a dict per row, and it lets Python keep up with PostgreSQL sending typed
# rows. Output: compact separators, UTF-8 (no \\u escapes), floats in shortest round-trip form,
# time stamps in RFC 3339 (UTC as "Z"), so the same rows always give the same bytes.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def _struct(name: str, fields: list[str]) -> type:
    # gc=False: a row holds no reference cycles; untracked rows do not set off the garbage
    # collector every few hundred allocations.
    return msgspec.defstruct(name, fields, gc=False)


def _struct_lines(struct: type) -> Callable[[list[tuple]], bytes]:
    def to_lines(rows: list[tuple]) -> bytes:
        return _ENCODER.encode_lines(list(starmap(struct, rows)))

    return to_lines


def _transpose(rows: list[tuple]) -> list[list]:
    return [list(col) for col in zip(*rows, strict=True)]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


_TRL_ROW = _struct("TrlRow", ["prompt", "chosen", "rejected", "margin", "comparison_id"])


def _trl_lines(rows: list[tuple]) -> bytes:
    return _ENCODER.encode_lines(
        [_TRL_ROW(r[0], _assistant(r[1]), _assistant(r[2]), r[3], r[4]) for r in rows]
    )


def _trl_columns(rows: list[tuple]) -> list[list]:
    # rows: (prompt messages, chosen text, rejected text, margin, comparison id)
    return [
        [r[0] for r in rows],
        [_assistant(r[1]) for r in rows],
        [_assistant(r[2]) for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    ]


def _hh_pairs(rows: list[tuple]) -> list[tuple[str, str]]:
    return [(render_hh(r[0], r[1]), render_hh(r[0], r[2])) for r in rows]


def _hh_columns(rows: list[tuple]) -> list[list]:
    pairs = _hh_pairs(rows)
    return [[p[0] for p in pairs], [p[1] for p in pairs]]


_HH_ROW = _struct("HhRow", ["chosen", "rejected"])


def _hh_lines(rows: list[tuple]) -> bytes:
    return _ENCODER.encode_lines(list(starmap(_HH_ROW, _hh_pairs(rows))))


def _lines_of(columns: tuple[Column, ...], name: str) -> Callable[[list[tuple]], bytes]:
    return _struct_lines(_struct(name, [c.name for c in columns]))


KIND_SPECS: dict[str, KindSpec] = {
    "trl": KindSpec(
        name="trl",
        title="TRL preference pairs (conversational)",
        columns=(
            Column("prompt", _MESSAGES, "The conversation so far: a list of {role, content}."),
            Column("chosen", _MESSAGES, "The response the majority preferred, as one assistant turn."),
            Column("rejected", _MESSAGES, "The other response, as one assistant turn."),
            Column(
                "margin",
                pa.float64(),
                "Mean signed strength (1-3) of the A/B votes towards `chosen` (4 decimals); "
                "RewardTrainer reads it as the margin in -log sigmoid(r_chosen - r_rejected - margin).",
            ),
            Column("comparison_id", pa.int64(), "The comparison in the platform's database."),
        ),
        to_columns=_trl_columns,
        to_lines=_trl_lines,
    ),
    "hh": KindSpec(
        name="hh",
        title="Anthropic HH-RLHF transcripts",
        columns=(
            Column("chosen", pa.string(), "Full transcript ending with the preferred response."),
            Column("rejected", pa.string(), "Full transcript ending with the other response."),
        ),
        to_columns=_hh_columns,
        to_lines=_hh_lines,
    ),
    "raw": KindSpec(
        name="raw",
        title="Raw votes",
        columns=(
            Column("vote_id", pa.int64(), "The vote (preference) id."),
            Column("comparison_id", pa.int64(), "The comparison voted on."),
            Column("prompt_id", pa.int64(), "The prompt of the comparison."),
            Column("rater", pa.string(), "Pseudonymous rater id: HMAC-SHA256 with a per-project secret."),
            Column(
                "choice", pa.string(), "a, b, tie or both_bad (a/b are the stored sides, not screen sides)."
            ),
            Column("strength", pa.int64(), "1 (slightly) to 3 (much) better; null for tie and both_bad."),
            Column("rationale", pa.string(), "The rater's free-text reason (may be empty)."),
            Column("unsafe_a", pa.bool_(), "Response A flagged unsafe."),
            Column("unsafe_a_category", pa.string(), "Category of the flag on A (may be empty)."),
            Column("unsafe_b", pa.bool_(), "Response B flagged unsafe."),
            Column("unsafe_b_category", pa.string(), "Category of the flag on B (may be empty)."),
            Column("shown_left", pa.string(), "Which stored side (a or b) was shown on the left."),
            Column("client_ms", pa.int64(), "Time on task measured in the browser, milliseconds."),
            Column("lease_ms", pa.int64(), "Time from handing out the pair to the vote, milliseconds."),
            Column("source", pa.string(), "rater (cast in the platform) or imported."),
            Column("round_id", pa.int64(), "The RLHF round that produced the comparison (null: imported)."),
            Column(
                "response_a_checkpoint",
                pa.int64(),
                "Policy checkpoint that wrote response A (null: not a policy).",
            ),
            Column("response_b_checkpoint", pa.int64(), "Policy checkpoint that wrote response B."),
            Column(
                "gold_choice", pa.string(), "Expected answer when the comparison is a gold item, else empty."
            ),
            Column("created_at", _TS, "When the vote was cast (UTC)."),
            Column("updated_at", _TS, "When the vote row last changed (UTC)."),
        ),
        to_columns=_transpose,
    ),
    "comparisons": KindSpec(
        name="comparisons",
        title="Per-comparison vote aggregates",
        columns=(
            Column("comparison_id", pa.int64(), "The comparison."),
            Column("prompt_id", pa.int64(), "Its prompt."),
            Column("round_id", pa.int64(), "The RLHF round that produced it (null: imported)."),
            Column("gold_choice", pa.string(), "Expected answer for gold items, else empty."),
            Column("votes_needed", pa.int64(), "Overlap k asked for."),
            Column("votes", pa.int64(), "Votes in this export."),
            Column("votes_a", pa.int64(), "Votes for A."),
            Column("votes_b", pa.int64(), "Votes for B."),
            Column("votes_tie", pa.int64(), "Tie votes."),
            Column("votes_both_bad", pa.int64(), "Both-bad votes."),
            Column(
                "majority", pa.string(), "The choice with most votes; null when two choices tie for most."
            ),
            Column("agreement", pa.float64(), "Share of votes for the most-voted choice (4 decimals)."),
            Column("mean_strength", pa.float64(), "Mean strength of the A/B votes (null without any)."),
            Column("unsafe_a_votes", pa.int64(), "Votes that flagged A unsafe."),
            Column("unsafe_b_votes", pa.int64(), "Votes that flagged B unsafe."),
            Column("response_a_checkpoint", pa.int64(), "Policy checkpoint that wrote A."),
            Column("response_b_checkpoint", pa.int64(), "Policy checkpoint that wrote B."),
            Column("first_vote_at", _TS, "First vote (UTC)."),
            Column("last_vote_at", _TS, "Last vote (UTC)."),
        ),
        to_columns=_transpose,
    ),
}
KIND_SPECS = {
    name: spec if spec.to_lines else replace(spec, to_lines=_lines_of(spec.columns, f"{name.title()}Row"))
    for name, spec in KIND_SPECS.items()
}
