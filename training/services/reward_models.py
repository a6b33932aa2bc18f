"""Reward-model runs: queue, train (the Celery job's one service), cancel, promote.

A run is a `RewardModel` row. `reward_model_run_create` fixes the preference snapshot and
enqueues `train_reward_model_task` on commit; the task calls `reward_model_train(run_id=)`,
which adapts the row to `training.ml.reward.train_reward_model` and back.

Crash safety: the model is written into a temp folder next to its final folder and renamed
into place only when complete (`training.ml.checkpoints.atomic_output_dir`); the row becomes
"succeeded", with the folder's sha256, only after that. A run killed at any point leaves
either no final folder or one that no row points at; the retried job deletes such leftovers
and trains again from its own row.

Exclusivity: while a worker trains a run it holds a session-level PostgreSQL advisory lock on
the run id. A duplicated delivery finds the lock taken and leaves; a worker that dies drops
its connection and with it the lock, so a retry (or a cancel) can tell a dead run from a live
one without guessing from timestamps.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from annotation.models import Project
from core.errors import ServiceError
from core.events import event_send_on_commit, project_group
from core.locks import LockNamespace, job_lock, job_lock_held
from training.ml.backbones import POOLING_SETTINGS
from training.models import RewardModel
from training.selectors import preference_cutoff, preference_snapshot, snapshot_choices

log = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL_S = 0.5  # progress is written to the row (and pushed) at most this often
CANCEL_POLL_INTERVAL_S = 0.25  # `should_stop` reads the row's cancel flag at most this often
LOCK_WAIT_S = 10.0  # how long a job waits for a run another worker holds
MAX_LIVE_CURVE_POINTS = 400

# Celery limits of the job (seconds). The trainer gets a clean time limit a little shorter,
# so a long run stops and saves what it learned before Celery interrupts it.
JOB_SOFT_TIME_LIMIT_S = int(getattr(settings, "REWARD_JOB_TIME_LIMIT_S", 6 * 3600))
JOB_TIME_LIMIT_S = JOB_SOFT_TIME_LIMIT_S + 300
_TRAINER_TIME_MARGIN_S = 600

# What ops may set from the page, the API or the command line (the backbone is a filesystem
# path, so only the command line and settings choose it; see `reward_model_run_create`).
CONFIG_OVERRIDES: dict[str, tuple[type, float | None, float | None]] = {
    "epochs": (int, 1, 100),
    "batch_size": (int, 1, 1024),
    "learning_rate": (float, 1e-8, 1.0),
    "max_length": (int, 16, 8192),
    "seed": (int, 0, 2**31 - 1),
    "heldout_fraction": (float, 0.0, 0.9),
    "max_steps": (int, 1, 10**7),
    "time_limit_s": (float, 1.0, 7 * 24 * 3600.0),
    "weight_decay": (float, 0.0, 1.0),
    "warmup_ratio": (float, 0.0, 1.0),
    "threads": (int, 1, 256),
}
MODE_OVERRIDES = {
    "tie_mode": ("drop", "equal"),
    "both_bad_mode": ("drop", "equal"),
    "pooling": POOLING_SETTINGS,
}


# --- helpers ------------------------------------------------------------------------------


def reward_dir(*, project_id: int, run_id: int) -> Path:
    return Path(settings.MODELS_DIR) / "reward" / str(project_id) / str(run_id)


def safety_dir(*, project_id: int, run_id: int) -> Path:
    return Path(settings.MODELS_DIR) / "safety" / str(project_id) / str(run_id)


def default_backbone() -> str:
    if settings.REWARD_BACKBONE:
        return str(settings.REWARD_BACKBONE)
    from training.ml.backbones import default_minilm_dir

    return str(default_minilm_dir())


def _run_payload(run: RewardModel, *, phase: str = "reward", **extra) -> dict:
    """The "reward_run" websocket event of the run's current state (plus `extra` keys)."""
    return {
        "kind": "reward_run",
        "run_id": run.pk,
        "version": run.version,
        "status": run.status,
        "phase": phase,
        "step": run.progress_step,
        "total": run.progress_total,
        "loss": run.progress_loss if run.progress_loss is None or math.isfinite(run.progress_loss) else None,
        **extra,
        "active": run.is_active,
    }


def _send_run_event(run: RewardModel, *, phase: str = "reward") -> None:
    """Push the run's state to the project's websocket group now (the job runs outside a
    transaction, so there is nothing to wait for). A lost live update never fails the job."""
    payload = _run_payload(run, phase=phase)
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            project_group(run.project_id), {"type": "event.message", "payload": payload}
        )
    except Exception:
        log.exception("could not send reward_run event for run %s", run.pk)


def _clean_overrides(overrides: dict | None) -> dict:
    clean: dict = {}
    for key, value in (overrides or {}).items():
        if value is None or value == "":
            continue
        if key in MODE_OVERRIDES:
            if value not in MODE_OVERRIDES[key]:
                raise ServiceError(f"{key} must be one of {', '.join(MODE_OVERRIDES[key])}.", code="config")
            clean[key] = value
            continue
        if key not in CONFIG_OVERRIDES:
            raise ServiceError(f"Unknown setting {key!r} for a reward-model run.", code="config")
        kind, low, high = CONFIG_OVERRIDES[key]
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ServiceError(f"{key} must be a number.", code="config") from None
        if isinstance(value, float) and kind is int and value != int(value):
            raise ServiceError(f"{key} must be a whole number.", code="config")
        if not (low <= number <= high) or (kind is float and not math.isfinite(number)):
            raise ServiceError(f"{key} must be between {low:g} and {high:g}.", code="config")
        clean[key] = number
    return clean


def _choices_for(config: dict) -> tuple[str, ...]:
    return snapshot_choices(
        include_ties=config.get("tie_mode", "drop") != "drop",
        include_both_bad=config.get("both_bad_mode", "drop") != "drop",
    )


# --- queue --------------------------------------------------------------------------------


@transaction.atomic
def reward_model_run_create(
    *,
    project: Project,
    config_overrides: dict | None = None,
    requested_by: AbstractBaseUser | None = None,
    backbone: str | None = None,
    enqueue: bool = True,
) -> RewardModel:
    """Queue a reward-model run on the project's preferences as they are now.

    With `enqueue=False` no Celery job is sent (`manage.py train_reward_model --sync` then
    trains it in its own process).

    `backbone` is a model folder; it is not taken from the page or the API (a path typed into
    a web form would let the web reach any folder on the worker), only from the command line
    or settings (REWARD_BACKBONE, else the packaged all-MiniLM-L6-v2).
    """
    config = _clean_overrides(config_overrides)
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise version numbers
    version = (RewardModel.objects.filter(project=project).aggregate(m=Max("version"))["m"] or 0) + 1
    cutoff = preference_cutoff(project=project)
    snapshot = preference_snapshot(project=project, cutoff_id=cutoff, choices=_choices_for(config))
    if snapshot.counts.get("a", 0) + snapshot.counts.get("b", 0) == 0:
        raise ServiceError(
            "This project has no A/B preferences yet: there is nothing to train a reward model on.",
            code="no_preferences",
        )
    run = RewardModel(
        project=project,
        version=version,
        backbone=backbone or default_backbone(),
        config=config,
        requested_by=requested_by,
        snapshot_cutoff_id=snapshot.cutoff_id,
        snapshot_counts=snapshot.counts,
        snapshot_sha256=snapshot.sha256,
    )
    run.full_clean()
    run.save()

    from training.tasks import train_reward_model_task

    if enqueue:
        transaction.on_commit(lambda: train_reward_model_task.delay(run.pk))
    event_send_on_commit(group=project_group(project.pk), payload=_run_payload(run))
    return run


# --- cancel / promote ---------------------------------------------------------------------


def _run_is_held(run_id: int) -> bool:
    return job_lock_held(LockNamespace.REWARD_RUN, run_id)


@transaction.atomic
def reward_model_cancel(*, run_id: int) -> RewardModel:
    """Cancel a queued run at once; ask a running one to stop between two steps.

    A run marked running that no worker holds (its worker died) is cancelled at once too.
    """
    run = RewardModel.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise ServiceError("No such reward-model run.", code="not_found")
    if run.is_finished:
        raise ServiceError(f"Run v{run.version} has already finished ({run.status}).", code="finished")
    run.cancel_requested = True
    fields = ["cancel_requested", "updated_at"]
    if run.status == RewardModel.Status.QUEUED or not _run_is_held(run.pk):
        run.status = RewardModel.Status.CANCELLED
        run.finished_at = timezone.now()
        fields += ["status", "finished_at"]
    run.save(update_fields=fields)
    event_send_on_commit(
        group=project_group(run.project_id), payload=_run_payload(run, cancel_requested=True)
    )
    return run


def _activate(run: RewardModel, *, note: str) -> None:
    """Make `run` the project's active model (inside the caller's transaction)."""
    RewardModel.objects.filter(project_id=run.project_id, is_active=True).exclude(pk=run.pk).update(
        is_active=False
    )
    run.is_active = True
    run.promoted_at = timezone.now()
    run.promotion_note = note
    run.save(update_fields=["is_active", "promoted_at", "promotion_note", "updated_at"])


@transaction.atomic
def reward_model_promote(*, run_id: int, promoted_by: AbstractBaseUser | None = None) -> RewardModel:
    """Make a succeeded run the project's active reward model by hand."""
    run = RewardModel.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise ServiceError("No such reward-model run.", code="not_found")
    if run.status != RewardModel.Status.SUCCEEDED:
        raise ServiceError("Only a run that succeeded can become the active reward model.", code="status")
    if run.is_active:
        return run
    # Lock the project's rows so two promotions cannot interleave (the partial unique index
    # would refuse the second anyway; this turns that into a clean wait).
    list(RewardModel.objects.select_for_update().filter(project_id=run.project_id).values_list("pk"))
    who = getattr(promoted_by, "username", None) or "ops"
    _activate(run, note=f"Promoted by hand by {who}.")
    event_send_on_commit(group=project_group(run.project_id), payload=_run_payload(run))
    return run


# --- the job ------------------------------------------------------------------------------


def _run_lock(run_id: int, wait_s: float = LOCK_WAIT_S):
    return job_lock(LockNamespace.REWARD_RUN, run_id, wait_s=wait_s)


@transaction.atomic
def _start(run_id: int) -> RewardModel | None:
    """Lock the row; None when there is nothing to do, else the row marked running."""
    run = RewardModel.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.is_finished:
        return None
    now = timezone.now()
    if run.cancel_requested:
        run.status = RewardModel.Status.CANCELLED
        run.finished_at = now
        run.save(update_fields=["status", "finished_at", "updated_at"])
        return None
    # A run found "running" crashed in an earlier attempt: it restarts from scratch.
    run.status = RewardModel.Status.RUNNING
    run.attempts = F("attempts") + 1
    run.started_at = now
    run.finished_at = None
    run.error = ""
    run.progress_step = 0
    run.progress_total = 0
    run.progress_loss = None
    run.progress_epoch = None
    run.loss_curve = []
    run.save(
        update_fields=[
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "error",
            "progress_step",
            "progress_total",
            "progress_loss",
            "progress_epoch",
            "loss_curve",
            "updated_at",
        ]
    )
    run.refresh_from_db()
    return run


def _finish(run: RewardModel, *, status: str, error: str = "") -> RewardModel:
    with transaction.atomic():
        RewardModel.objects.filter(pk=run.pk).update(
            status=status, error=error[:10_000], finished_at=timezone.now(), updated_at=timezone.now()
        )
    run.refresh_from_db()
    _send_run_event(run)
    return run


def _remove_leftovers(final: Path) -> None:
    """Delete what a crashed attempt of this run left: temp folders, and a final folder that
    no row points at (renamed into place just before the crash, never recorded)."""
    from training.ml.checkpoints import TEMP_PREFIX

    if final.parent.is_dir():
        for sibling in final.parent.iterdir():
            if sibling.name.startswith(f"{TEMP_PREFIX}{final.name}-"):
                shutil.rmtree(sibling, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)


class _Reporter:
    """on_progress / should_stop for the trainer: throttled row updates and websocket events."""

    def __init__(self, run: RewardModel, phase: str = "reward", listener=None):
        self.run = run
        self.listener = listener
        self.phase = phase
        self._last_save = 0.0
        self._last_poll = 0.0
        self._cancelled = False
        self.curve: list[list[float]] = []

    def on_progress(self, p) -> None:
        loss = float(p.loss) if p.loss is not None and math.isfinite(p.loss) else None
        if self.phase == "reward" and loss is not None:
            self.curve.append([int(p.step), round(loss, 6)])
            if len(self.curve) > MAX_LIVE_CURVE_POINTS:
                self.curve = self.curve[::2]  # halve the resolution, keep the shape
        if self.listener is not None:
            self.listener(self.phase, p)
        now = time.monotonic()
        last_step = p.total_steps and p.step >= p.total_steps
        if now - self._last_save < PROGRESS_SAVE_INTERVAL_S and not last_step and p.step > 1:
            return
        self._last_save = now
        run = self.run
        run.progress_step, run.progress_total, run.progress_loss = int(p.step), int(p.total_steps), loss
        run.progress_epoch = float(p.epoch) if p.epoch is not None else None
        if self.phase == "reward":
            RewardModel.objects.filter(pk=run.pk).update(
                progress_step=run.progress_step,
                progress_total=run.progress_total,
                progress_loss=loss,
                progress_epoch=run.progress_epoch,
                loss_curve=self.curve,
                updated_at=timezone.now(),
            )
        _send_run_event(run, phase=self.phase)

    def should_stop(self) -> bool:
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last_poll >= CANCEL_POLL_INTERVAL_S:
            self._last_poll = now
            self._cancelled = bool(
                RewardModel.objects.filter(pk=self.run.pk).values_list("cancel_requested", flat=True).first()
            )
        return self._cancelled


def _resolve_config(run: RewardModel):
    from training.ml.reward import RewardConfig

    names = {f.name for f in dataclasses.fields(RewardConfig)}
    values = {k: v for k, v in (run.config or {}).items() if k in names}
    if isinstance(values.get("strength_margins"), list):
        values["strength_margins"] = tuple(values["strength_margins"])
    values["backbone"] = run.backbone
    if values.get("time_limit_s") is None:
        values["time_limit_s"] = float(max(60, JOB_SOFT_TIME_LIMIT_S - _TRAINER_TIME_MARGIN_S))
    return RewardConfig(**values)


def _pairs_and_examples(run: RewardModel, config):
    """The run's snapshot of preferences as PreferencePairs and SafetyExamples (its hash checked)."""
    from training.ml.records import TrainingError

    choices = snapshot_choices(
        include_ties=config.tie_mode != "drop", include_both_bad=config.both_bad_mode != "drop"
    )
    snapshot = preference_snapshot(
        project=run.project, cutoff_id=run.snapshot_cutoff_id, choices=choices, with_rows=True
    )
    if snapshot.sha256 != run.snapshot_sha256:
        raise TrainingError(
            "The preferences this run was queued on have changed since (votes deleted or edited); "
            "its snapshot no longer matches. Start a new run."
        )
    return preference_records(snapshot.rows)


def preference_records(rows: list[dict]):
    """(pairs, examples) from `preference_snapshot(..., with_rows=True).rows`: one PreferencePair
    per vote (chosen first; grouped by prompt id) and one SafetyExample per distinct response.
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


def _train_safety(run: RewardModel, examples, reward_config, reporter: _Reporter) -> dict:
    """Train the safety classifier when raters flagged enough responses; else the lexical prior."""
    from training.ml.checkpoints import atomic_output_dir, dir_sha256
    from training.ml.records import TrainingError
    from training.ml.safety import MIN_FLAGGED_EXAMPLES, SafetyConfig, enough_flags, train_safety_classifier

    flagged = sum(1 for e in examples if e.unsafe)
    counts = {"flagged": flagged, "examples": len(examples), "min_flagged": MIN_FLAGGED_EXAMPLES}
    if not enough_flags(examples):
        return {"source": RewardModel.SafetySource.LEXICAL, "path": "", "sha256": "", "metrics": counts}
    names = {f.name for f in dataclasses.fields(SafetyConfig)}
    config = SafetyConfig(
        **{k: v for k, v in dataclasses.asdict(reward_config).items() if k in names and k != "batch_size"}
    )
    final = safety_dir(project_id=run.project_id, run_id=run.pk)
    _remove_leftovers(final)
    reporter.phase = "safety"
    try:
        with atomic_output_dir(final) as tmp:
            result = train_safety_classifier(
                examples, config, tmp, on_progress=reporter.on_progress, should_stop=reporter.should_stop
            )
    except TrainingError as exc:
        # The reward model is still good; scoring keeps the lexical prior and says why.
        return {
            "source": RewardModel.SafetySource.LEXICAL,
            "path": "",
            "sha256": "",
            "metrics": {**counts, "error": str(exc)},
        }
    finally:
        reporter.phase = "reward"
    return {
        "source": RewardModel.SafetySource.LEARNED,
        "path": str(final),
        "sha256": dir_sha256(final),
        "metrics": {**counts, **_jsonable(result.metrics)},
    }


def _jsonable(metrics: dict) -> dict:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, str | int | float | bool | type(None) | list | dict):
            value = str(value)
        out[key] = value
    return out


def _promotion(run: RewardModel, final: Path, test_pairs: list, heldout_accuracy: float | None):
    """(promote?, note). The candidate must beat the active model on the same held-out pairs.

    Both models are scored on this run's held-out pairs that the active model did not train on
    (so neither has seen them); if the active model trained on all of them, it is scored on all
    of this run's held-out pairs, which can only favour it.
    """
    from training.ml.reward import evaluate

    active = RewardModel.objects.filter(project_id=run.project_id, is_active=True).exclude(pk=run.pk).first()
    if active is None:
        return True, "Promoted: the project had no active reward model."
    if heldout_accuracy is None or not test_pairs:
        return False, f"Not promoted: no held-out pairs to compare with the active v{active.version}."
    seen = {str(i) for i in active.train_pair_ids or []}
    common = [p for p in test_pairs if p.pair_id not in seen]
    if common and len(common) < len(test_pairs):
        mine = evaluate(final, common)["accuracy"]
    else:
        common = common or test_pairs
        mine = heldout_accuracy
    theirs = evaluate(active.artefact_path, common)["accuracy"]
    if mine is not None and theirs is not None and mine > theirs:
        return True, (
            f"Promoted: held-out accuracy {mine:.3f} > {theirs:.3f} of v{active.version} "
            f"on the same {len(common)} pairs."
        )
    return False, (
        f"Not promoted: held-out accuracy {mine:.3f} vs {theirs:.3f} of the active v{active.version} "
        f"on the same {len(common)} pairs (must be strictly better)."
    )


def _train(run: RewardModel, listener=None) -> RewardModel:
    from training.ml.checkpoints import atomic_output_dir, dir_sha256
    from training.ml.reward import train_reward_model

    config = _resolve_config(run)
    RewardModel.objects.filter(pk=run.pk).update(config=_jsonable(dataclasses.asdict(config)))
    pairs, examples = _pairs_and_examples(run, config)
    final = reward_dir(project_id=run.project_id, run_id=run.pk)
    _remove_leftovers(final)
    reporter = _Reporter(run, listener=listener)
    _send_run_event(run)
    with atomic_output_dir(final) as tmp:
        result = train_reward_model(
            pairs, config, tmp, on_progress=reporter.on_progress, should_stop=reporter.should_stop
        )
    # From here the folder is in place but no row points at it: any failure removes it.
    try:
        sha = dir_sha256(final)
        safety = _train_safety(run, examples, config, reporter)
        by_id = {p.pair_id: p for p in pairs}
        test_pairs = [by_id[i] for i in result.test_ids if i in by_id]
        metrics = _jsonable(result.metrics)
        promote, note = _promotion(run, final, test_pairs, metrics.get("heldout_accuracy"))
        curve = [[int(s), float(v)] for s, v in result.loss_curve if v is not None and math.isfinite(v)]
        if reporter.should_stop():
            from training.ml.records import TrainingCancelled

            raise TrainingCancelled("cancelled after training")
        with transaction.atomic():
            row = RewardModel.objects.select_for_update().get(pk=run.pk)
            if promote:
                list(
                    RewardModel.objects.select_for_update()
                    .filter(project_id=run.project_id)
                    .values_list("pk")
                )
            row.status = RewardModel.Status.SUCCEEDED
            row.finished_at = timezone.now()
            row.metrics = metrics
            row.heldout_accuracy = metrics.get("heldout_accuracy")
            row.heldout_loss = metrics.get("heldout_loss")
            row.ece = metrics.get("ece")
            row.loss_curve = curve
            row.train_pair_ids = [int(i) for i in result.train_ids]
            row.test_pair_ids = [int(i) for i in result.test_ids]
            row.artefact_path = str(final)
            row.artefact_sha256 = sha
            row.safety_source = safety["source"]
            row.safety_path = safety["path"]
            row.safety_sha256 = safety["sha256"]
            row.safety_metrics = safety["metrics"]
            row.progress_step = max(row.progress_step, int(metrics.get("steps") or row.progress_step))
            row.progress_total = max(row.progress_total, row.progress_step)
            row.promotion_note = note
            row.save()
            if promote:
                _activate(row, note=note)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(safety_dir(project_id=run.project_id, run_id=run.pk), ignore_errors=True)
        raise
    _send_run_event(row)
    return row


def reward_model_train(*, run_id: int, on_progress=None) -> RewardModel | None:
    """Train one queued run (the Celery job's service). Safe to call twice: a finished run is
    left alone; a run another worker is training is left to it; a crashed run starts over.

    `on_progress(phase, progress)`, if given, is called on every step (the command's console
    bar); the row and the websocket group are updated throttled either way.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from training.ml.records import TrainingCancelled, TrainingError

    with _run_lock(run_id) as got:
        if not got:
            log.info("reward run %s is being trained by another worker", run_id)
            return RewardModel.objects.filter(pk=run_id).first()
        run = _start(run_id)
        if run is None:
            return RewardModel.objects.filter(pk=run_id).first()
        try:
            return _train(run, listener=on_progress)
        except TrainingCancelled:
            return _finish(run, status=RewardModel.Status.CANCELLED)
        except TrainingError as exc:
            return _finish(run, status=RewardModel.Status.FAILED, error=str(exc))
        except SoftTimeLimitExceeded:
            return _finish(
                run,
                status=RewardModel.Status.FAILED,
                error=f"The job ran past its time limit ({JOB_SOFT_TIME_LIMIT_S} s) and was stopped. "
                "Set a smaller time_limit_s, max_steps or epochs.",
            )
        except Exception as exc:
            log.exception("reward run %s failed", run_id)
            return _finish(run, status=RewardModel.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
