"""SQL of the exports: the filter conditions, per-comparison aggregates and each kind's columns.

Text builders only (no database access): the selectors run them on a snapshot connection and the
benchmark reuses them for its COPY floor, so both measure the same join.
"""

from __future__ import annotations

from annotation.exporters.filters import ExportFilters
from annotation.quality.stats import majority_sql, majority_top_sql
from training.ml.records import STRENGTH_MARGINS

# Who voted, from Preference.source: people rating in the platform, judges, imported data.
VOTER_KINDS = {"rater": "human", "judge": "judge", "imported": "imported"}
_VOTER_KIND = "CASE p.source WHEN 'rater' THEN 'human' ELSE p.source END"
_VOTERS = {"all": "", "human": "p.source = 'rater'", "judge": "p.source = 'judge'"}
# A vote's margin in the reward loss, from its strength: the product's reward-model map
# (training.ml.records.STRENGTH_MARGINS; trusted constants, written into the SQL as literals).
_VOTE_MARGIN = "CASE p.strength {} ELSE 0 END".format(
    " ".join(f"WHEN {i} THEN {float(m)!r}" for i, m in enumerate(STRENGTH_MARGINS, start=1))
)


# Rater quality, under `weights: trust` (ExportFilters): a person's vote weighs their rater's trust
# when the export runs (1 with no quality row yet, as min_trust treats them); judges' and imported
# votes weigh 1. Raw rows read the trust from their `rs` join; the aggregates look it up per vote.
_RAW_WEIGHT = "CASE WHEN p.source = 'rater' THEN coalesce(rs.trust, 1) ELSE 1 END"
_VOTE_WEIGHT = (
    "CASE WHEN p.source = 'rater' THEN coalesce((SELECT rs.trust FROM annotation_raterstate rs"
    " WHERE rs.project_id = c.project_id AND rs.rater_id = p.rater_id), 1) ELSE 1 END"
)


# A comparison's majority and agreement: annotation.quality.stats' one rule (`majority`), as SQL.
_COUNTS = ("a.votes_a", "a.votes_b", "a.votes_tie", "a.votes_both_bad")  # in quality_stats.CHOICES order
_TOP = majority_top_sql(_COUNTS)
_MAJORITY, _AGREEMENT = majority_sql(_COUNTS, top="m.top", votes="a.votes")


def vote_conditions(filters: ExportFilters, params: dict) -> str:
    conds = ["c.project_id = %(project)s"]
    if filters.rounds:
        conds.append("c.round_id = ANY(%(rounds)s)")
        params["rounds"] = list(filters.rounds)
    if filters.since:
        conds.append("p.created_at >= %(since)s")
        params["since"] = filters.since
    if filters.until:
        conds.append("p.created_at < %(until)s")
        params["until"] = filters.until
    if _VOTERS[filters.voters]:
        conds.append(_VOTERS[filters.voters])
    if filters.min_trust > 0:  # rater quality: people's votes from trusted raters only
        conds.append(
            "(p.source <> 'rater' OR coalesce((SELECT rs.trust FROM annotation_raterstate rs"
            " WHERE rs.project_id = c.project_id AND rs.rater_id = p.rater_id), 1) >= %(min_trust)s)"
        )
        params["min_trust"] = filters.min_trust
    if filters.gold == "exclude":
        conds.append("c.gold_choice = ''")
    elif filters.gold == "only":
        conds.append("c.gold_choice <> ''")
    return " AND ".join(conds)


def split_expression(filters: ExportFilters, params: dict, content_hash: str = "pr.content_hash") -> str:
    """'test' or 'train' for a prompt: its content hash, hashed with the seed, under the cut.

    Decided per prompt (so no prompt is on both sides) from its content (the same prompt gets
    the same side in every kind and every later export with this seed), without a pass over
    the data: the test side holds `test_fraction` of the prompts in expectation.
    """
    params["split_seed"] = f"{filters.seed}:"
    params["split_cut"] = int(filters.test_fraction * 2**60)
    return (
        f"CASE WHEN ('x' || substr(md5(%(split_seed)s || {content_hash}), 1, 15))::bit(60)::bigint"
        " < %(split_cut)s THEN 'test' ELSE 'train' END"
    )


def _selected_comparisons_cte(filters: ExportFilters, params: dict) -> str:
    """`agg`: vote aggregates per comparison; `sel`: the comparisons the filters keep, with majority."""
    params["min_votes"] = filters.min_votes
    params["min_agreement"] = filters.min_agreement
    unsafe = {
        "include": "",
        "exclude": "AND a.unsafe_votes = 0",
        "only": "AND a.unsafe_votes > 0",
    }[filters.unsafe]
    weight = (
        f",\n               avg({_VOTE_WEIGHT}) FILTER (WHERE p.choice IN ('a', 'b')) AS mean_weight"
        if filters.weights == "trust"
        else ""
    )
    return f"""
    agg AS (
        SELECT p.comparison_id,
               min(c.prompt_id) AS prompt_id,
               min(c.round_id) AS round_id,
               min(c.gold_choice) AS gold_choice,
               min(c.response_a_id) AS response_a_id,
               min(c.response_b_id) AS response_b_id,
               count(*) AS votes,
               count(*) FILTER (WHERE p.choice = 'a') AS votes_a,
               count(*) FILTER (WHERE p.choice = 'b') AS votes_b,
               count(*) FILTER (WHERE p.choice = 'tie') AS votes_tie,
               count(*) FILTER (WHERE p.choice = 'both_bad') AS votes_both_bad,
               count(*) FILTER (WHERE p.unsafe_a) AS unsafe_a_votes,
               count(*) FILTER (WHERE p.unsafe_b) AS unsafe_b_votes,
               count(*) FILTER (WHERE p.unsafe_a OR p.unsafe_b) AS unsafe_votes,
               coalesce(sum(CASE p.choice WHEN 'a' THEN {_VOTE_MARGIN} WHEN 'b' THEN -({_VOTE_MARGIN}) END), 0)
                   AS signed_margin,
               avg(p.strength) AS mean_strength,
               min(p.created_at) AS first_vote_at,
               max(p.created_at) AS last_vote_at{weight}
        FROM annotation_preference p
        JOIN annotation_comparison c ON c.id = p.comparison_id
        WHERE {vote_conditions(filters, params)}
        GROUP BY p.comparison_id
    ),
    sel AS (
        SELECT a.*, {_MAJORITY} AS majority, {_AGREEMENT} AS agreement
        FROM agg a
        CROSS JOIN LATERAL (SELECT {_TOP} AS top) m
        WHERE a.votes >= %(min_votes)s
          AND {_AGREEMENT} >= %(min_agreement)s
          {unsafe}
    )"""


# Columns of each kind, in file order: (name, SQL expression). PostgreSQL sends them typed (binary);
# the encoders write JSON Lines and Parquet from the same rows, so both hold the same columns.
_RAW_COLUMNS = [
    ("vote_id", "p.id"),
    ("comparison_id", "p.comparison_id"),
    ("prompt_id", "c.prompt_id"),
    ("rater", "r.pseudonym"),
    ("voter_kind", _VOTER_KIND),
    ("choice", "p.choice"),
    ("strength", "p.strength"),
    ("rationale", "p.rationale"),
    ("unsafe_a", "p.unsafe_a"),
    ("unsafe_a_category", "p.unsafe_a_category"),
    ("unsafe_b", "p.unsafe_b"),
    ("unsafe_b_category", "p.unsafe_b_category"),
    ("shown_left", "p.shown_left"),
    ("client_ms", "p.client_ms"),
    ("lease_ms", "p.lease_ms"),
    ("source", "p.source"),
    ("round_id", "c.round_id"),
    ("response_a_checkpoint", "ra.policy_checkpoint_id"),
    ("response_b_checkpoint", "rb.policy_checkpoint_id"),
    ("gold_choice", "c.gold_choice"),
    # Rater quality when the export ran (NULL for votes of accounts with no quality row).
    ("rater_trust", "rs.trust"),
    ("rater_state", "rs.state"),
    ("created_at", "p.created_at"),
    ("updated_at", "p.updated_at"),
]
# Raw and per-comparison rows embed the texts (unless `texts` is off), as Label Studio and OASST1
# exports do: comparisons without an A/B majority are in no TRL/HH row.
_TEXT_COLUMNS = [("prompt", "pr.messages"), ("response_a", "ra.text"), ("response_b", "rb.text")]

_PAIR_WINNER = "CASE WHEN s.majority = 'a' THEN ra.text ELSE rb.text END"
_PAIR_LOSER = "CASE WHEN s.majority = 'a' THEN rb.text ELSE ra.text END"
# The margin of a pair: the mean margin (strength map) of its A/B votes, signed towards the
# majority, never below 0 (a split vote can pull it under; the majority side keeps 0).
_MARGIN = (
    "round(greatest(0, CASE WHEN s.majority = 'a' THEN 1 ELSE -1 END * s.signed_margin"
    " / (s.votes_a + s.votes_b)), 4)"
)
_PAIR_COLUMNS = [
    ("prompt", "pr.messages"),
    ("chosen", _PAIR_WINNER),
    ("rejected", _PAIR_LOSER),
    ("margin", _MARGIN),
    ("comparison_id", "c.id"),
]

_COMPARISON_COLUMNS = [
    ("comparison_id", "c.id"),
    ("prompt_id", "c.prompt_id"),
    ("round_id", "c.round_id"),
    ("gold_choice", "c.gold_choice"),
    ("votes_needed", "c.votes_needed"),
    ("votes", "s.votes"),
    ("votes_a", "s.votes_a"),
    ("votes_b", "s.votes_b"),
    ("votes_tie", "s.votes_tie"),
    ("votes_both_bad", "s.votes_both_bad"),
    ("majority", "s.majority"),
    ("agreement", "s.agreement"),
    ("mean_strength", "round(s.mean_strength, 4)"),
    ("unsafe_a_votes", "s.unsafe_a_votes"),
    ("unsafe_b_votes", "s.unsafe_b_votes"),
    ("response_a_checkpoint", "ra.policy_checkpoint_id"),
    ("response_b_checkpoint", "rb.policy_checkpoint_id"),
    ("first_vote_at", "s.first_vote_at"),
    ("last_vote_at", "s.last_vote_at"),
]

_NUMERIC_COLUMNS = {"margin", "agreement", "mean_strength", "rater_trust", "weight"}  # sent as float8
_SPLIT = "split"  # the split column's expression comes from split_expression()


def _columns(kind: str, filters: ExportFilters) -> list[tuple[str, str]]:
    """(name, SQL expression) of each column the kind's rows are read with, in order."""
    weighted = filters.weights == "trust"  # a `weight` column in raw and TRL rows
    if kind in ("trl", "hh"):
        columns = _PAIR_COLUMNS if kind == "trl" else _PAIR_COLUMNS[:3]
        if kind == "trl" and weighted:
            columns = columns + [("weight", "round(s.mean_weight::numeric, 4)")]
    elif kind == "raw":
        weight = [("weight", _RAW_WEIGHT)] if weighted else []
        columns = _RAW_COLUMNS + weight + (_TEXT_COLUMNS if filters.texts else [])
    elif kind == "comparisons":
        columns = _COMPARISON_COLUMNS + (_TEXT_COLUMNS if filters.texts else [])
    else:
        raise ValueError(f"unknown export kind {kind!r}")
    return columns + ([(_SPLIT, _SPLIT)] if filters.split else [])


def export_row_names(*, kind: str, filters: ExportFilters) -> list[str]:
    """Names of the values of each row read from the database (HH rows are (prompt, chosen,
    rejected[, split]) and become two transcripts)."""
    return [name for name, _ in _columns(kind, filters)]


def raw_column_index(filters: ExportFilters) -> dict[str, int]:
    """Position of each raw-votes column in a row."""
    return {name: i for i, name in enumerate(export_row_names(kind="raw", filters=filters))}


def export_sql(*, kind: str, filters: ExportFilters, project_id: int, raters=None) -> tuple[str, dict]:
    """The SQL and parameters of one export: the kind's columns, typed, one row per file row.

    Rows come in a fixed order (comparison id, then vote id), so the same spec over the same
    data gives the same bytes.
    """
    params: dict = {"project": project_id}
    joins = """
        JOIN annotation_response ra ON ra.id = c.response_a_id
        JOIN annotation_response rb ON rb.id = c.response_b_id"""
    if kind in ("trl", "hh") or filters.texts or filters.split:  # the prompt's messages or hash
        joins = "\n        JOIN annotation_prompt pr ON pr.id = c.prompt_id" + joins
    if kind == "raw":
        ids, pseudonyms = raters or ([], [])
        params["rater_ids"], params["rater_pseudonyms"] = list(ids), list(pseudonyms)
        cte = f"WITH {_selected_comparisons_cte(filters, params)}" if filters.needs_aggregates else ""
        keep = "AND p.comparison_id IN (SELECT comparison_id FROM sel)" if filters.needs_aggregates else ""
        body = f"""
        FROM annotation_preference p
        JOIN annotation_comparison c ON c.id = p.comparison_id {joins}
        JOIN unnest(%(rater_ids)s::bigint[], %(rater_pseudonyms)s::text[]) AS r(id, pseudonym)
             ON r.id = p.rater_id
        LEFT JOIN annotation_raterstate rs ON rs.project_id = c.project_id AND rs.rater_id = p.rater_id
        WHERE {vote_conditions(filters, params)} {keep}"""
        order = [("comparison_id", "p.comparison_id"), ("vote_id", "p.id")]
    else:
        cte = f"WITH {_selected_comparisons_cte(filters, params)}"
        body = f"""
        FROM sel s
        JOIN annotation_comparison c ON c.id = s.comparison_id {joins}"""
        if kind in ("trl", "hh"):
            body += "\n        WHERE s.majority IN ('a', 'b')"
        order = [("comparison_id", "c.id")]
    columns = _columns(kind, filters)
    expressions = {_SPLIT: split_expression(filters, params)} if filters.split else {}
    names = [name for name, _ in columns]
    hidden = [(f"order_{name}", expr) for name, expr in order if name not in names]
    select_list = ",\n               ".join(
        f"({expressions.get(expr, expr)})::float8 AS {name}"
        if name in _NUMERIC_COLUMNS
        else f"{expressions.get(expr, expr)} AS {name}"
        for name, expr in columns + hidden
    )
    order_by = ", ".join(f"t.{name}" if name in names else f"t.order_{name}" for name, _ in order)
    outer = ", ".join(f"t.{name}" for name in names)
    sql = f"{cte} SELECT {outer} FROM (SELECT {select_list} {body}) t ORDER BY {order_by}"
    return sql, params


def _by_voter_kind(filters: ExportFilters, params: dict) -> tuple[str, str]:
    """(CTEs, select-list items): votes, accounts, agreement and left-side wins per voter kind.

    Agreement of a kind: the mean, over comparisons with at least two of its votes, of the share
    of those votes that went to their most-voted choice. Left-side wins count votes with a
    screen side (imported votes have none).
    """
    keep = "AND p.comparison_id IN (SELECT comparison_id FROM sel)" if filters.needs_aggregates else ""
    ctes = f"""
    kind_votes AS (
        SELECT p.source, p.comparison_id, count(*) AS votes,
               greatest(count(*) FILTER (WHERE p.choice = 'a'), count(*) FILTER (WHERE p.choice = 'b'),
                        count(*) FILTER (WHERE p.choice = 'tie'),
                        count(*) FILTER (WHERE p.choice = 'both_bad')) AS top,
               count(*) FILTER (WHERE p.choice IN ('a', 'b') AND p.shown_left IS NOT NULL) AS sided,
               count(*) FILTER (WHERE p.choice = p.shown_left) AS left_wins
        FROM annotation_preference p
        JOIN annotation_comparison c ON c.id = p.comparison_id
        WHERE {vote_conditions(filters, params)} {keep}
        GROUP BY p.source, p.comparison_id
    ),
    kind_accounts AS (
        SELECT p.source, count(DISTINCT p.rater_id) AS accounts
        FROM annotation_preference p
        JOIN annotation_comparison c ON c.id = p.comparison_id
        WHERE {vote_conditions(filters, params)} {keep}
        GROUP BY p.source
    )"""
    items = []
    for source, kind in VOTER_KINDS.items():
        of = f"FROM kind_votes WHERE source = '{source}'"
        items += [
            f"(SELECT coalesce(sum(votes), 0) {of}) AS voters_{kind}_votes",
            f"(SELECT coalesce(max(accounts), 0) FROM kind_accounts WHERE source = '{source}')"
            f" AS voters_{kind}_accounts",
            f"(SELECT count(*) FILTER (WHERE votes >= 2) {of}) AS voters_{kind}_multi",
            f"(SELECT round(avg(round(top::numeric / votes, 4)) FILTER (WHERE votes >= 2), 4)::float8 {of})"
            f" AS voters_{kind}_agreement",
            f"(SELECT coalesce(sum(sided), 0) {of}) AS voters_{kind}_sided",
            f"(SELECT coalesce(sum(left_wins), 0) {of}) AS voters_{kind}_left_wins",
        ]
    return ctes, ",\n           ".join(items)


def _split_stats(filters: ExportFilters, params: dict) -> tuple[str, str]:
    """(CTE, select-list items): comparisons, A/B pairs, votes and prompts on the test side."""
    if not filters.split:
        return "", ""
    cte = f""",
    split_of AS (
        SELECT s.prompt_id, s.votes, s.majority, {split_expression(filters, params)} AS split
        FROM sel s JOIN annotation_prompt pr ON pr.id = s.prompt_id
    )"""
    items = """,
           (SELECT count(DISTINCT prompt_id) FROM split_of) AS prompts,
           (SELECT count(DISTINCT prompt_id) FILTER (WHERE split = 'test') FROM split_of) AS split_test_prompts,
           (SELECT count(*) FILTER (WHERE split = 'test') FROM split_of) AS split_test_comparisons,
           (SELECT count(*) FILTER (WHERE split = 'test' AND majority IN ('a', 'b')) FROM split_of)
               AS split_test_pairs,
           (SELECT coalesce(sum(votes) FILTER (WHERE split = 'test'), 0) FROM split_of) AS split_test_votes"""
    return cte, items


def export_stats_sql(*, filters: ExportFilters, project_id: int) -> tuple[str, dict]:
    """Numbers for the count and the dataset card, over the comparisons the filters keep.

    One pass over the votes (the `agg` group-by), one more per voter kind and comparison (the
    card's voters table), and small passes over their results: `sel` is materialised once and
    read by the sub-selects.
    """
    params: dict = {"project": project_id}
    kind_ctes, kind_items = _by_voter_kind(filters, params)
    split_cte, split_items = _split_stats(filters, params)
    sql = f"""WITH {_selected_comparisons_cte(filters, params)},{kind_ctes}{split_cte}
    SELECT count(*) AS comparisons,
           coalesce(sum(s.votes), 0) AS votes,
           coalesce(sum(s.votes_a), 0) AS votes_a,
           coalesce(sum(s.votes_b), 0) AS votes_b,
           coalesce(sum(s.votes_tie), 0) AS votes_tie,
           coalesce(sum(s.votes_both_bad), 0) AS votes_both_bad,
           count(*) FILTER (WHERE s.majority = 'a') AS majority_a,
           count(*) FILTER (WHERE s.majority = 'b') AS majority_b,
           count(*) FILTER (WHERE s.majority = 'tie') AS majority_tie,
           count(*) FILTER (WHERE s.majority = 'both_bad') AS majority_both_bad,
           count(*) FILTER (WHERE s.majority IS NULL) AS majority_none,
           coalesce(round(avg(s.agreement), 4), 0)::float8 AS mean_agreement,
           count(*) FILTER (WHERE s.agreement = 1) AS agreement_full,
           count(*) FILTER (WHERE s.agreement >= 0.75 AND s.agreement < 1) AS agreement_75,
           count(*) FILTER (WHERE s.agreement >= 0.5 AND s.agreement < 0.75) AS agreement_50,
           count(*) FILTER (WHERE s.agreement < 0.5) AS agreement_low,
           count(*) FILTER (WHERE s.unsafe_votes > 0) AS unsafe_comparisons,
           count(*) FILTER (WHERE s.votes = 1) AS single_vote_comparisons,
           count(*) FILTER (WHERE s.gold_choice <> '') AS gold_comparisons,
           count(*) FILTER (WHERE s.round_id IS NULL) AS comparisons_without_round,
           coalesce(array_agg(DISTINCT s.round_id) FILTER (WHERE s.round_id IS NOT NULL), '{{}}') AS rounds,
           min(s.first_vote_at) AS first_vote_at,
           max(s.last_vote_at) AS last_vote_at,
           {kind_items},
           (SELECT coalesce(array_agg(DISTINCT r.policy_checkpoint_id), '{{}}')
              FROM annotation_response r
             WHERE r.policy_checkpoint_id IS NOT NULL
               AND (r.id IN (SELECT response_a_id FROM sel) OR r.id IN (SELECT response_b_id FROM sel))
           ) AS checkpoints{split_items}
    FROM sel s"""
    return sql, params


def export_sources_sql(*, filters: ExportFilters, project_id: int) -> tuple[str, dict]:
    """Where the imported comparisons behind an export's votes came from: one row per import
    (format, file, and the licence / source / dataset its metadata names, when it names them).

    Reads the project's imported comparisons that have a vote in the export's vote range (an
    index probe each, no pass over all votes); comparison-level filters are not applied, so a
    source can be listed whose pairs those filters all left out.
    """
    params: dict = {"project": project_id}
    conds = vote_conditions(filters, params)
    sql = f"""
    SELECT DISTINCT c.metadata -> 'imported' ->> 'format' AS format,
           c.metadata -> 'imported' ->> 'file' AS file,
           coalesce(c.metadata -> 'imported' ->> 'license', c.metadata -> 'imported' ->> 'licence') AS license,
           coalesce(c.metadata -> 'imported' ->> 'source', c.metadata -> 'imported' ->> 'dataset') AS source
    FROM annotation_comparison c
    WHERE c.project_id = %(project)s AND c.metadata ? 'imported'
      AND EXISTS (SELECT 1 FROM annotation_preference p WHERE p.comparison_id = c.id AND {conds})
    ORDER BY 1, 2, 3, 4"""
    return sql, params


def export_raw_count_sql(*, filters: ExportFilters, project_id: int) -> tuple[str, dict]:
    """How many votes a raw-votes export holds, without the card's numbers.

    Without comparison-level filters a plain count over the vote join (no aggregate pass);
    with them, the votes of the comparisons the filters keep.
    """
    params: dict = {"project": project_id}
    if not filters.needs_aggregates:
        sql = (
            "SELECT count(*) FROM annotation_preference p JOIN annotation_comparison c"
            f" ON c.id = p.comparison_id WHERE {vote_conditions(filters, params)}"
        )
    else:
        sql = f"WITH {_selected_comparisons_cte(filters, params)} SELECT coalesce(sum(votes), 0) FROM sel"
    return sql, params


def export_rows_expected(*, kind: str, stats: dict) -> int:
    if kind == "raw":
        return int(stats["votes"])
    if kind in ("trl", "hh"):
        return int(stats["majority_a"] + stats["majority_b"])
    return int(stats["comparisons"])
