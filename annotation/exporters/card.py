"""The dataset card (README.md beside the data file): counts, label balance, voters, agreement,
schema, split, provenance, licence. Its YAML header names the data file, so
`datasets.load_dataset(<folder>)` finds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

from annotation.exporters.kinds import KindSpec
from training.ml.records import STRENGTH_MARGINS

# Data sets recognised by the name of the file they were imported from, when the import's
# metadata names no licence or source itself: (name fragment, source, licence, where).
KNOWN_SOURCES = (("hh-rlhf", "Anthropic HH-RLHF", "MIT", "https://github.com/anthropics/hh-rlhf"),)
_VOTERS = (("human", "human"), ("judge", "judge"), ("imported", "imported"))


@dataclass(frozen=True)
class CardInput:
    """Everything the card says, gathered by the export service."""

    export_id: int
    project_name: str
    project_slug: str
    kind: str
    fmt: str
    data_file: str
    spec: KindSpec
    filters: dict
    stats: dict
    rows: int
    sha256: str
    size_bytes: int
    created_by: str
    created_at: str
    identical_to: int | None = None
    sources: list[dict] = field(default_factory=list)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _int(stats: dict, key: str) -> int:
    return int(stats.get(key) or 0)


def _header(c: CardInput) -> list[str]:
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        f"  data_files: {c.data_file}",
        "---",
        "",
        f"# {_cell(c.project_name)}: {c.spec.title}",
        "",
        f"Export #{c.export_id} of project `{c.project_slug}`, made by {_cell(c.created_by)}"
        f" at {c.created_at} (UTC).",
        "",
    ]
    if c.identical_to:
        lines += [
            f"Identical to export #{c.identical_to} (same sha256): the same data, already exported.",
            "",
        ]
    return lines + [
        f"- Data file: `{c.data_file}` ({c.fmt}), {c.rows:,} rows, {c.size_bytes:,} bytes",
        f"- sha256: `{c.sha256}`",
        "- The same filters over the same data give these exact bytes (rows are ordered by comparison id,"
        " then vote id).",
        "- Time stamps are UTC: RFC 3339 strings ending in `Z` in JSON Lines, `timestamp[us, UTC]` in"
        " Parquet (`datasets` reads the first as strings, the second as datetimes).",
        "",
        "## Filters",
        "",
        "```json",
        json.dumps(c.filters, indent=2, sort_keys=True),
        "```",
        "",
    ]


def _contents(c: CardInput) -> list[str]:
    """What the rows hold beyond the schema: texts, margins, HH transcripts."""
    lines = []
    if c.kind in ("raw", "comparisons"):
        lines.append(
            "- Texts: each row holds the prompt and both responses (`prompt`, `response_a`, `response_b`)."
            if c.filters.get("texts", True)
            else "- Texts: left out (`texts: false`); join on `prompt_id` / `comparison_id` for them."
        )
    if c.kind == "trl":
        m1, m2, m3 = (f"{m:g}" for m in STRENGTH_MARGINS)
        lines.append(
            f"- Margin: each A/B vote's strength 1 / 2 / 3 maps to a margin of {m1} / {m2} / {m3}, the"
            " product's own reward-model map (training.ml.records.STRENGTH_MARGINS); a row's margin is"
            " the mean over its A/B votes, votes for `rejected` negative, floored at 0. A unanimous"
            ' "slightly better" pair has margin 0.'
        )
    if c.kind == "hh":
        lines.append(
            "- HH-RLHF transcripts have no system turn: system turns of the prompts are dropped from"
            " `chosen` and `rejected`."
        )
    if c.kind in ("trl", "hh"):
        lines.append(
            "- Only comparisons whose majority is A or B are rows (ties, both-bad and splits are not)."
        )
    lines += _weights(c)
    return ["## Contents", "", *lines, ""] if lines else []


def _weights(c: CardInput) -> list[str]:
    """What the `weight` column means, when the spec asked for trust weights."""
    if c.filters.get("weights", "none") != "trust":
        return []
    if c.kind == "raw":
        what = "each vote's `weight` is"
    elif c.kind == "trl":
        what = "each row's `weight` is the mean, over the pair's A/B votes, of"
    else:
        return [
            "- Weights: `weights: trust` was asked for; this kind has no `weight` column (raw and TRL do)."
        ]
    return [
        f"- Weights (`weights: trust`): {what} the voter's trust when the export ran (annotation.quality:"
        " the posterior probability that the rater is a careful one, from gold accuracy, agreement,"
        " speed and side bias); 1 for a rater with no quality row yet, and for judges' and imported"
        " votes. Use it as the per-example weight of the loss (weighted Bradley-Terry), as the"
        " product's reward runs do with `vote_weights: trust`."
    ]


def _counts(stats: dict) -> list[str]:
    votes = _int(stats, "votes")
    pairs = _int(stats, "majority_a") + _int(stats, "majority_b")
    lines = [
        "## Counts",
        "",
        "| | |",
        "|---|---:|",
        f"| Comparisons kept by the filters | {_int(stats, 'comparisons'):,} |",
        f"| Votes on them | {votes:,} |",
        f"| Human raters | {_int(stats, 'voters_human_accounts'):,} |",
        f"| Pairs with an A or B majority (TRL / HH rows) | {pairs:,} |",
        f"| Comparisons with a single vote | {_int(stats, 'single_vote_comparisons'):,} |",
        f"| Gold comparisons | {_int(stats, 'gold_comparisons'):,} |",
        f"| Comparisons with an unsafe flag | {_int(stats, 'unsafe_comparisons'):,} |",
        f"| First vote | {stats.get('first_vote_at') or '-'} |",
        f"| Last vote | {stats.get('last_vote_at') or '-'} |",
        "",
        "## Label balance",
        "",
        "| Choice | Votes | Share | Comparisons with this majority |",
        "|---|---:|---:|---:|",
    ]
    for choice in ("a", "b", "tie", "both_bad"):
        n, m = _int(stats, f"votes_{choice}"), _int(stats, f"majority_{choice}")
        lines.append(f"| {choice} | {n:,} | {_pct(n, votes)} | {m:,} |")
    left, sided = _int(stats, "voters_human_left_wins"), _int(stats, "voters_human_sided")
    return lines + [
        f"| no single majority | | | {_int(stats, 'majority_none'):,} |",
        "",
        f"Position: the side shown on the left won {_pct(left, sided)} of the {sided:,} human A/B votes"
        " (50% means no position bias; judges are in the table below, imported votes were never shown"
        " on a screen).",
        "",
    ]


def _voters(stats: dict) -> list[str]:
    lines = [
        "## Voters",
        "",
        "Human raters, judges (programs voting through the same queue) and imported votes, apart."
        " Agreement: the mean share of a comparison's votes of that kind that went to their most-voted"
        " choice, over comparisons with at least two of them.",
        "",
        "| Voters | Votes | Accounts | Agreement | Left side won |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, kind in _VOTERS:
        votes = _int(stats, f"voters_{kind}_votes")
        if not votes:
            continue
        agreement = stats.get(f"voters_{kind}_agreement")
        shown = "-" if agreement is None else f"{float(agreement):.4f}"
        sided = _int(stats, f"voters_{kind}_sided")
        left = _pct(_int(stats, f"voters_{kind}_left_wins"), sided) if sided else "- (no screen side)"
        lines.append(
            f"| {label} | {votes:,} | {_int(stats, f'voters_{kind}_accounts'):,} | {shown} | {left} |"
        )
    return lines + [""]


def _agreement(stats: dict) -> list[str]:
    return [
        "## Agreement",
        "",
        "Agreement of a comparison is the share of its votes (all voters) that went to its most-voted choice.",
        "",
        f"- Mean agreement: {float(stats.get('mean_agreement') or 0):.4f}",
        "",
        "| Agreement | Comparisons |",
        "|---|---:|",
        f"| 1.0 (unanimous) | {_int(stats, 'agreement_full'):,} |",
        f"| 0.75 - 1.0 | {_int(stats, 'agreement_75'):,} |",
        f"| 0.5 - 0.75 | {_int(stats, 'agreement_50'):,} |",
        f"| under 0.5 | {_int(stats, 'agreement_low'):,} |",
        "",
    ]


def _split(c: CardInput) -> list[str]:
    fraction = float(c.filters.get("test_fraction") or 0)
    if not fraction:
        return []
    stats = c.stats
    unit, key = {"raw": ("votes", "votes"), "comparisons": ("comparisons", "comparisons")}.get(
        c.kind, ("pairs", "pairs")
    )
    total = _int(stats, key) if key != "pairs" else _int(stats, "majority_a") + _int(stats, "majority_b")
    test = _int(stats, f"split_test_{key}")
    prompts, test_prompts = _int(stats, "prompts"), _int(stats, "split_test_prompts")
    return [
        "## Train / test split",
        "",
        f"Prompt-disjoint: test_fraction {fraction:g}, seed {c.filters.get('seed', 0)}. Each prompt goes"
        " to one side by a seeded hash of its content, so no prompt is on both sides, the same prompt"
        " lands on the same side in every kind of export with this seed, and a prompt keeps its side"
        " as data is added; the test side holds test_fraction of the prompts in expectation. Rows"
        " carry it in `split`: `dataset.filter(lambda r: r['split'] == 'test')`.",
        "",
        f"| Split | Rows ({unit}) | Prompts (of the comparisons kept) |",
        "|---|---:|---:|",
        f"| train | {total - test:,} | {prompts - test_prompts:,} |",
        f"| test | {test:,} | {test_prompts:,} |",
        "",
    ]


def _schema(spec: KindSpec) -> list[str]:
    lines = ["## Schema", "", "| Column | Type | Meaning |", "|---|---|---|"]
    lines += [f"| `{col.name}` | `{col.type}` | {_cell(col.description)} |" for col in spec.columns]
    return lines + [""]


def _source_line(source: dict) -> str:
    file = source.get("file") or ""
    name = PureWindowsPath(PurePosixPath(file).name).name  # the file's name, never the importer's path
    known = next((k for k in KNOWN_SOURCES if k[0] in name.lower()), None)
    origin = source.get("source") or (known[1] if known else "")
    licence = source.get("license") or (known[2] if known else "")
    where = f" ({known[3]})" if known and not source.get("source") else ""
    return (
        f"- Imported ({source.get('format') or '?'} format) from `{_cell(name) or '?'}`: source"
        f" {_cell(origin) or 'unknown'}{where}; licence {_cell(licence) or 'unknown (not recorded by the import)'}."
    )


def _provenance(stats: dict, sources: list[dict]) -> list[str]:
    rounds = ", ".join(str(r) for r in sorted(stats.get("rounds") or [])) or "none"
    checkpoints = sorted(stats.get("checkpoints") or [])
    shown = ", ".join(str(c) for c in checkpoints[:50]) + (" ..." if len(checkpoints) > 50 else "")
    lines = [
        "## Provenance",
        "",
        f"- RLHF rounds behind these comparisons: {rounds}"
        f" ({_int(stats, 'comparisons_without_round'):,} comparisons have no round: imported or written).",
        f"- Policy checkpoints that wrote responses: {shown or 'none'}",
        "- Rater ids are pseudonyms (HMAC-SHA256 with a secret kept per project): stable across this"
        " project's exports, not reversible without the secret.",
        "- Source: the platform's PostgreSQL database, read in one snapshot (counts and rows agree).",
        "",
        "## Licence and source",
        "",
    ]
    lines += [_source_line(source) for source in sources]
    if _int(stats, "voters_human_votes") or _int(stats, "voters_judge_votes"):
        lines.append(
            "- Votes cast in the platform (human raters, judges): the project's own data; its licence is"
            " the project's to set."
        )
    return lines + [""]


def render_card(card: CardInput) -> str:
    lines = _header(card) + _contents(card) + _counts(card.stats) + _voters(card.stats)
    lines += _agreement(card.stats) + _split(card) + _schema(card.spec)
    lines += _provenance(card.stats, card.sources)
    return "\n".join(lines)
