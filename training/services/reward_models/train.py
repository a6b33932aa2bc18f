"""The reward-model job (the Celery task's one service): snapshot -> train -> safety
classifier -> promotion gate -> record, run by the job kernel (`core.jobs.job_run`).

Crash safety: the model is written into a temp folder next to its final folder and renamed
into place only when complete (`core.files.atomic_output_dir`); the row becomes "succeeded",
with the folder's sha256, only after that. A run killed at any point leaves either no final
folder or one that no row points at; the retried job removes such leftovers
(`core.files.leftovers_remove`) and trains again from its own row. The kernel's session lock
on the run keeps a duplicated delivery from training it twice.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from pathlib import Path

from django.db import transaction

from core.files import leftovers_remove
from core.jobs import JobReporter, job_finish, job_run
from training.ml.promotion import PromotionDecision, promotion_decide
from training.models import RewardModel

from .config import (
    JOB_SOFT_TIME_LIMIT_S,
    SNAPSHOT_KEYS,
    config_resolve,
    gate_settings,
    jsonable,
    reward_dir,
    safety_dir,
)
from .lifecycle import activation_fields, active_clear
from .records import snapshot_records

MAX_LIVE_CURVE_POINTS = 400

# on_progress(phase, progress): what a console bar (or a round) sees of every trainer step.
Listener = Callable[[str, object], None]


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class _TrainerHooks:
    """The trainers' `on_progress` / `should_stop`, reported through the job's reporter.

    The reward trainer's steps also grow the live loss curve (halved in resolution past
    MAX_LIVE_CURVE_POINTS); the safety classifier's steps only move the counters.
    """

    def __init__(self, reporter: JobReporter, listener: Listener | None = None):
        self.reporter = reporter
        self.listener = listener
        self.curve: list[list[float]] = []

    def on_progress(self, p) -> None:
        job = self.reporter.job
        loss = _finite(p.loss)
        fields = {"progress_loss": loss, "progress_epoch": float(p.epoch) if p.epoch is not None else None}
        if job.phase == "reward":
            if loss is not None:
                self.curve.append([int(p.step), round(loss, 6)])
                if len(self.curve) > MAX_LIVE_CURVE_POINTS:
                    self.curve = self.curve[::2]  # halve the resolution, keep the shape
            fields["loss_curve"] = self.curve
        if self.listener is not None:
            self.listener(job.phase, p)
        self.reporter.progress(int(p.step), int(p.total_steps), **fields)

    def should_stop(self) -> bool:
        return self.reporter.should_stop()


def _train_safety(run: RewardModel, examples, harm_pairs, reward_config, hooks: _TrainerHooks) -> dict:
    """Train the harm model (training.ml.harm: raters' unsafe flags + imported harmlessness
    pairs, Platt-calibrated) when there are enough flags or harmlessness pairs; else the
    lexical prior. Returns the run's safety_* columns."""
    from training.ml.checkpoints import atomic_output_dir, dir_sha256
    from training.ml.harm import MIN_HARM_PAIRS, train_harm_model
    from training.ml.records import TrainingError
    from training.ml.safety import MIN_FLAGGED_EXAMPLES, SafetyConfig, enough_flags

    flagged = sum(1 for e in examples if e.unsafe)
    counts = {
        "flagged": flagged,
        "examples": len(examples),
        "min_flagged": MIN_FLAGGED_EXAMPLES,
        "harm_pairs": len(harm_pairs),
        "min_harm_pairs": MIN_HARM_PAIRS,
    }
    lexical = {"safety_source": RewardModel.SafetySource.LEXICAL, "safety_path": "", "safety_sha256": ""}
    if not enough_flags(examples) and len(harm_pairs) < MIN_HARM_PAIRS:
        return {**lexical, "safety_metrics": counts}
    names = {f.name for f in dataclasses.fields(SafetyConfig)}
    config = SafetyConfig(
        **{k: v for k, v in dataclasses.asdict(reward_config).items() if k in names and k != "batch_size"}
    )
    if not config.heldout_fraction:
        config.heldout_fraction = 0.1  # calibration needs held-out prompts
    final = safety_dir(project_id=run.project_id, run_id=run.pk)
    leftovers_remove(final)
    run.phase = "safety"
    try:
        with atomic_output_dir(final) as tmp:
            result = train_harm_model(
                examples if enough_flags(examples) else [],
                harm_pairs,
                config,
                tmp,
                on_progress=hooks.on_progress,
                should_stop=hooks.should_stop,
            )
    except TrainingError as exc:
        # The reward model is still good; scoring keeps the lexical prior and says why.
        return {**lexical, "safety_metrics": {**counts, "error": str(exc)}}
    finally:
        run.phase = "reward"
    return {
        "safety_source": RewardModel.SafetySource.LEARNED,
        "safety_path": str(final),
        "safety_sha256": dir_sha256(final),
        "safety_metrics": {**counts, **jsonable(result.metrics)},
    }


def _gate_pairs(run_train_ids: list[str], active: RewardModel | None, test_pairs: list) -> tuple[list, int]:
    """(pairs, excluded): the run's strict held-out pairs whose COMPARISON neither model trained
    on (not only whose vote: k raters vote on one comparison), and how many were left out."""
    from annotation.models import Preference

    strict = [p for p in test_pairs if p.kind == "strict"]
    trained = {int(i) for i in run_train_ids} | {int(i) for i in (active.train_pair_ids if active else [])}
    seen = set(Preference.objects.filter(pk__in=trained).values_list("comparison_id", flat=True).distinct())
    comparison_of = dict(
        Preference.objects.filter(pk__in=[int(p.pair_id) for p in strict]).values_list("pk", "comparison_id")
    )
    kept = [p for p in strict if comparison_of.get(int(p.pair_id)) not in seen]
    return kept, len(strict) - len(kept)


def _promotion(run: RewardModel, final: Path, result, test_pairs: list) -> PromotionDecision:
    """Score the candidate and the active model, pair by pair, on the same held-out pairs that
    neither trained on; the gate decides (training.ml.promotion)."""
    from training.ml.reward import pair_correctness

    active = RewardModel.objects.filter(project_id=run.project_id, is_active=True).exclude(pk=run.pk).first()
    pairs, excluded = _gate_pairs(result.train_ids, active, test_pairs)
    mine = pair_correctness(final, pairs)
    theirs = pair_correctness(active.artefact_path, pairs) if active is not None else None
    settings = gate_settings(run.config or {})
    decision = promotion_decide(
        candidate_correct=mine,
        active_correct=theirs,
        active_version=active.version if active is not None else None,
        margin=settings["gate_margin"],
        min_pairs=settings["gate_min_pairs"],
    )
    decision.gate.update(heldout_pairs=len(pairs) + excluded, excluded_pairs=excluded)
    return decision


def _record(run: RewardModel, result, results: dict, decision: PromotionDecision) -> None:
    """Mark the run succeeded with its results, and active if promoted, in one transaction."""
    from training.ml.records import TrainingCancelled

    metrics = jsonable(result.metrics)
    done = max(run.progress_done, int(metrics.get("steps") or 0))
    fields = {
        **results,
        "metrics": metrics,
        "heldout_accuracy": metrics.get("heldout_accuracy"),
        "heldout_loss": metrics.get("heldout_loss"),
        "ece": metrics.get("ece"),
        "loss_curve": [[int(s), float(v)] for s, v in result.loss_curve if _finite(v) is not None],
        "train_pair_ids": [int(i) for i in result.train_ids],
        "test_pair_ids": [int(i) for i in result.test_ids],
        "progress_done": done,
        "progress_total": max(run.progress_total or 0, done),
        "progress_loss": run.progress_loss,
        "progress_epoch": run.progress_epoch,
        "promotion_note": decision.note,
        "gate": decision.gate,
    }
    with transaction.atomic():
        if decision.promote:
            active_clear(project_id=run.project_id, keep_id=run.pk)
            fields.update(activation_fields(decision.note))
        if job_finish(run, RewardModel.Status.SUCCEEDED, **fields).status != RewardModel.Status.SUCCEEDED:
            raise TrainingCancelled("the run was finished elsewhere meanwhile")


def _train(run: RewardModel, reporter: JobReporter, listener: Listener | None) -> None:
    from training.ml.checkpoints import atomic_output_dir, dir_sha256
    from training.ml.records import TrainingCancelled
    from training.ml.reward import train_reward_model

    config = config_resolve(run)
    # The resolved trainer settings, the gate's, and the snapshot's own (trust filter, weights):
    # `snapshot_records` rebuilds the snapshot from the latter.
    kept = {k: v for k, v in (run.config or {}).items() if k in SNAPSHOT_KEYS}
    run.config = {**jsonable(dataclasses.asdict(config)), **gate_settings(run.config or {}), **kept}
    RewardModel.objects.filter(pk=run.pk).update(config=run.config)
    pairs, examples, harm = snapshot_records(run, config)
    final = reward_dir(project_id=run.project_id, run_id=run.pk)
    leftovers_remove(final)
    hooks = _TrainerHooks(reporter, listener)
    with atomic_output_dir(final) as tmp:
        result = train_reward_model(
            pairs, config, tmp, on_progress=hooks.on_progress, should_stop=hooks.should_stop
        )
    # From here the folder is in place but no row points at it: any failure removes it.
    try:
        # The row keeps the reward trainer's last counters (the safety phase moves them).
        names = ("progress_done", "progress_total", "progress_loss", "progress_epoch")
        reward_progress = {name: getattr(run, name) for name in names}
        results = {"artefact_path": str(final), "artefact_sha256": dir_sha256(final)}
        results.update(_train_safety(run, examples, harm, config, hooks))
        by_id = {p.pair_id: p for p in pairs}
        test_pairs = [by_id[i] for i in result.test_ids if i in by_id]
        decision = _promotion(run, final, result, test_pairs)
        if reporter.should_stop():
            raise TrainingCancelled("cancelled after training")
        for name, value in reward_progress.items():
            setattr(run, name, value)
        _record(run, result, results, decision)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(safety_dir(project_id=run.project_id, run_id=run.pk), ignore_errors=True)
        raise


def reward_model_train(*, run_id: int, on_progress: Listener | None = None) -> RewardModel | None:
    """Train one queued run (the Celery job's service). Safe to call twice: a finished run is
    left alone; a run another worker is training is left to it; a crashed run starts over.

    `on_progress(phase, progress)`, if given, is called on every step (the command's console
    bar); the row and the websocket group are updated throttled either way.
    """
    from training.ml.records import TrainingCancelled, TrainingError

    def body(run: RewardModel, reporter: JobReporter) -> None:
        from celery.exceptions import SoftTimeLimitExceeded

        try:
            _train(run, reporter, on_progress)
        except SoftTimeLimitExceeded:
            raise TrainingError(
                f"The job ran past its time limit ({JOB_SOFT_TIME_LIMIT_S} s) and was stopped. "
                "Set a smaller time_limit_s, max_steps or epochs."
            ) from None

    return job_run(
        RewardModel, run_id, body, cancel_errors=(TrainingCancelled,), user_errors=(TrainingError,)
    )
