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
# the whole batch in one C call. That measured several times faster per row than json/orjson
# over a dict per row (bench/export.py; the numbers: see bench/README.md), and it lets Python
# keep up with PostgreSQL sending typed rows. Output: compact separators, UTF-8 (no \\u escapes), floats in shortest round-trip form,
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


_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": _TS,
    "messages": _MESSAGES,
}


def _columns(table: str) -> tuple[Column, ...]:
    """Columns from a table of `name  type  description` lines (types: _TYPES); a line that
    starts with white space continues the description above it."""
    columns: list[list[str]] = []
    for line in table.strip("\n").splitlines():
        if line[:1].isspace():
            columns[-1][2] += " " + line.strip()
        else:
            columns.append(line.split(None, 2))
    return tuple(Column(name, _TYPES[kind], description) for name, kind, description in columns)


KIND_SPECS: dict[str, KindSpec] = {
    "trl": KindSpec(
        name="trl",
        title="TRL preference pairs (conversational)",
        columns=_columns("""
prompt         messages  The conversation so far: a list of {role, content}.
chosen         messages  The response the majority preferred, as one assistant turn.
rejected       messages  The other response, as one assistant turn.
margin         float64   Mean signed strength (1-3) of the A/B votes towards `chosen` (4 decimals);
                         RewardTrainer reads it as the margin in -log sigmoid(r_chosen - r_rejected - margin).
comparison_id  int64     The comparison in the platform's database.
"""),
        to_columns=_trl_columns,
        to_lines=_trl_lines,
    ),
    "hh": KindSpec(
        name="hh",
        title="Anthropic HH-RLHF transcripts",
        columns=_columns("""
chosen    string  Full transcript ending with the preferred response.
rejected  string  Full transcript ending with the other response.
"""),
        to_columns=_hh_columns,
        to_lines=_hh_lines,
    ),
    "raw": KindSpec(
        name="raw",
        title="Raw votes",
        columns=_columns("""
vote_id                int64      The vote (preference) id.
comparison_id          int64      The comparison voted on.
prompt_id              int64      The prompt of the comparison.
rater                  string     Pseudonymous rater id: HMAC-SHA256 with a per-project secret.
choice                 string     a, b, tie or both_bad (a/b are the stored sides, not screen sides).
strength               int64      1 (slightly) to 3 (much) better; null for tie and both_bad.
rationale              string     The rater's free-text reason (may be empty).
unsafe_a               bool       Response A flagged unsafe.
unsafe_a_category      string     Category of the flag on A (may be empty).
unsafe_b               bool       Response B flagged unsafe.
unsafe_b_category      string     Category of the flag on B (may be empty).
shown_left             string     Which stored side (a or b) was shown on the left.
client_ms              int64      Time on task measured in the browser, milliseconds.
lease_ms               int64      Time from handing out the pair to the vote, milliseconds.
source                 string     rater (cast in the platform) or imported.
round_id               int64      The RLHF round that produced the comparison (null: imported).
response_a_checkpoint  int64      Policy checkpoint that wrote response A (null: not a policy).
response_b_checkpoint  int64      Policy checkpoint that wrote response B.
gold_choice            string     Expected answer when the comparison is a gold item, else empty.
created_at             timestamp  When the vote was cast (UTC).
updated_at             timestamp  When the vote row last changed (UTC).
"""),
        to_columns=_transpose,
    ),
    "comparisons": KindSpec(
        name="comparisons",
        title="Per-comparison vote aggregates",
        columns=_columns("""
comparison_id          int64      The comparison.
prompt_id              int64      Its prompt.
round_id               int64      The RLHF round that produced it (null: imported).
gold_choice            string     Expected answer for gold items, else empty.
votes_needed           int64      Overlap k asked for.
votes                  int64      Votes in this export.
votes_a                int64      Votes for A.
votes_b                int64      Votes for B.
votes_tie              int64      Tie votes.
votes_both_bad         int64      Both-bad votes.
majority               string     The choice with most votes; null when two choices tie for most.
agreement              float64    Share of votes for the most-voted choice (4 decimals).
mean_strength          float64    Mean strength of the A/B votes (null without any).
unsafe_a_votes         int64      Votes that flagged A unsafe.
unsafe_b_votes         int64      Votes that flagged B unsafe.
response_a_checkpoint  int64      Policy checkpoint that wrote A.
response_b_checkpoint  int64      Policy checkpoint that wrote B.
first_vote_at          timestamp  First vote (UTC).
last_vote_at           timestamp  Last vote (UTC).
"""),
        to_columns=_transpose,
    ),
}
KIND_SPECS = {
    name: spec if spec.to_lines else replace(spec, to_lines=_lines_of(spec.columns, f"{name.title()}Row"))
    for name, spec in KIND_SPECS.items()
}
