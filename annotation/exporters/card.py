"""The dataset card (README.md beside the data file): counts, label balance, agreement, schema,
provenance. Its YAML header names the data file, so `datasets.load_dataset(<folder>)` finds it.
"""

from __future__ import annotations

import json

from annotation.exporters.kinds import KIND_SPECS


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_card(
    *,
    export_id: int,
    project_name: str,
    project_slug: str,
    kind: str,
    fmt: str,
    data_file: str,
    filters: dict,
    stats: dict,
    rows: int,
    sha256: str,
    size_bytes: int,
    created_by: str,
    created_at: str,
) -> str:
    spec = KIND_SPECS[kind]
    votes = int(stats.get("votes") or 0)
    comparisons = int(stats.get("comparisons") or 0)
    decisive = int(stats.get("votes_a") or 0) + int(stats.get("votes_b") or 0)
    pairs = int(stats.get("majority_a") or 0) + int(stats.get("majority_b") or 0)
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        f"  data_files: {data_file}",
        "---",
        "",
        f"# {_cell(project_name)}: {spec.title}",
        "",
        f"Export #{export_id} of project `{project_slug}`, made by {_cell(created_by)} at {created_at} (UTC).",
        "",
        f"- Data file: `{data_file}` ({fmt}), {rows:,} rows, {size_bytes:,} bytes",
        f"- sha256: `{sha256}`",
        "- The same filters over the same data give these exact bytes (rows are ordered by comparison id,"
        " then vote id).",
        "",
        "## Filters",
        "",
        "```json",
        json.dumps(filters, indent=2, sort_keys=True),
        "```",
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---:|",
        f"| Comparisons kept by the filters | {comparisons:,} |",
        f"| Votes on them | {votes:,} |",
        f"| Raters | {int(stats.get('raters') or 0):,} |",
        f"| Pairs with an A or B majority (TRL / HH rows) | {pairs:,} |",
        f"| Comparisons with a single vote | {int(stats.get('single_vote_comparisons') or 0):,} |",
        f"| Gold comparisons | {int(stats.get('gold_comparisons') or 0):,} |",
        f"| Comparisons with an unsafe flag | {int(stats.get('unsafe_comparisons') or 0):,} |",
        f"| First vote | {stats.get('first_vote_at') or '-'} |",
        f"| Last vote | {stats.get('last_vote_at') or '-'} |",
        "",
        "## Label balance",
        "",
        "| Choice | Votes | Share | Comparisons with this majority |",
        "|---|---:|---:|---:|",
    ]
    for choice in ("a", "b", "tie", "both_bad"):
        n = int(stats.get(f"votes_{choice}") or 0)
        m = int(stats.get(f"majority_{choice}") or 0)
        lines.append(f"| {choice} | {n:,} | {_pct(n, votes)} | {m:,} |")
    lines += [
        f"| no single majority | | | {int(stats.get('majority_none') or 0):,} |",
        "",
        f"Position: the side shown on the left won {_pct(int(stats.get('left_wins') or 0), decisive)}"
        f" of the {decisive:,} A/B votes (50% means no position bias).",
        "",
        "## Agreement",
        "",
        "Agreement of a comparison is the share of its votes that went to its most-voted choice.",
        "",
        f"- Mean agreement: {float(stats.get('mean_agreement') or 0):.4f}",
        "",
        "| Agreement | Comparisons |",
        "|---|---:|",
        f"| 1.0 (unanimous) | {int(stats.get('agreement_full') or 0):,} |",
        f"| 0.75 - 1.0 | {int(stats.get('agreement_75') or 0):,} |",
        f"| 0.5 - 0.75 | {int(stats.get('agreement_50') or 0):,} |",
        f"| under 0.5 | {int(stats.get('agreement_low') or 0):,} |",
        "",
        "## Schema",
        "",
        "| Column | Type | Meaning |",
        "|---|---|---|",
    ]
    for col in spec.columns:
        lines.append(f"| `{col.name}` | `{col.type}` | {_cell(col.description)} |")
    rounds = ", ".join(str(r) for r in sorted(stats.get("rounds") or [])) or "none"
    checkpoints = sorted(stats.get("checkpoints") or [])
    shown = ", ".join(str(c) for c in checkpoints[:50]) + (" ..." if len(checkpoints) > 50 else "")
    lines += [
        "",
        "## Provenance",
        "",
        f"- RLHF rounds behind these comparisons: {rounds}"
        f" ({int(stats.get('comparisons_without_round') or 0):,} comparisons have no round: imported or written).",
        f"- Policy checkpoints that wrote responses: {shown or 'none'}",
        "- Rater ids are pseudonyms (HMAC-SHA256 with a secret kept per project): stable across this"
        " project's exports, not reversible without the secret.",
        "- Source: the platform's PostgreSQL database, read in one snapshot (counts and rows agree).",
        "",
    ]
    return "\n".join(lines)
