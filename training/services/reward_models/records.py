"""From preference rows to the trainer's records: one PreferencePair per vote, one
SafetyExample per distinct response."""

from __future__ import annotations

from training.models import RewardModel
from training.selectors import preference_snapshot, snapshot_choices

from .config import snapshot_gold, snapshot_weights


def snapshot_records(run: RewardModel, config):
    """The run's snapshot of preferences as (pairs, examples), its hash checked: a run never
    trains on other votes than those it was queued on."""
    from training.ml.records import TrainingError

    choices = snapshot_choices(
        include_ties=config.tie_mode != "drop", include_both_bad=config.both_bad_mode != "drop"
    )
    snapshot = preference_snapshot(
        project=run.project,
        cutoff_id=run.snapshot_cutoff_id,
        choices=choices,
        with_rows=True,
        exclude_raters=(run.config or {}).get("exclude_raters", ()),
        rater_weights=snapshot_weights(run.config or {}),
        gold=snapshot_gold(run.config or {}),
    )
    if snapshot.sha256 != run.snapshot_sha256:
        raise TrainingError(
            "The preferences this run was queued on have changed since (votes deleted or edited); "
            "its snapshot no longer matches. Start a new run."
        )
    pairs, examples = preference_records(snapshot.rows)
    return pairs, examples, harm_pairs(snapshot.rows)


def harm_pairs(rows: list[dict]) -> list:
    """Harmlessness pairs for the harm model (training.ml.harm): the project's IMPORTED strict
    votes (HH-RLHF harmless-base imports: the rejected side is the more harmful). Raters'
    and judges' votes are overall preferences, not harm judgements: their unsafe flags are."""
    from training.ml.harm import HarmPair

    out = []
    for r in rows:
        if r.get("source") != "imported" or r["choice"] not in ("a", "b"):
            continue
        a, b = r["comparison__response_a__text"], r["comparison__response_b__text"]
        harmless, harmful = (a, b) if r["choice"] == "a" else (b, a)
        out.append(
            HarmPair(
                prompt=r["comparison__prompt__messages"],
                harmful=harmful,
                harmless=harmless,
                group=f"prompt-{r['comparison__prompt_id']}",
            )
        )
    return out


def preference_records(rows: list[dict]):
    """(pairs, examples) from `preference_snapshot(..., with_rows=True).rows`: one PreferencePair
    per vote (chosen first; grouped by prompt id; weighted by the row's "weight" when the
    snapshot is weighted, else 1) and one SafetyExample per distinct response.
    Also what bench/reward_hh.py trains on after importing through `import_preferences`."""
    from training.ml.records import PreferencePair, SafetyExample

    kinds = {"a": "strict", "b": "strict", "tie": "tie", "both_bad": "both_bad"}
    pairs = []
    # Safety labels per response: unsafe if any rater flagged it (a safety flag is rare and
    # costly to miss, so one flag is enough).
    responses: dict[int, tuple[list[dict], str, bool]] = {}
    for r in rows:
        prompt = r["comparison__prompt__messages"]
        a, b = r["comparison__response_a__text"], r["comparison__response_b__text"]
        chosen, rejected = (b, a) if r["choice"] == "b" else (a, b)
        pairs.append(
            PreferencePair(
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                strength=r["strength"],
                kind=kinds[r["choice"]],
                pair_id=str(r["pk"]),
                group=f"prompt-{r['comparison__prompt_id']}",
                weight=r.get("weight", 1.0),
            )
        )
        for rid, text, flag in (
            (r["comparison__response_a_id"], a, r["unsafe_a"]),
            (r["comparison__response_b_id"], b, r["unsafe_b"]),
        ):
            seen = responses.get(rid)
            responses[rid] = (prompt, text, flag or (seen[2] if seen else False))
    examples = [SafetyExample(prompt=p, response=t, unsafe=u) for p, t, u in responses.values()]
    return pairs, examples
