"""Online-RLHF rounds: start, cancel, retry, and the resumable job (`round_run`).

A round is an `RLHFRound` row whose `state` walks

    queued → reward → generating → filtering → scoring → updating → publishing → done
                                                   (or failed / cancelled at any step)

`run_round_task(round_id)` calls `round_run`, which holds a PostgreSQL advisory lock on the
round (a duplicated delivery leaves at once; a dead worker's lock goes with its connection)
and calls `round_advance` until the round is finished. `round_advance` runs the CURRENT step,
whose results are committed in small keyed pieces, then commits the next state. Every step is
safe to run again after a crash:

- reward      trains the reward model first when A/B votes arrived after the active one's
              snapshot (the run id is stored on the round, so a retry resumes that run);
- generating  samples the prompts once from the round's seed (stored), then writes candidates
              prompt batch by prompt batch, keyed by unique (round, prompt, generation,
              candidate_index): a restart generates only prompts that have none;
- filtering / scoring  fill NULL columns only;
- updating    writes the new policy through `atomic_output_dir` and records its row once
              (a folder no row points at is a crash leftover and is removed first);
- publishing  generates the new policy's candidates the same way, then writes one comparison
              per prompt together with its unique (round, prompt) `RoundPair` row.

Cancellation is checked before every step and inside long steps (generation batches, DPO
steps); a cancelled round keeps what it wrote but publishes nothing more.
"""

from __future__ import annotations

import logging
import math
import random
import re
import secrets
import time
from dataclasses import replace
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Comparison, Preference, Project, Prompt, Response
from annotation.services.comparisons import slots_create
from core.errors import ServiceError
from core.events import event_send_on_commit, project_group
from core.locks import LockNamespace, job_lock, job_lock_held
from training.models import PolicyCheckpoint, RewardModel, RLHFRound, RoundCandidate, RoundPair, RoundSettings
from training.round_selectors import new_preferences_count, round_active
from training.services.policies import (
    policy_base_ensure,
    policy_checkpoint_record,
    policy_dir_verified,
    policy_leftovers_remove,
    policy_make_current,
    policy_output_dir,
    policy_root,
)

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
CANCEL_POLL_INTERVAL_S = 0.25
LOCK_WAIT_S = 10.0
JOB_SOFT_TIME_LIMIT_S = int(getattr(settings, "ROUND_JOB_TIME_LIMIT_S", 12 * 3600))
JOB_TIME_LIMIT_S = JOB_SOFT_TIME_LIMIT_S + 300
SCORE_BATCH = 64
HTTP_PROMPTS_PER_CHUNK = 8

# RoundSettings fields copied into every new round's `config` (the round keeps its own copy).
CONFIG_FIELDS = (
    "prompts_per_round",
    "n",
    "temperature",
    "top_p",
    "max_new_tokens",
    "toxicity_threshold",
    "toxicity_lambda",
    "blocklist",
    "budget",
    "strategy",
    "priority",
    "beta",
    "learning_rate",
    "dpo_epochs",
    "dpo_batch_size",
    "dpo_max_steps",
    "reward_config",
)

NEXT_STATE = {
    "queued": "reward",
    "reward": "generating",
    "generating": "filtering",
    "filtering": "scoring",
    "scoring": "updating",
    "updating": "publishing",
    "publishing": "done",
}


class RoundCancelled(Exception):
    """Cancellation was requested; the step stopped between two pieces of work."""


class RoundStepError(Exception):
    """A step cannot go on; `str(error)` says why in words ops can act on."""


# --- settings -----------------------------------------------------------------------------


def round_settings_get(*, project: Project) -> RoundSettings:
    row, _ = RoundSettings.objects.get_or_create(project=project)
    return row


def blocklist_compile(text: str) -> list[tuple[str, re.Pattern]]:
    """One pattern per non-blank line: `/regex/` as written, else the word or phrase on its own
    (case-insensitive, not inside a longer word). Raises ServiceError naming a bad regex."""
    patterns = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
            try:
                patterns.append((entry, re.compile(entry[1:-1], re.IGNORECASE)))
            except re.error as exc:
                raise ServiceError(f"Blocklist line {number}: bad regex ({exc}).", code="blocklist") from None
        else:
            patterns.append((entry, re.compile(r"(?<!\w)" + re.escape(entry) + r"(?!\w)", re.IGNORECASE)))
    return patterns


def _config_from(row: RoundSettings) -> dict:
    return {name: getattr(row, name) for name in CONFIG_FIELDS}


# --- events and progress ------------------------------------------------------------------


def _payload(r: RLHFRound, *, step: str = "", done: int = 0, total: int = 0, phase: str = "") -> dict:
    return {
        "kind": "round",
        "round_id": r.pk,
        "number": r.number,
        "state": r.state,
        "step": step or r.state,
        "phase": phase,
        "done": done,
        "total": total,
        "cancel_requested": r.cancel_requested,
    }


def _send_now(r: RLHFRound, **kw) -> None:
    """Push to the project's websocket group now (the job runs outside transactions)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            project_group(r.project_id), {"type": "event.message", "payload": _payload(r, **kw)}
        )
    except Exception:  # a lost live update never fails the round
        log.exception("could not send round event for round %s", r.pk)


class _Reporter:
    """Per-step progress (row + websocket, throttled) and the cancellation poll."""

    def __init__(self, r: RLHFRound, listener=None):
        self.r = r
        self.listener = listener
        self._last_save = 0.0
        self._last_poll = 0.0
        self._cancelled = False

    def progress(self, step: str, done: int, total: int, *, phase: str = "", force: bool = False) -> None:
        entry = self.r.steps.setdefault(step, {})
        entry.update(done=int(done), total=int(total))
        if phase:
            entry["phase"] = phase
        if self.listener is not None:
            self.listener(step, done, total, phase)
        now = time.monotonic()
        if not force and now - self._last_save < PROGRESS_INTERVAL_S and done < total:
            return
        self._last_save = now
        RLHFRound.objects.filter(pk=self.r.pk).update(steps=self.r.steps, updated_at=timezone.now())
        _send_now(self.r, step=step, done=done, total=total, phase=phase)

    def should_stop(self) -> bool:
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last_poll >= CANCEL_POLL_INTERVAL_S:
            self._last_poll = now
            self._cancelled = bool(
                RLHFRound.objects.filter(pk=self.r.pk).values_list("cancel_requested", flat=True).first()
            )
        return self._cancelled

    def check(self) -> None:
        if self.should_stop():
            raise RoundCancelled()


# --- start / cancel / retry ---------------------------------------------------------------


def _enqueue_on_commit(round_id: int) -> None:
    from training.tasks import run_round_task

    transaction.on_commit(lambda: run_round_task.delay(round_id))


def round_start(
    *,
    project: Project,
    trigger: str = RLHFRound.Trigger.MANUAL,
    requested_by: AbstractBaseUser | None = None,
    enqueue: bool = True,
    seed: int | None = None,
) -> tuple[RLHFRound, bool]:
    """Queue a round with the project's current round settings; (round, created).

    Only one unfinished round per project: the partial unique index decides between two
    simultaneous starts (a manual start and the schedule, two ops), and the loser gets the
    round that is running back with created=False.
    """
    if not Prompt.objects.filter(project=project).exists():
        raise ServiceError(
            "This project has no prompts to sample from: import a prompt pool first "
            "(ops page 'Prompts' or manage.py import_prompts).",
            code="no_prompts",
        )
    config = _config_from(round_settings_get(project=project))
    for _attempt in range(3):
        running = round_active(project_id=project.pk)
        if running is not None:
            return running, False
        try:
            with transaction.atomic():
                number = (RLHFRound.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
                r = RLHFRound.objects.create(
                    project=project,
                    number=number,
                    trigger=trigger,
                    requested_by=requested_by,
                    seed=secrets.randbelow(2**31) if seed is None else int(seed),
                    config=config,
                )
                if enqueue:
                    _enqueue_on_commit(r.pk)
                event_send_on_commit(group=project_group(project.pk), payload=_payload(r))
            return r, True
        except IntegrityError:
            continue  # someone else's round won the index (or the number): return theirs
    running = round_active(project_id=project.pk)
    if running is None:
        raise ServiceError("Could not start a round; try again.", code="conflict")
    return running, False


def _round_is_held(round_id: int) -> bool:
    return job_lock_held(LockNamespace.ROUND, round_id)


@transaction.atomic
def round_cancel(*, round_id: int) -> RLHFRound:
    """Cancel a queued round (or one no worker is running) at once; ask a running one to stop."""
    r = RLHFRound.objects.select_for_update().filter(pk=round_id).first()
    if r is None:
        raise ServiceError("No such round.", code="not_found")
    if r.is_finished:
        raise ServiceError(f"Round {r.number} has already finished ({r.state}).", code="finished")
    r.cancel_requested = True
    fields = ["cancel_requested", "updated_at"]
    if r.state == RLHFRound.State.QUEUED or not _round_is_held(r.pk):
        r.state = RLHFRound.State.CANCELLED
        r.finished_at = timezone.now()
        fields += ["state", "finished_at"]
    r.save(update_fields=fields)
    if r.reward_run_id:
        RewardModel.objects.filter(pk=r.reward_run_id, status__in=["queued", "running"]).update(
            cancel_requested=True
        )
    event_send_on_commit(group=project_group(r.project_id), payload=_payload(r))
    return r


def round_retry(*, round_id: int) -> RLHFRound:
    """Run a failed round again from the step that failed (what earlier steps wrote is kept);
    re-enqueue an unfinished round whose worker died."""
    with transaction.atomic():
        r = RLHFRound.objects.select_for_update().filter(pk=round_id).first()
        if r is None:
            raise ServiceError("No such round.", code="not_found")
        if r.state == RLHFRound.State.FAILED:
            r.state = r.failed_step or RLHFRound.State.QUEUED
            r.failed_step = ""
            r.error = ""
            r.cancel_requested = False
            r.finished_at = None
            try:
                with transaction.atomic():
                    r.save(update_fields=["state", "failed_step", "error", "cancel_requested", "finished_at"])
            except IntegrityError:
                raise ServiceError(
                    "Another round of this project is running; retry this one when it has finished.",
                    code="conflict",
                ) from None
        elif r.is_finished:
            raise ServiceError(
                f"Round {r.number} is {r.state}; only a failed round can be retried.", code="state"
            )
        elif _round_is_held(r.pk):
            raise ServiceError(f"Round {r.number} is running in a worker right now.", code="running")
        _enqueue_on_commit(r.pk)
        event_send_on_commit(group=project_group(r.project_id), payload=_payload(r))
    return r


# --- the job ------------------------------------------------------------------------------


def _round_lock(round_id: int, wait_s: float = LOCK_WAIT_S):
    return job_lock(LockNamespace.ROUND, round_id, wait_s=wait_s)


def round_run(*, round_id: int, listener=None) -> RLHFRound | None:
    """Advance the round until it is finished (the Celery task's one service). Safe to call
    twice: a finished round is left alone, one another worker runs is left to it, and a round
    whose worker died resumes at its current step."""
    with _round_lock(round_id) as got:
        if not got:
            log.info("round %s is being run by another worker", round_id)
            return RLHFRound.objects.filter(pk=round_id).first()
        while True:
            r = round_advance(round_id=round_id, listener=listener)
            if r is None or r.is_finished:
                return r


def round_advance(*, round_id: int, listener=None) -> RLHFRound | None:
    """Run the round's current step and commit the next state; returns the row afterwards."""
    from celery.exceptions import SoftTimeLimitExceeded

    from training.ml.generation import GenerationCancelled, GenerationError
    from training.ml.records import TrainingCancelled, TrainingError

    with transaction.atomic():
        r = RLHFRound.objects.select_for_update().filter(pk=round_id).first()
        if r is None or r.is_finished:
            return r
        now = timezone.now()
        if r.cancel_requested:
            r.state, r.finished_at = RLHFRound.State.CANCELLED, now
            r.save(update_fields=["state", "finished_at", "updated_at"])
            event_send_on_commit(group=project_group(r.project_id), payload=_payload(r))
            return r
        if r.state == RLHFRound.State.QUEUED:
            r.state = NEXT_STATE["queued"]
            r.started_at = r.started_at or now
        step = r.state
        entry = r.steps.setdefault(step, {})
        entry.setdefault("started_at", now.isoformat())
        entry["attempts"] = entry.get("attempts", 0) + 1
        r.attempts += 1
        r.save(update_fields=["state", "started_at", "steps", "attempts", "updated_at"])
    _send_now(r, step=step)

    reporter = _Reporter(r, listener=listener)
    started = time.perf_counter()
    try:
        STEP_FUNCTIONS[step](r, reporter)
    except (RoundCancelled, GenerationCancelled, TrainingCancelled):
        return _finish(r, state=RLHFRound.State.CANCELLED)
    except (RoundStepError, TrainingError, GenerationError, ServiceError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        return _finish(r, state=RLHFRound.State.FAILED, step=step, error=message)
    except SoftTimeLimitExceeded:
        return _finish(
            r,
            state=RLHFRound.State.FAILED,
            step=step,
            error=f"The round ran past its time limit ({JOB_SOFT_TIME_LIMIT_S} s) in step {step}.",
        )
    except Exception as exc:
        log.exception("round %s failed in step %s", round_id, step)
        return _finish(r, state=RLHFRound.State.FAILED, step=step, error=f"{type(exc).__name__}: {exc}")

    seconds = time.perf_counter() - started
    with transaction.atomic():
        row = RLHFRound.objects.select_for_update().get(pk=r.pk)
        if row.is_finished:  # cancelled meanwhile by someone who found no worker holding it
            return row
        entry = r.steps.setdefault(step, {})
        entry["finished_at"] = timezone.now().isoformat()
        entry["seconds"] = round(seconds, 3)
        row.steps = r.steps
        row.metrics = r.metrics
        row.prompt_ids = r.prompt_ids
        row.state = NEXT_STATE[step]
        fields = ["steps", "metrics", "prompt_ids", "state", "updated_at"]
        if row.state == RLHFRound.State.DONE:
            row.finished_at = timezone.now()
            fields.append("finished_at")
            if row.policy_out_id:
                policy_make_current(checkpoint=row.policy_out)
        row.save(update_fields=fields)
        event_send_on_commit(group=project_group(row.project_id), payload=_payload(row, step=step))
    return row


def _finish(r: RLHFRound, *, state: str, step: str = "", error: str = "") -> RLHFRound:
    with transaction.atomic():
        RLHFRound.objects.filter(pk=r.pk).update(
            state=state,
            failed_step=step if state == RLHFRound.State.FAILED else "",
            error=error[:10_000],
            steps=r.steps,
            metrics=r.metrics,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    r.refresh_from_db()
    _send_now(r)
    return r


# --- step: reward model -------------------------------------------------------------------


def _step_reward(r: RLHFRound, rep: _Reporter) -> None:
    from training.services.reward_models import reward_model_run_create, reward_model_train

    if r.policy_in_id is None:
        policy = policy_base_ensure(project=r.project)
        r.policy_in = policy
        r.reference = policy_root(policy)
        RLHFRound.objects.filter(pk=r.pk).update(policy_in=policy, reference=r.reference)
    rep.progress("reward", 0, 1, force=True)

    run = r.reward_run
    if run is None and new_preferences_count(project=r.project) > 0:
        run = reward_model_run_create(
            project=r.project, config_overrides=r.config.get("reward_config") or {}, enqueue=False
        )
        r.reward_run = run
        RLHFRound.objects.filter(pk=r.pk).update(reward_run=run)
    if run is not None and not run.is_finished:
        rep.check()

        def on_progress(phase, p):
            rep.progress("reward", int(p.step), max(1, int(p.total_steps)), phase=phase)

        run = reward_model_train(run_id=run.pk, on_progress=on_progress) or run
    if run is not None:
        run.refresh_from_db()
        r.metrics["reward_retrain"] = {"run": run.pk, "version": run.version, "status": run.status}
        if run.status == RewardModel.Status.CANCELLED and rep.should_stop():
            raise RoundCancelled()
        if run.status == RewardModel.Status.FAILED:
            r.metrics["reward_retrain"]["error"] = run.error[:500]

    active = RewardModel.objects.filter(project=r.project, is_active=True).first()
    if active is None:
        why = f" Retraining failed: {run.error}" if run is not None and run.error else ""
        raise RoundStepError(
            "This project has no active reward model, and the round could not train one "
            "(it needs A/B votes: rate some pairs or run manage.py import_preferences)." + why
        )
    r.reward_model = active
    RLHFRound.objects.filter(pk=r.pk).update(reward_model=active)
    rep.progress("reward", 1, 1, force=True)


# --- step: generating ---------------------------------------------------------------------


def _sample_prompts(r: RLHFRound) -> list[int]:
    """Deterministic from the round's seed: the same pool and seed give the same prompts."""
    pool = list(Prompt.objects.filter(project_id=r.project_id).order_by("pk").values_list("pk", flat=True))
    if not pool:
        raise RoundStepError("The project's prompt pool is empty: import prompts first.")
    k = min(int(r.config.get("prompts_per_round", 16)), len(pool))
    return random.Random(r.seed).sample(pool, k)


def _params(r: RLHFRound):
    from training.ml.policy import GenerationParams

    c = r.config
    return GenerationParams(
        n=int(c.get("n", 4)),
        temperature=float(c.get("temperature", 0.8)),
        top_p=float(c.get("top_p", 0.95)),
        max_new_tokens=int(c.get("max_new_tokens", 64)),
    )


def http_backend_configured() -> bool:
    return bool(settings.GENERATION_BACKEND_URL)


_backend_cache: dict = {}


def generation_backend(policy: PolicyCheckpoint | None):
    """(backend, name). The HTTP server when GENERATION_BACKEND_URL is set, else the policy's
    folder loaded with transformers (one model kept per worker process)."""
    if http_backend_configured():
        from training.ml.generation import OpenAICompatibleBackend

        if not settings.GENERATION_MODEL:
            raise RoundStepError("GENERATION_BACKEND_URL is set but GENERATION_MODEL is empty.")
        return (
            OpenAICompatibleBackend(
                settings.GENERATION_BACKEND_URL,
                settings.GENERATION_MODEL,
                api_key=settings.GENERATION_API_KEY or None,
            ),
            "openai",
        )
    from training.ml.generation import LocalTransformersBackend

    path = policy_dir_verified(policy)
    key = (str(path), policy.sha256)
    backend = _backend_cache.get(key)
    if backend is None:
        _backend_cache.clear()  # one policy in memory at a time
        backend = LocalTransformersBackend(path, batch_size=settings.GENERATION_BATCH_SIZE)
        _backend_cache[key] = backend
    return backend, "transformers"


def backend_cache_clear() -> None:
    _backend_cache.clear()


def _clean_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL; model output may contain it.
    return text.replace("\x00", "\ufffd")


def generation_chunks(r: RLHFRound, pending: list[int], messages: dict, *, per_chunk: int, generation: str):
    """[(prompt ids, seed)]: the generate calls of one generation pass, in order. Prompts of
    similar length go together (short left-padding); each chunk is one generate batch, and its
    seed depends only on the round and its first prompt, so a resumed pass samples the same way.
    bench/round.py times plain `model.generate` on exactly these chunks."""
    ordered = sorted(pending, key=lambda pid: (sum(len(m["content"]) for m in messages[pid]), pid))
    salt = 0 if generation == RoundCandidate.Generation.OLD else 1
    chunks = []
    for start in range(0, len(ordered), per_chunk):
        chunk = ordered[start : start + per_chunk]
        chunks.append((chunk, (r.seed * 1_000_003 + chunk[0] * 7919 + salt) % (2**31)))
    return chunks


def prompts_per_chunk(backend_name: str, n: int) -> int:
    return HTTP_PROMPTS_PER_CHUNK if backend_name == "openai" else max(1, settings.GENERATION_BATCH_SIZE // n)


def _generate(
    r: RLHFRound,
    rep: _Reporter,
    *,
    step: str,
    generation: str,
    policy: PolicyCheckpoint,
    prompt_ids: list[int],
) -> None:
    params = _params(r)
    have = set(
        RoundCandidate.objects.filter(round=r, generation=generation, prompt_id__in=prompt_ids).values_list(
            "prompt_id", flat=True
        )
    )
    pending = [pid for pid in prompt_ids if pid not in have]
    total, done = len(prompt_ids), len(prompt_ids) - len(pending)
    rep.progress(step, done, total, phase=f"generate ({generation} policy)", force=True)
    if not pending:
        return
    backend, backend_name = generation_backend(policy)
    messages = dict(Prompt.objects.filter(pk__in=pending).values_list("pk", "messages"))
    model_name = settings.GENERATION_MODEL if backend_name == "openai" else f"policy #{policy.pk}"
    chunks = generation_chunks(
        r, pending, messages, per_chunk=prompts_per_chunk(backend_name, params.n), generation=generation
    )
    try:
        for chunk, seed in chunks:
            rep.check()
            groups = backend.generate([messages[pid] for pid in chunk], replace(params, seed=seed))
            _candidates_write(r, policy, generation, chunk, groups, backend_name, model_name)
            done += len(chunk)
            rep.progress(step, done, total, phase=f"generate ({generation} policy)")
    finally:
        if backend_name == "openai":
            backend.close()


def _candidates_write(r, policy, generation, chunk, groups, backend_name, model_name) -> None:
    """One generate batch's Responses and RoundCandidates, together or not at all."""
    with transaction.atomic():
        responses, rows = [], []
        for pid, group in zip(chunk, groups, strict=True):
            for index, c in enumerate(group):
                responses.append(
                    Response(
                        prompt_id=pid,
                        text=_clean_text(c.text),
                        source=Response.Source.POLICY,
                        model_name=model_name,
                        policy_checkpoint_id=policy.pk,
                        generation_params={**c.params, "backend": backend_name},
                        metadata={"round_id": r.pk, "generation": generation, "candidate_index": index},
                    )
                )
                rows.append(
                    RoundCandidate(
                        round=r,
                        prompt_id=pid,
                        generation=generation,
                        candidate_index=index,
                        policy=policy,
                        num_tokens=c.num_tokens,
                        finish_reason=c.finish_reason,
                        logprob_sum=c.logprob_sum,
                    )
                )
        Response.objects.bulk_create(responses)
        for row, response in zip(rows, responses, strict=True):
            row.response = response
        RoundCandidate.objects.bulk_create(rows)


def _step_generating(r: RLHFRound, rep: _Reporter) -> None:
    if not r.prompt_ids:
        r.prompt_ids = _sample_prompts(r)
        RLHFRound.objects.filter(pk=r.pk).update(prompt_ids=r.prompt_ids)
    _generate(r, rep, step="generating", generation="old", policy=r.policy_in, prompt_ids=r.prompt_ids)


# --- step: filtering ----------------------------------------------------------------------


def _toxicity_scorer(reward_model: RewardModel):
    from training.ml.checkpoints import dir_sha256
    from training.ml.safety import load_toxicity

    path = reward_model.safety_path if reward_model.safety_source == "learned" else ""
    if path:
        if not Path(path).is_dir() or dir_sha256(path) != reward_model.safety_sha256:
            raise RoundStepError(
                f"The safety classifier of reward model v{reward_model.version} ({path}) is missing "
                "or does not match its recorded hash."
            )
    return load_toxicity(path or None)


def _filter(r: RLHFRound, rep: _Reporter, *, step: str, generation: str) -> None:
    qs = RoundCandidate.objects.filter(round=r, generation=generation)
    todo = list(qs.filter(toxicity__isnull=True).select_related("response", "prompt").order_by("pk"))
    total = qs.count()
    done = total - len(todo)
    rep.progress(step, done, total, phase=f"safety ({generation} policy)", force=True)
    if not todo:
        return
    try:
        patterns = blocklist_compile(r.config.get("blocklist", ""))
    except ServiceError as exc:
        raise RoundStepError(exc.message) from None
    threshold = float(r.config.get("toxicity_threshold", 0.5))
    scorer = _toxicity_scorer(r.reward_model)
    for start in range(0, len(todo), SCORE_BATCH):
        rep.check()
        batch = todo[start : start + SCORE_BATCH]
        scores = scorer.score([c.prompt.messages for c in batch], [c.response.text for c in batch])
        for c, tox in zip(batch, scores, strict=True):
            reasons = []
            if tox > threshold:
                reasons.append(f"toxicity {tox:.2f} > {threshold:g}")
            for label, pattern in patterns:
                if pattern.search(c.response.text):
                    reasons.append(f"blocklist: {label}")
                    break
            c.toxicity = float(tox)
            c.blocked = bool(reasons)
            c.blocked_reason = "; ".join(reasons)[:300]
        RoundCandidate.objects.bulk_update(batch, ["toxicity", "blocked", "blocked_reason"])
        done += len(batch)
        rep.progress(step, done, total, phase=f"safety ({generation} policy)")


def _step_filtering(r: RLHFRound, rep: _Reporter) -> None:
    _filter(r, rep, step="filtering", generation="old")


# --- step: scoring ------------------------------------------------------------------------


def _score(r: RLHFRound, rep: _Reporter, *, step: str, generation: str) -> None:
    from training.services.scoring import reward_score

    qs = RoundCandidate.objects.filter(round=r, generation=generation)
    todo = list(qs.filter(reward__isnull=True).select_related("response", "prompt").order_by("pk"))
    total = qs.count()
    done = total - len(todo)
    rep.progress(step, done, total, phase=f"reward ({generation} policy)", force=True)
    lam = float(r.config.get("toxicity_lambda", 10.0))
    for start in range(0, len(todo), SCORE_BATCH):
        rep.check()
        batch = todo[start : start + SCORE_BATCH]
        rewards = reward_score(
            project=r.project_id,
            prompts=[c.prompt.messages for c in batch],
            responses=[c.response.text for c in batch],
        )
        for c, value in zip(batch, rewards, strict=True):
            c.reward = float(value)
            c.shaped_reward = float(value) - lam * float(c.toxicity or 0.0)
        RoundCandidate.objects.bulk_update(batch, ["reward", "shaped_reward"])
        done += len(batch)
        rep.progress(step, done, total, phase=f"reward ({generation} policy)")


def _reference_logprobs(r: RLHFRound, rep: _Reporter) -> None:
    """log p(response) under the reference for the KL estimate. When the round samples from the
    reference itself the estimate is 0 and nothing is computed. Otherwise both sides are scored
    on the stored text (the policy's value recorded during generation saw the raw tokens, not
    the stripped text, so mixing the two would bias the estimate)."""
    todo = list(
        RoundCandidate.objects.filter(round=r, generation="old", ref_logprob_sum__isnull=True)
        .select_related("response", "prompt")
        .order_by("pk")
    )
    if not todo:
        return
    if r.policy_in.sha256 == r.reference.sha256 or all(c.logprob_sum is None for c in todo):
        for c in todo:
            c.ref_logprob_sum = c.logprob_sum
        RoundCandidate.objects.bulk_update(todo, ["ref_logprob_sum"])
        return
    from training.ml.generation import sequence_logprobs
    from training.ml.policy import load_policy

    rep.progress("scoring", 0, len(todo), phase="KL to the reference", force=True)
    prompts = [c.prompt.messages for c in todo]
    texts = [c.response.text for c in todo]
    eos = [c.finish_reason == "stop" for c in todo]
    rep.check()
    model, tok = load_policy(policy_dir_verified(r.policy_in))
    mine = sequence_logprobs(model, tok, prompts, texts, add_eos=eos)
    del model
    rep.check()
    model, tok = load_policy(policy_dir_verified(r.reference))
    ref = sequence_logprobs(model, tok, prompts, texts, add_eos=eos)
    del model
    for c, a, b in zip(todo, mine, ref, strict=True):
        c.logprob_sum, c.ref_logprob_sum = float(a), float(b)
    RoundCandidate.objects.bulk_update(todo, ["logprob_sum", "ref_logprob_sum"])


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _round_metrics(r: RLHFRound) -> dict:
    rows = list(
        RoundCandidate.objects.filter(round=r, generation="old").values(
            "reward", "shaped_reward", "toxicity", "blocked", "num_tokens", "logprob_sum", "ref_logprob_sum",
            "response__text",
        )
    )  # fmt: skip
    kl = [
        row["logprob_sum"] - row["ref_logprob_sum"]
        for row in rows
        if row["logprob_sum"] is not None and row["ref_logprob_sum"] is not None
    ]
    return {
        "candidates": len(rows),
        "mean_reward": _mean(row["reward"] for row in rows),
        "mean_shaped_reward": _mean(row["shaped_reward"] for row in rows),
        "mean_toxicity": _mean(row["toxicity"] for row in rows),
        "blocked_rate": (sum(1 for row in rows if row["blocked"]) / len(rows)) if rows else None,
        "kl_to_reference": _mean(kl),
        "mean_response_tokens": _mean(row["num_tokens"] for row in rows),
        "mean_response_chars": _mean(len(row["response__text"]) for row in rows),
    }


def _step_scoring(r: RLHFRound, rep: _Reporter) -> None:
    _score(r, rep, step="scoring", generation="old")
    _reference_logprobs(r, rep)
    r.metrics.update(_round_metrics(r))


# --- step: updating -----------------------------------------------------------------------


def _policy_pairs(r: RLHFRound) -> tuple[list, dict]:
    """Human A/B votes on earlier rounds' published pairs, plus this round's reward-labelled
    best-vs-worst-of-n pairs. A blocked candidate is never the chosen side."""
    from training.ml.dpo import PolicyPair

    blocked_ids = set(
        RoundCandidate.objects.filter(round__project_id=r.project_id, blocked=True).values_list(
            "response_id", flat=True
        )
    )
    human = []
    votes = Preference.objects.filter(
        comparison__project_id=r.project_id, comparison__round_id__isnull=False, choice__in=("a", "b")
    ).values(
        "choice",
        "comparison__prompt__messages",
        "comparison__response_a_id",
        "comparison__response_a__text",
        "comparison__response_b_id",
        "comparison__response_b__text",
    )
    for v in votes.order_by("pk"):
        a = (v["comparison__response_a_id"], v["comparison__response_a__text"])
        b = (v["comparison__response_b_id"], v["comparison__response_b__text"])
        chosen, rejected = (a, b) if v["choice"] == "a" else (b, a)
        if chosen[0] in blocked_ids:
            continue
        human.append(
            PolicyPair(prompt=v["comparison__prompt__messages"], chosen=chosen[1], rejected=rejected[1])
        )

    by_prompt: dict[int, list[RoundCandidate]] = {}
    for c in RoundCandidate.objects.filter(round=r, generation="old").select_related("response", "prompt"):
        by_prompt.setdefault(c.prompt_id, []).append(c)
    synthetic = []
    for pid in r.prompt_ids:
        group = [c for c in by_prompt.get(pid, []) if c.shaped_reward is not None]
        allowed = [c for c in group if not c.blocked]
        if not allowed:
            continue
        best = max(allowed, key=lambda c: (c.shaped_reward, -c.candidate_index))
        worst = min(group, key=lambda c: (c.shaped_reward, c.candidate_index))
        if best.pk == worst.pk or best.response.text.strip() == worst.response.text.strip():
            continue
        synthetic.append(
            PolicyPair(prompt=best.prompt.messages, chosen=best.response.text, rejected=worst.response.text)
        )
    return human + synthetic, {"human_pairs": len(human), "reward_pairs": len(synthetic)}


def _step_updating(r: RLHFRound, rep: _Reporter) -> None:
    from training.ml.dpo import dpo_update
    from training.ml.policy import DPOUpdateConfig

    if r.policy_out_id is not None:
        return
    existing = PolicyCheckpoint.objects.filter(round=r).first()
    if existing is None:
        pairs, counts = _policy_pairs(r)
        if not pairs:
            raise RoundStepError(
                "No preference pair for the policy update: every prompt's candidates were blocked or "
                "identical, and there are no human votes on earlier rounds' pairs."
            )
        c = r.config
        config = DPOUpdateConfig(
            beta=float(c.get("beta", 0.1)),
            learning_rate=float(c.get("learning_rate", 1e-6)),
            epochs=int(c.get("dpo_epochs", 1)),
            batch_size=int(c.get("dpo_batch_size", 4)),
            max_steps=c.get("dpo_max_steps") or None,
            seed=r.seed % (2**31),
        )
        final = policy_output_dir(project_id=r.project_id, round_id=r.pk)
        policy_leftovers_remove(final)
        policy_path = policy_dir_verified(r.policy_in)
        reference_path = policy_dir_verified(r.reference)
        backend_cache_clear()  # free the generation model before training

        def on_progress(p):
            rep.progress("updating", int(p.step), max(1, int(p.total_steps)), phase="DPO")

        result = dpo_update(
            policy_path,
            reference_path,
            pairs,
            config,
            final,
            on_progress=on_progress,
            should_stop=rep.should_stop,
        )
        metrics = {**{k: v for k, v in result.metrics.items() if _finite(v)}, **counts, "steps": result.steps}
        existing = policy_checkpoint_record(
            round=r,
            parent=r.policy_in,
            reward_model=r.reward_model,
            path=result.model_dir,
            sha256=result.sha256,
            metrics={**metrics, "config": config.as_dict()},
        )
        r.metrics["dpo"] = metrics
    r.policy_out = existing
    RLHFRound.objects.filter(pk=r.pk).update(policy_out=existing)


def _finite(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


# --- step: publishing ---------------------------------------------------------------------


def _closest_pair(cands: list[RoundCandidate]) -> tuple[RoundCandidate, RoundCandidate] | None:
    """Two candidates with different text whose shaped rewards are closest (the reward model is
    least sure which is better)."""
    ranked = sorted(cands, key=lambda c: (c.shaped_reward, c.candidate_index))
    best = None
    for i in range(len(ranked)):
        for j in range(i + 1, len(ranked)):
            a, b = ranked[i], ranked[j]
            if a.response.text.strip() == b.response.text.strip():
                continue
            gap = abs(b.shaped_reward - a.shaped_reward)
            if best is None or gap < best[0]:
                best = (gap, b, a)
            break  # sorted: the next j only widens the gap
    return (best[1], best[2]) if best else None


def _choose_pair(strategy: str, old: list[RoundCandidate], new: list[RoundCandidate]):
    """(candidate_a, candidate_b, strategy used) or None. Only unblocked, scored candidates."""
    old = [c for c in old if not c.blocked and c.shaped_reward is not None]
    new = [c for c in new if not c.blocked and c.shaped_reward is not None]
    if strategy == "new_vs_old" and new and old:
        a = max(new, key=lambda c: (c.shaped_reward, -c.candidate_index))
        b = max(old, key=lambda c: (c.shaped_reward, -c.candidate_index))
        if a.response.text.strip() != b.response.text.strip():
            return a, b, "new_vs_old"
    for pool in (new, old):
        pair = _closest_pair(pool)
        if pair:
            return pair[0], pair[1], "uncertain"
    return None


def _step_publishing(r: RLHFRound, rep: _Reporter) -> None:
    budget = int(r.config.get("budget", 16))
    unblocked = set(
        RoundCandidate.objects.filter(round=r, generation="old", blocked=False).values_list(
            "prompt_id", flat=True
        )
    )
    targets = [pid for pid in r.prompt_ids if pid in unblocked][:budget]
    published = set(RoundPair.objects.filter(round=r).values_list("prompt_id", flat=True))
    todo = [pid for pid in targets if pid not in published]
    if todo and not http_backend_configured() and r.policy_out_id:
        # The new policy's own candidates (an HTTP server serves whatever it was started with,
        # so with that backend pairs come from this round's candidates).
        _generate(r, rep, step="publishing", generation="new", policy=r.policy_out, prompt_ids=todo)
        _filter(r, rep, step="publishing", generation="new")
        _score(r, rep, step="publishing", generation="new")

    cands: dict[tuple[int, str], list[RoundCandidate]] = {}
    for c in RoundCandidate.objects.filter(round=r, prompt_id__in=todo).select_related("response"):
        cands.setdefault((c.prompt_id, c.generation), []).append(c)
    strategy = r.config.get("strategy", "new_vs_old")
    priority = int(r.config.get("priority", 100)) + r.number
    project = r.project
    done = len(targets) - len(todo)
    rep.progress("publishing", done, len(targets), phase="pairs", force=True)
    created = 0
    for pid in todo:
        rep.check()
        choice = _choose_pair(strategy, cands.get((pid, "old"), []), cands.get((pid, "new"), []))
        done += 1
        if choice is None:
            continue
        a, b, used = choice
        if a.blocked or b.blocked:  # never: _choose_pair drops them; a blocked text never reaches a rater
            raise RoundStepError("internal error: a blocked candidate was selected for publishing")
        gap = abs(a.shaped_reward - b.shaped_reward)
        with transaction.atomic():
            comparison = Comparison.objects.create(
                project=project,
                prompt_id=pid,
                response_a=a.response,
                response_b=b.response,
                votes_needed=project.overlap,
                priority=priority,
                round_id=r.pk,
                metadata={"round": r.number, "strategy": used, "reward_gap": round(gap, 6)},
            )
            slots_create(comparisons=[comparison])
            RoundPair.objects.create(
                round=r,
                prompt_id=pid,
                comparison=comparison,
                strategy=used,
                candidate_a=a,
                candidate_b=b,
                reward_gap=gap,
            )
        created += 1
        rep.progress("publishing", done, len(targets), phase="pairs")
    r.metrics["published_pairs"] = RoundPair.objects.filter(round=r).count()
    new_rows = RoundCandidate.objects.filter(round=r, generation="new").values_list(
        "shaped_reward", "blocked"
    )
    r.metrics["new_policy_mean_shaped_reward"] = _mean(v for v, _ in new_rows)
    r.metrics["new_policy_blocked_rate"] = (
        (sum(1 for _, b in new_rows if b) / len(new_rows)) if new_rows else None
    )
    if created:
        event_send_on_commit(
            group=project_group(project.pk), payload={"kind": "comparisons_added", "count": created}
        )


STEP_FUNCTIONS = {
    "reward": _step_reward,
    "generating": _step_generating,
    "filtering": _step_filtering,
    "scoring": _step_scoring,
    "updating": _step_updating,
    "publishing": _step_publishing,
}
