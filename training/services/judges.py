"""Judges: raters that are programs. They vote through the same queue as people.

A `Judge` row names a backend (`training.ml.judges`): a reward model, an OpenAI-compatible chat
endpoint, or simulated raters (a seeded noisy copy of another judge). It owns a user account
(`judge-<name>`, no usable password, in the rater group) under which it votes.

A `JudgeRun` (a job of the kernel, `core.jobs`) rates a project's live queue:
`judge_run_execute` loops `assignment_next` -> judge the leased pair -> `preference_submit`
(source "judge", an idempotency key per run, voter and pair) until `votes_target` votes are
cast or no voter gets a lease. Each vote is a row with the same invariants as a person's: k
distinct voters per comparison (a simulated judge with N raters votes as N accounts
`judge-<name>-r<i>`, each with its own seed), one vote per voter per comparison, the side
shown on the left from the lease. A rerun of the same run counts the votes it already cast
and goes on from there; the keys make a replayed submit write nothing.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotation.models import Preference, Project
from annotation.services.members import project_members_add_all
from annotation.services.queue import assignment_next, assignment_skip, preference_submit
from core.errors import ErrorCode, NoLease, NotFound, ServiceError
from core.jobs import UNFINISHED, Job, JobReporter, job_cancel, job_event_on_commit, job_finish, job_run
from core.roles import role_groups_ensure
from training.ml.judges import (
    ChatJudge,
    JudgeBackend,
    JudgeError,
    JudgeItem,
    RewardModelJudge,
    SimulatedJudge,
)
from training.models import EvaluationPair, Judge, JudgeRun, RewardModel
from training.services.scoring import scorer_load

JOB_SOFT_TIME_LIMIT_S = 6 * 3600
MAX_RATERS = 64
MAX_VOTES = 1_000_000
NOT_EVALUATION = "judge: not an evaluation pair"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_RATER_SUFFIX = re.compile(r"-r[0-9]+$")  # reserved for simulated raters' accounts

# The parameters each kind takes: name -> (type, check, what a valid value is).
_RULES: dict[str, tuple[type, Callable, str]] = {
    "agreement": (float, lambda v: 0.5 <= v < 1.0, "a number in [0.5, 1)"),
    "left_bias": (float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)"),
    "spammer": (bool, lambda v: True, "true or false"),
    "seconds_median": (float, lambda v: 0.0 < v <= 3600.0, "a number of seconds in (0, 3600]"),
    "seconds_sigma": (float, lambda v: 0.0 <= v <= 5.0, "a number in [0, 5]"),
    "seed": (int, lambda v: 0 <= v < 2**31, "an integer in [0, 2^31)"),
    "tie_margin": (float, lambda v: 0.0 <= v <= 100.0, "a reward gap in [0, 100]"),
    "max_tokens": (int, lambda v: 1 <= v <= 32768, "an integer in [1, 32768]"),
}
_KIND_PARAMS = {
    Judge.Kind.SIMULATED: ("agreement", "left_bias", "spammer", "seconds_median", "seconds_sigma", "seed"),
    Judge.Kind.REWARD_MODEL: ("tie_margin",),
    Judge.Kind.CHAT: ("seed", "max_tokens"),
}


# --- judges -----------------------------------------------------------------------------------


def _param_clean(name: str, value):
    kind, check, valid = _RULES[name]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    if not ok or not check(value):
        raise ServiceError(f"Judge parameter {name} must be {valid}; got {value!r}.", code=ErrorCode.CONFIG)
    return value


def params_clean(kind: str, params: dict | None) -> dict:
    """The judge's parameters, checked; a simulated judge gets every noise parameter (defaults
    from `SimulatedJudge`), so a run is repeatable even if the defaults change later."""
    params = dict(params or {})
    allowed = _KIND_PARAMS[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ServiceError(
            f"A {kind} judge takes no parameter {', '.join(unknown)} (it takes: {', '.join(allowed)}).",
            code=ErrorCode.CONFIG,
        )
    if kind == Judge.Kind.SIMULATED:
        defaults = {f.name: f.default for f in dataclasses.fields(SimulatedJudge) if f.name in allowed}
        params = {**defaults, **params}
    return {name: _param_clean(name, value) for name, value in params.items()}


def _rater_group() -> Group:
    group = Group.objects.filter(name="rater").first()
    if group is None:
        role_groups_ensure()
        group = Group.objects.get(name="rater")
    return group


def _voter_account(username: str) -> AbstractBaseUser:
    """A judge's voting account: no usable password (it never signs in), in the rater group."""
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User(username=username)
                user.set_unusable_password()
                user.save()
        except IntegrityError:  # created meanwhile by a concurrent run
            user = User.objects.get(username=username)
    user.groups.add(_rater_group())
    return user


def _name_clean(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name) or _RATER_SUFFIX.search(name):
        raise ServiceError(
            "A judge's name is 1–100 letters, digits, '.', '_' or '-', starts with a letter or digit "
            "and does not end in -r<number> (those names are its simulated raters' accounts).",
            code=ErrorCode.INVALID,
        )
    if (
        Judge.objects.filter(name=name).exists()
        or get_user_model().objects.filter(username=f"judge-{name}").exists()
    ):
        raise ServiceError(
            f"There is already a judge (or an account) named {name!r}.", code=ErrorCode.CONFLICT
        )
    return name


def _reward_model_get(reward_model: RewardModel | int | None) -> RewardModel:
    if reward_model is None:
        raise ServiceError("A reward-model judge needs a reward model (a run id).", code=ErrorCode.INVALID)
    pk = reward_model if isinstance(reward_model, int) else reward_model.pk
    row = RewardModel.objects.filter(pk=pk).first()
    if row is None:
        raise NotFound(f"No reward-model run {pk}.")
    if row.status != RewardModel.Status.SUCCEEDED or not row.artefact_sha256:
        raise ServiceError(
            f"Reward-model run {pk} has no trained model ({row.status}); a judge needs one that succeeded.",
            code=ErrorCode.STATUS,
        )
    return row


def judge_get(judge: Judge | int | str) -> Judge:
    """A judge by row, id or name (NotFound otherwise)."""
    if isinstance(judge, Judge):
        return judge
    field = "pk" if isinstance(judge, int) else "name"
    row = Judge.objects.select_related("base", "reward_model", "user").filter(**{field: judge}).first()
    if row is None:
        raise NotFound(f"No judge {judge!r}.")
    return row


@transaction.atomic
def judge_create(
    *,
    name: str,
    kind: str,
    reward_model: RewardModel | int | None = None,
    endpoint_url: str = "",
    endpoint_model: str = "",
    base: Judge | int | str | None = None,
    params: dict | None = None,
    created_by: AbstractBaseUser | None = None,
) -> Judge:
    """A new judge and its voting account `judge-<name>`."""
    if kind not in Judge.Kind.values:
        raise ServiceError(
            f"Unknown judge kind {kind!r}; one of {', '.join(Judge.Kind.values)}.", code=ErrorCode.KIND
        )
    name = _name_clean(name)
    judge = Judge(name=name, kind=kind, params=params_clean(kind, params), created_by=created_by)
    if kind == Judge.Kind.REWARD_MODEL:
        judge.reward_model = _reward_model_get(reward_model)
    elif kind == Judge.Kind.CHAT:
        if not endpoint_url or not endpoint_model:
            raise ServiceError("A chat judge needs an endpoint URL and a model name.", code=ErrorCode.INVALID)
        judge.endpoint_url, judge.endpoint_model = endpoint_url.strip(), endpoint_model.strip()
    else:
        if base is None:
            raise ServiceError("Simulated raters need a base judge to copy.", code=ErrorCode.INVALID)
        judge.base = judge_get(base)
        if judge.base.kind == Judge.Kind.SIMULATED:
            raise ServiceError(
                "The base of simulated raters is a reward-model or chat judge, not other simulated raters.",
                code=ErrorCode.INVALID,
            )
    judge.user = _voter_account(f"judge-{name}")
    try:
        judge.full_clean(exclude=["user"])
    except ValidationError as exc:
        raise ServiceError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()), code=ErrorCode.INVALID
        ) from None
    judge.save()
    return judge


# --- backends ---------------------------------------------------------------------------------

_scorers: dict[str, object] = {}  # artefact sha256 -> RewardScorer, per process
_scorers_lock = threading.Lock()
MAX_CACHED_SCORERS = 4


def _scorer(judge: Judge):
    rm = judge.reward_model
    with _scorers_lock:
        scorer = _scorers.get(rm.artefact_sha256)
        if scorer is None:
            if len(_scorers) >= MAX_CACHED_SCORERS:
                _scorers.clear()
            what = f"Judge {judge.name}'s reward model (v{rm.version})"
            scorer = _scorers[rm.artefact_sha256] = scorer_load(
                rm.artefact_path, rm.artefact_sha256, what=what
            )
        return scorer


def judge_backend(judge: Judge, *, rater_index: int = 0) -> JudgeBackend:
    """The `training.ml.judges` backend of a judge; simulated rater `rater_index` gets the
    judge's seed + rater_index."""
    p = judge.params or {}
    if judge.kind == Judge.Kind.REWARD_MODEL:
        margin = p.get("tie_margin")
        if margin is None:
            return RewardModelJudge(scorer=_scorer(judge))
        return RewardModelJudge(
            scorer=_scorer(judge), thresholds=(margin, max(margin, 0.5), max(margin, 1.5))
        )
    if judge.kind == Judge.Kind.CHAT:
        extra = {k: p[k] for k in ("seed", "max_tokens") if k in p}
        return ChatJudge(
            base_url=judge.endpoint_url, model=judge.endpoint_model, api_key=settings.JUDGE_API_KEY, **extra
        )
    noise = params_clean(Judge.Kind.SIMULATED, p)
    noise["seed"] = noise["seed"] + rater_index
    return SimulatedJudge(backend=judge_backend(judge.base), **noise)


def judge_voters(judge: Judge, raters: int) -> list[AbstractBaseUser]:
    """The accounts a run votes as: the judge's own, or N simulated raters `judge-<name>-r<i>`."""
    if judge.kind != Judge.Kind.SIMULATED:
        return [judge.user]
    return [_voter_account(f"judge-{judge.name}-r{i}") for i in range(raters)]


# --- runs ---------------------------------------------------------------------------------------


@transaction.atomic
def judge_run_create(
    *,
    project: Project,
    judge: Judge | int | str,
    raters: int = 1,
    votes: int = 100,
    only_evaluation: bool = False,
    requested_by: AbstractBaseUser | None = None,
    enqueue: bool = True,
) -> JudgeRun:
    """Queue a judge run on the project's live queue (one unfinished run per judge and project)."""
    judge = Judge.objects.select_for_update().filter(pk=judge_get(judge).pk).first()
    if not 1 <= raters <= MAX_RATERS:
        raise ServiceError(f"Raters must be between 1 and {MAX_RATERS}.", code=ErrorCode.INVALID)
    if raters > 1 and judge.kind != Judge.Kind.SIMULATED:
        raise ServiceError(
            "Only simulated raters vote as several accounts; a reward-model or chat judge is one voter.",
            code=ErrorCode.INVALID,
        )
    if not 1 <= votes <= MAX_VOTES:
        raise ServiceError(f"Votes must be between 1 and {MAX_VOTES:,}.", code=ErrorCode.INVALID)
    running = JudgeRun.objects.filter(project=project, judge=judge, status__in=UNFINISHED).first()
    if running is not None:
        raise ServiceError(
            f"Judge {judge.name} already has run {running.pk} {running.status} on this project.",
            code=ErrorCode.RUNNING,
        )
    run = JudgeRun.objects.create(
        project=project,
        judge=judge,
        raters=raters,
        votes_target=votes,
        only_evaluation=only_evaluation,
        requested_by=requested_by,
        progress_total=votes,
    )
    if enqueue:
        from training.tasks import judge_run_task

        transaction.on_commit(lambda: judge_run_task.delay(run.pk))
    job_event_on_commit(run)
    return run


def judge_run_cancel(*, run_id: int) -> JudgeRun:
    """Cancel a queued run at once; a running one stops before its next lease."""
    return job_cancel(JudgeRun, run_id)


def _cast_before(run: JudgeRun, voters: list) -> int:
    """Votes an earlier attempt of this run cast (its idempotency keys)."""
    return Preference.objects.filter(
        rater_id__in=[u.pk for u in voters], idempotency_key__startswith=f"judge-{run.pk}-"
    ).count()


def _vote(run: JudgeRun, user, backend: JudgeBackend, lease) -> bool:
    """Judge one leased pair and submit the vote; True when a new vote was written."""
    comparison = lease.comparison
    item = JudgeItem(
        prompt=comparison.prompt.messages,
        response_a=comparison.response_a.text,
        response_b=comparison.response_b.text,
        left=lease.assignment.left,
        key=comparison.pk,
    )
    judgement = backend.judge([item])[0]
    try:
        result = preference_submit(
            rater=user,
            comparison_id=comparison.pk,
            choice=judgement.choice,
            strength=judgement.strength,
            rationale=judgement.rationale or judgement.raw,
            client_ms=min(int(judgement.seconds * 1000), 2**31 - 1),
            idempotency_key=f"judge-{run.pk}-{user.pk}-{comparison.pk}",
            source=Preference.Source.JUDGE,
        )
    except NoLease:  # the lease ran out while judging and another voter took the slot
        return False
    return result.created


def _turn(run: JudgeRun, voter, backend, reporter: JobReporter, tally: dict) -> bool:
    """One voter's turn: lease, then vote or skip. False when the queue has nothing for it."""
    reporter.check()  # before leasing: a stopped run holds no lease
    lease = assignment_next(rater=voter, project=run.project_id)
    if lease is None:
        return False
    if run.only_evaluation and not EvaluationPair.objects.filter(comparison_id=lease.comparison.pk).exists():
        assignment_skip(rater=voter, comparison_id=lease.comparison.pk, reason=NOT_EVALUATION)
        tally["skipped"] += 1
    elif _vote(run, voter, backend, lease):
        tally["votes"] += 1
    return True


def _run_body(run: JudgeRun, reporter: JobReporter):
    judge = judge_get(run.judge_id)
    voters = judge_voters(judge, run.raters)
    project_members_add_all(project=run.project, users=voters)  # ops started it: its voters rate here
    backends = [judge_backend(judge, rater_index=i) for i in range(len(voters))]
    tally = {"votes": _cast_before(run, voters), "skipped": run.metrics.get("skipped", 0)}
    started = time.monotonic()
    reporter.progress(tally["votes"], run.votes_target, force=True)
    ended = "target reached"
    while tally["votes"] < run.votes_target:
        active = False
        for voter, backend in zip(voters, backends, strict=True):
            if tally["votes"] >= run.votes_target:
                break
            active = _turn(run, voter, backend, reporter, tally) or active
            reporter.progress(tally["votes"], run.votes_target, metrics=dict(tally))
        if not active:
            ended = "no voter got a pair: the queue has nothing left for these voters"
            break
    metrics = {
        **tally,
        "voters": [u.pk for u in voters],
        "ended": ended,
        "seconds": round(time.monotonic() - started, 3),
    }
    reporter.progress(tally["votes"], run.votes_target, force=True, metrics=metrics)
    job_finish(run, Job.Status.SUCCEEDED, metrics=metrics)


def judge_run_execute(*, run_id: int, listener: Callable | None = None) -> JudgeRun | None:
    """Run a judge run to its end (the Celery task's, or `simulate_raters --sync`'s, one call).
    Safe to run twice: a rerun continues where the first stopped. `listener(done, total)` sees
    every progress step (a console bar)."""
    return job_run(JudgeRun, run_id, _run_body, user_errors=(JudgeError,), listener=listener)
