"""SQL of the exports: the filter conditions, per-comparison aggregates and each kind's columns.

Text builders only (no database access): the selectors run them on a snapshot connection and the
benchmark reuses them for its COPY floor, so both measure the same join.
"""

from __future__ import annotations

from annotation.exporters.filters import ExportFilters


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
    if filters.gold == "exclude":
        conds.append("c.gold_choice = ''")
    elif filters.gold == "only":
        conds.append("c.gold_choice <> ''")
    return " AND ".join(conds)


def _selected_comparisons_cte(filters: ExportFilters, params: dict) -> str:
    """`agg`: vote aggregates per comparison; `sel`: the comparisons the filters keep, with majority."""
    params["min_votes"] = filters.min_votes
    params["min_agreement"] = filters.min_agreement
    unsafe = {
        "include": "",
        "exclude": "AND a.unsafe_votes = 0",
        "only": "AND a.unsafe_votes > 0",
    }[filters.unsafe]
    return f"""
    agg AS (
        SELECT p.comparison_id,
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
               count(*) FILTER (WHERE p.choice = p.shown_left) AS left_wins,
               coalesce(sum(CASE p.choice WHEN 'a' THEN p.strength WHEN 'b' THEN -p.strength END), 0)
                   AS signed_strength,
               avg(p.strength) AS mean_strength,
               min(p.created_at) AS first_vote_at,
               max(p.created_at) AS last_vote_at
        FROM annotation_preference p
        JOIN annotation_comparison c ON c.id = p.comparison_id
        WHERE {vote_conditions(filters, params)}
        GROUP BY p.comparison_id
    ),
    sel AS (
        SELECT a.*,
               CASE
                   WHEN (a.votes_a = m.top)::int + (a.votes_b = m.top)::int
                        + (a.votes_tie = m.top)::int + (a.votes_both_bad = m.top)::int > 1 THEN NULL
                   WHEN a.votes_a = m.top THEN 'a'
                   WHEN a.votes_b = m.top THEN 'b'
                   WHEN a.votes_tie = m.top THEN 'tie'
                   ELSE 'both_bad'
               END AS majority,
               round(m.top::numeric / a.votes, 4) AS agreement
        FROM agg a
        CROSS JOIN LATERAL (SELECT greatest(a.votes_a, a.votes_b, a.votes_tie, a.votes_both_bad) AS top) m
        WHERE a.votes >= %(min_votes)s
          AND round(m.top::numeric / a.votes, 4) >= %(min_agreement)s
          {unsafe}
    )"""


# Columns of each kind, in file order: (name, SQL expression). PostgreSQL sends them typed (binary);
# the encoders write JSON Lines and Parquet from the same rows, so both hold the same columns.
_RAW_COLUMNS = [
    ("vote_id", "p.id"),
    ("comparison_id", "p.comparison_id"),
    ("prompt_id", "c.prompt_id"),
    ("rater", "r.pseudonym"),
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
    ("created_at", "p.created_at"),
    ("updated_at", "p.updated_at"),
]

_PAIR_WINNER = "CASE WHEN s.majority = 'a' THEN ra.text ELSE rb.text END"
_PAIR_LOSER = "CASE WHEN s.majority = 'a' THEN rb.text ELSE ra.text END"
_MARGIN = (
    "round(CASE WHEN s.majority = 'a' THEN 1 ELSE -1 END * s.signed_strength::numeric"
    " / (s.votes_a + s.votes_b), 4)"
)


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

_NUMERIC_COLUMNS = {"margin", "agreement", "mean_strength"}  # sent as float8


def raw_column_index() -> dict[str, int]:
    """Position of each raw-votes column in a row."""
    return {name: i for i, (name, _) in enumerate(_RAW_COLUMNS)}


def export_sql(*, kind: str, filters: ExportFilters, project_id: int, raters=None) -> tuple[str, dict]:
    """The SQL and parameters of one export: the kind's columns, typed, one row per file row.

    Rows come in a fixed order (comparison id, then vote id), so the same spec over the same
    data gives the same bytes.
    """
    params: dict = {"project": project_id}
    pairs_from = """
        FROM sel s
        JOIN annotation_comparison c ON c.id = s.comparison_id
        JOIN annotation_prompt pr ON pr.id = c.prompt_id
        JOIN annotation_response ra ON ra.id = c.response_a_id
        JOIN annotation_response rb ON rb.id = c.response_b_id
        WHERE s.majority IN ('a', 'b')"""
    if kind == "raw":
        ids, pseudonyms = raters or ([], [])
        params["rater_ids"], params["rater_pseudonyms"] = list(ids), list(pseudonyms)
        cte = f"WITH {_selected_comparisons_cte(filters, params)}" if filters.needs_aggregates else ""
        keep = "AND p.comparison_id IN (SELECT comparison_id FROM sel)" if filters.needs_aggregates else ""
        columns = _RAW_COLUMNS
        body = f"""
        FROM annotation_preference p
        JOIN annotation_comparison c ON c.id = p.comparison_id
        JOIN annotation_response ra ON ra.id = c.response_a_id
        JOIN annotation_response rb ON rb.id = c.response_b_id
        JOIN unnest(%(rater_ids)s::bigint[], %(rater_pseudonyms)s::text[]) AS r(id, pseudonym)
             ON r.id = p.rater_id
        WHERE {vote_conditions(filters, params)} {keep}"""
        order = ("comparison_id", "vote_id")
    elif kind in ("trl", "hh"):
        cte = f"WITH {_selected_comparisons_cte(filters, params)}"
        body = pairs_from
        order = ("comparison_id",)
        columns = [
            ("prompt", "pr.messages"),
            ("chosen", _PAIR_WINNER),
            ("rejected", _PAIR_LOSER),
            ("margin", _MARGIN),
            ("comparison_id", "c.id"),
        ]
    elif kind == "comparisons":
        cte = f"WITH {_selected_comparisons_cte(filters, params)}"
        columns = _COMPARISON_COLUMNS
        body = """
        FROM sel s
        JOIN annotation_comparison c ON c.id = s.comparison_id
        JOIN annotation_response ra ON ra.id = c.response_a_id
        JOIN annotation_response rb ON rb.id = c.response_b_id"""
        order = ("comparison_id",)
    else:
        raise ValueError(f"unknown export kind {kind!r}")

    select_list = ",\n               ".join(
        f"({expr})::float8 AS {name}" if name in _NUMERIC_COLUMNS else f"{expr} AS {name}"
        for name, expr in columns
    )
    order_by = ", ".join(f"t.{name}" for name in order)
    sql = f"{cte} SELECT t.* FROM (SELECT {select_list} {body}) t ORDER BY {order_by}"
    return sql, params


def export_column_names(*, kind: str) -> list[str]:
    if kind == "raw":
        return [name for name, _ in _RAW_COLUMNS]
    if kind == "comparisons":
        return [name for name, _ in _COMPARISON_COLUMNS]
    if kind == "trl":
        return ["prompt", "chosen", "rejected", "margin", "comparison_id"]
    if kind == "hh":
        return ["chosen", "rejected"]
    raise ValueError(f"unknown export kind {kind!r}")


def export_stats_sql(*, filters: ExportFilters, project_id: int) -> tuple[str, dict]:
    """Numbers for the count and the dataset card, over the comparisons the filters keep.

    One pass over the votes (the `agg` group-by) and small passes over its result: `sel` is
    materialised once and read by the sub-selects.
    """
    params: dict = {"project": project_id}
    sql = f"""WITH {_selected_comparisons_cte(filters, params)}
    SELECT count(*) AS comparisons,
           coalesce(sum(s.votes), 0) AS votes,
           coalesce(sum(s.votes_a), 0) AS votes_a,
           coalesce(sum(s.votes_b), 0) AS votes_b,
           coalesce(sum(s.votes_tie), 0) AS votes_tie,
           coalesce(sum(s.votes_both_bad), 0) AS votes_both_bad,
           coalesce(sum(s.left_wins), 0) AS left_wins,
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
           (SELECT count(*) FROM (
               SELECT DISTINCT p.rater_id FROM annotation_preference p
               JOIN annotation_comparison c ON c.id = p.comparison_id
               WHERE {vote_conditions(filters, params)}
                 {"AND p.comparison_id IN (SELECT comparison_id FROM sel)" if filters.needs_aggregates else ""}
           ) x) AS raters,
           (SELECT coalesce(array_agg(DISTINCT r.policy_checkpoint_id), '{{}}')
              FROM annotation_response r
             WHERE r.policy_checkpoint_id IS NOT NULL
               AND (r.id IN (SELECT response_a_id FROM sel) OR r.id IN (SELECT response_b_id FROM sel))
           ) AS checkpoints
    FROM sel s"""
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
