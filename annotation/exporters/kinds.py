"""What each kind of export holds: its columns (with a description for the card), its Parquet
schema, and how rows read from the database become lines or columns.

trl          prompt / chosen / rejected as conversations (lists of {role, content}) and a margin;
             only comparisons whose majority is A or B (ties, both-bad and split votes left out).
hh           Anthropic HH-RLHF: chosen / rejected full transcripts, same comparisons as trl.
raw          every vote, with a pseudonymous rater id and who voted (human, judge, imported).
comparisons  one row per comparison: vote counts, majority, agreement.

Raw and per-comparison rows also hold the prompt and both texts unless the spec's `texts` is
off; with a `test_fraction`, every kind gets a last `split` column (train | test). `kind_spec`
gives the columns and encoders of one kind under one spec.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import starmap

import msgspec
import pyarrow as pa

from annotation.exporters.filters import ExportFilters
from annotation.exporters.sql import export_row_names
from annotation.formats import render_hh
from training.ml.records import STRENGTH_MARGINS

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
    # A batch of rows as JSON Lines bytes (one object per row, keys in column order).
    to_lines: Callable[[list[tuple]], bytes]

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
_DECODER = msgspec.json.Decoder()


def json_loads(data):
    """JSON columns (a prompt's messages) as the export reads them: msgspec's decoder, which gives
    the same Python values as the standard library's json.loads (psycopg's default) in a
    fraction of the time; json.loads for what msgspec does not take (integers beyond 64 bits).
    The standard library's decoder was most of the reading's Python time per raw vote
    (bench/README.md)."""
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError:
        return json.loads(bytes(data))


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


def _trl_rows(rows: list[tuple]) -> list[tuple]:
    # rows: (prompt messages, chosen text, rejected text, margin, comparison id[, split])
    return [(r[0], _assistant(r[1]), _assistant(r[2]), *r[3:]) for r in rows]


def _hh_rows(rows: list[tuple]) -> list[tuple]:
    # rows: (prompt messages, chosen text, rejected text[, split]) -> two transcripts[, split]
    return [(render_hh(r[0], r[1]), render_hh(r[0], r[2]), *r[3:]) for r in rows]


def _shaped(shape: Callable[[list[tuple]], list[tuple]] | None, struct: type):
    """(to_lines, to_columns) of rows shaped by `shape` (None: as read)."""
    if shape is None:
        return _struct_lines(struct), _transpose

    def to_lines(rows: list[tuple]) -> bytes:
        return _ENCODER.encode_lines(list(starmap(struct, shape(rows))))

    return to_lines, lambda rows: _transpose(shape(rows))


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
        if not line.strip():
            continue
        if line[:1].isspace():
            columns[-1][2] += " " + line.strip()
        else:
            columns.append(line.split(None, 2))
    return tuple(Column(name, _TYPES[kind], description) for name, kind, description in columns)


_m1, _m2, _m3 = (f"{m:g}" for m in STRENGTH_MARGINS)
_TEXTS = """
prompt      messages  The conversation shown to the voter: a list of {role, content}.
response_a  string    Response A (stored side A; the screen side is in `shown_left`).
response_b  string    Response B.
"""
_SPLIT = """
split       string    train or test: a prompt-disjoint split (test_fraction and seed in the card).
"""

_TITLES = {
    "trl": "TRL preference pairs (conversational)",
    "hh": "Anthropic HH-RLHF transcripts",
    "raw": "Raw votes",
    "comparisons": "Per-comparison vote aggregates",
}
_COLUMN_TABLES = {
    "trl": f"""
prompt         messages  The conversation so far: a list of {{role, content}}.
chosen         messages  The response the majority preferred, as one assistant turn.
rejected       messages  The other response, as one assistant turn.
margin         float64   Mean margin of the A/B votes towards `chosen`, each vote's strength 1/2/3
                         mapped to {_m1} / {_m2} / {_m3} (the product's reward-model map), votes
                         for `rejected` counted negative, floored at 0 (4 decimals); RewardTrainer
                         reads it as the margin in -log sigmoid(r_chosen - r_rejected - margin).
comparison_id  int64     The comparison in the platform's database.
weight         float64   Only with `weights: trust`: the mean weight of the pair's A/B votes, a
                         person's vote weighing their rater's trust when the export ran (1 with no
                         quality row yet), a judge's or imported vote 1 (4 decimals); a weight
                         per row for a weighted loss.
""",
    "hh": """
chosen    string  Full transcript ending with the preferred response (system turns left out).
rejected  string  Full transcript ending with the other response.
""",
    "raw": """
vote_id                int64      The vote (preference) id.
comparison_id          int64      The comparison voted on.
prompt_id              int64      The prompt of the comparison.
rater                  string     Pseudonymous voter id: HMAC-SHA256 with a per-project secret.
voter_kind             string     human (a rater in the platform), judge (a program voting through
                                  the queue) or imported (a vote from imported data).
choice                 string     a, b, tie or both_bad (a/b are the stored sides, not screen sides).
strength               int64      1 (slightly) to 3 (much) better; null for tie and both_bad.
rationale              string     The rater's free-text reason (may be empty).
unsafe_a               bool       Response A flagged unsafe.
unsafe_a_category      string     Category of the flag on A (may be empty).
unsafe_b               bool       Response B flagged unsafe.
unsafe_b_category      string     Category of the flag on B (may be empty).
shown_left             string     Which stored side (a or b) was shown on the left; null for imported
                                  votes (never shown on a screen).
client_ms              int64      Time on task measured in the browser, milliseconds.
lease_ms               int64      Time from handing out the pair to the vote, milliseconds.
source                 string     rater, judge or imported (Preference.source).
round_id               int64      The RLHF round that produced the comparison (null: imported).
response_a_checkpoint  int64      Policy checkpoint that wrote response A (null: not a policy).
response_b_checkpoint  int64      Policy checkpoint that wrote response B.
gold_choice            string     Expected answer when the comparison is a gold item, else empty.
rater_trust            float64    The rater's trust when the export ran (annotation.quality; null
                                  for accounts with no quality row: judges, imports, new raters).
rater_state            string     The rater's state then: active, review or paused (null likewise).
weight                 float64    Only with `weights: trust`: the vote's weight, its rater's trust
                                  when the export ran for a person's vote (1 with no quality row
                                  yet), 1 for judges' and imported votes.
created_at             timestamp  When the vote was cast (UTC).
updated_at             timestamp  When the vote row last changed (UTC).
""",
    "comparisons": """
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
""",
}
_ALL_COLUMNS = {
    kind: {c.name: c for c in _columns(table + ("" if kind in ("trl", "hh") else _TEXTS) + _SPLIT)}
    for kind, table in _COLUMN_TABLES.items()
}
_SHAPES = {"trl": _trl_rows, "hh": _hh_rows}


@cache
def _spec(kind: str, names: tuple[str, ...]) -> KindSpec:
    columns = tuple(_ALL_COLUMNS[kind][name] for name in names)
    struct = _struct(f"{kind.title()}Row{len(names)}", list(names))
    to_lines, to_columns = _shaped(_SHAPES.get(kind), struct)
    return KindSpec(name=kind, title=_TITLES[kind], columns=columns, to_columns=to_columns, to_lines=to_lines)


def kind_spec(kind: str, filters: ExportFilters) -> KindSpec:
    """The columns (file order) and encoders of one kind of export under one filter spec."""
    names = export_row_names(kind=kind, filters=filters)
    if kind == "hh":
        names = ["chosen", "rejected", *names[3:]]
    return _spec(kind, tuple(names))
