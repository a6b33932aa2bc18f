"""The policy gate of a round and the over-optimisation guard (the decisions are
`training.ml.gates.policy_gate` and `overoptimisation`; this adapts rows to them and back).

When a round's job ends (`round_gate_open`, inside the runner's last transaction) its new
checkpoint does not become current at once:

- gate "always" (today's behaviour, labelled so): it becomes current; evaluation "not_needed".
- otherwise the round is "awaiting": an evaluation of the new checkpoint against its parent is
  started (`training.services.evaluations.evaluation_create`); when it cannot be (no such
  service, no evaluation prompts) the round's `gate` says why and it stays awaiting.

`round_gate_check` (every minute from `round_gates_check_task`, and the round page's "Check
gate now") reads the evaluated win rate against the parent and applies the project's rule:
passed → the checkpoint becomes current ("promoted" event); failed → the parent stays current
("held" event, the reason on the page); too few votes → still awaiting. A passed checkpoint
whose parent is no longer current (ops rolled back, or another round's checkpoint was made
current meanwhile) is not made current: it was never compared with the current one.

After each check, and when a round ends, `overoptimisation_check` reads the project's last two
rounds (proxy reward under each round's reward model, evaluated win rate against the parent,
KL) and pauses the schedule with the reason when the proxy rises while the evaluation falls, or
KL is over the budget.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from core.errors import NotFound, ServiceError
from core.jobs import job_event_on_commit
from training.gate_selectors import gate_voters, round_history, round_win_rate_vs_parent
from training.ml.gates import Decision, overoptimisation, policy_gate
from training.models import PolicyEvent, RLHFRound, RoundSettings
from training.services.policies import policy_current, policy_make_current
from training.services.rounds import round_settings_get

State = RLHFRound.EvaluationState
log = logging.getLogger(__name__)
NO_EVALUATION_SERVICE = "Evaluations are not available in this installation (no evaluation service)."


def _settings(r: RLHFRound) -> RoundSettings:
    return round_settings_get(project=r.project)


def _gate_rule(row: RoundSettings) -> dict:
    return {"rule": row.policy_gate, "threshold": row.gate_threshold, "min_votes": row.gate_min_votes}


def _save(r: RLHFRound, state: str, gate: dict) -> None:
    r.evaluation_state, r.gate = state, {**gate, "state": state, "checked_at": timezone.now().isoformat()}
    RLHFRound.objects.filter(pk=r.pk).update(evaluation_state=r.evaluation_state, gate=r.gate)
    job_event_on_commit(r)


def _evaluation_start(r: RLHFRound) -> tuple[int | None, str]:
    """(evaluation id, problem): start the evaluation of the round's checkpoint against its parent."""
    try:
        from training.services.evaluations import evaluation_create
    except ImportError:
        return None, NO_EVALUATION_SERVICE
    try:
        with transaction.atomic():  # a refusal rolls back only the evaluation's own writes
            evaluation = evaluation_create(
                project=r.project,
                challenger=r.policy_out,
                opponent=r.policy_out.parent,
                round=r,
                enqueue=True,
            )
    except ServiceError as exc:
        return None, f"No evaluation could be started: {exc.message}"
    return evaluation.pk, ""


def _promote(r: RLHFRound, decision: Decision, gate: dict, *, waited: bool) -> None:
    """The gate passed: the checkpoint becomes current. After an evaluation (`waited`), only if
    the current policy is still its parent: otherwise it was never compared with the current one."""
    previous = policy_current(project=r.project)
    out = r.policy_out
    always = gate.get("rule") == RoundSettings.PolicyGate.ALWAYS
    state = State.NOT_NEEDED if always else State.PASSED
    kind, reason, current = PolicyEvent.Kind.PROMOTED, decision.reason, True
    if waited and previous is not None and previous.pk not in (out.parent_id, out.pk):
        kind, current = PolicyEvent.Kind.HELD, False
        reason = (
            f"{decision.reason} Not made current: the current policy is now {previous.label}, not this "
            "checkpoint's parent (rolled back or replaced meanwhile)."
        )
    if current:
        policy_make_current(checkpoint=out)
    PolicyEvent.objects.create(
        project=r.project,
        kind=kind,
        checkpoint=out,
        previous=previous,
        round=r,
        reason=reason,
        numbers=decision.as_dict()["numbers"],
    )
    _save(r, state, {**gate, "passed": True, "reason": reason, "made_current": current})


def round_gate_open(r: RLHFRound) -> None:
    """The round's job ended (inside its last transaction): apply "always" at once, else start
    the evaluation and wait for it."""
    if r.policy_out_id is None:
        return
    from training.services.schedules import gates_beat_ensure

    row = _settings(r)
    rule = _gate_rule(row)
    if row.policy_gate == RoundSettings.PolicyGate.ALWAYS:
        decision = policy_gate("always", None)
        _promote(r, decision, {**rule, **decision.as_dict()}, waited=False)
    else:
        evaluation, problem = _evaluation_start(r)
        _save(
            r,
            State.AWAITING,
            {**rule, "passed": None, "reason": problem or "Waiting for evaluation votes.", "evaluation": evaluation,
             "problem": problem},
        )  # fmt: skip
        gates_beat_ensure()
    overoptimisation_check(project=r.project, ending=r.pk)


def _waiting(row: RoundSettings, estimate) -> bool:
    return estimate is None or estimate.n == 0 or estimate.n < row.gate_min_votes


def round_gate_check(*, round_id: int) -> RLHFRound:
    """Decide a round awaiting evaluation, if its votes allow; a decided round is left as it is."""
    with transaction.atomic():
        r = (
            RLHFRound.objects.select_for_update(of=("self",))
            .select_related("project", "policy_out")
            .filter(pk=round_id)
            .first()
        )
        if r is None:
            raise NotFound("No such round.")
        if r.evaluation_state != State.AWAITING or r.policy_out is None:
            return r
        row = _settings(r)
        gate = {**r.gate, **_gate_rule(row)}
        if not gate.get("evaluation"):
            gate["evaluation"], gate["problem"] = _evaluation_start(r)
        voters, problem = gate_voters(row)
        if problem:  # the judge rule without a judge
            _save(r, State.AWAITING, {**gate, "passed": None, "reason": problem})
            return r
        estimate = None
        if row.policy_gate != RoundSettings.PolicyGate.ALWAYS:
            estimate = round_win_rate_vs_parent(round=r, voters=voters)
        decision = policy_gate(
            row.policy_gate, estimate, threshold=row.gate_threshold, min_votes=row.gate_min_votes
        )
        gate.update(decision.as_dict(), voters=voters)
        if decision.passed:
            _promote(r, decision, gate, waited=True)
        elif _waiting(row, estimate):
            reason = decision.reason if not gate.get("problem") else f"{decision.reason} {gate['problem']}"
            _save(r, State.AWAITING, {**gate, "passed": None, "reason": reason})
        else:
            PolicyEvent.objects.create(
                project=r.project,
                kind=PolicyEvent.Kind.HELD,
                checkpoint=r.policy_out,
                previous=policy_current(project=r.project),
                round=r,
                reason=decision.reason,
                numbers=gate["numbers"],
            )
            _save(r, State.FAILED, gate)
    overoptimisation_check(project=r.project)
    return r


def gate_judge_start(*, evaluation) -> object | None:
    """A round's evaluation pairs are in the queue: when the project's gate counts a judge's
    votes, set that judge voting on them (evaluation pairs only), so the gate decides without
    anyone starting it by hand. Returns the judge run, or None when there is nothing to start
    (another rule, no judge chosen, not a round's evaluation, or the judge already runs on this
    project and will reach these pairs)."""
    from training.models import EvaluationPair
    from training.services.judges import judge_run_create

    if evaluation.round_id is None:
        return None
    row = round_settings_get(project=evaluation.project)
    if row.policy_gate != RoundSettings.PolicyGate.JUDGE_LOWER_BOUND or row.eval_judge_id is None:
        return None
    pairs = EvaluationPair.objects.filter(evaluation=evaluation).count()
    if not pairs:
        return None
    try:
        with transaction.atomic():
            return judge_run_create(
                project=evaluation.project, judge=row.eval_judge, votes=pairs, only_evaluation=True
            )
    except ServiceError as exc:
        log.info("evaluation %s: the gate's judge was not started: %s", evaluation.pk, exc.message)
        return None


def round_gates_check_all() -> list[RLHFRound]:
    """Check every round awaiting evaluation (the periodic task)."""
    ids = (
        RLHFRound.objects.filter(evaluation_state=State.AWAITING).order_by("pk").values_list("pk", flat=True)
    )
    return [round_gate_check(round_id=pk) for pk in list(ids)]


def overoptimisation_check(*, project, ending: int | None = None) -> Decision | None:
    """Pause the project's schedule when its last rounds look over-optimised (or KL is over the
    budget); `ending`: a round whose job is ending now, counted as finished. Once per round:
    after ops resumed, the same evidence does not pause it again."""
    from training.services.schedules import schedule_pause

    row = round_settings_get(project=project)
    voters, _problem = gate_voters(row)
    rounds, history = round_history(project_id=project.pk, voters=voters, ending=ending)
    if not history:
        return None
    decision = overoptimisation(history, kl_budget=row.kl_budget)
    newest = rounds[-1]
    seen = PolicyEvent.objects.filter(project=project, kind=PolicyEvent.Kind.PAUSED, round=newest).exists()
    if decision.passed and not row.paused_reason and not seen:
        schedule_pause(
            project=project,
            reason=f"Round {newest.number}: {decision.reason}",
            round=newest,
            numbers=decision.as_dict()["numbers"],
        )
    return decision
