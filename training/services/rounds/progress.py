"""What a round's steps report to: per-step progress on the job kernel's reporter, and the
round's own cancel and failure exceptions (kinds of the kernel's)."""

from __future__ import annotations

from collections.abc import Callable

from core.jobs import JobCancelled, JobFailed, JobReporter
from training.models import RLHFRound


class RoundCancelled(JobCancelled):
    """Cancellation was requested; the step stopped between two pieces of work."""


class RoundStepError(JobFailed):
    """A step cannot go on; `str(error)` says why in words ops can act on."""


class RoundReporter:
    """Per-step progress: the step's entry in `RLHFRound.steps` (done, total, phase) goes to the
    row with the kernel's throttled progress write, which is also the cancel check (it raises
    `JobCancelled` once the round was cancelled). `listener(step, done, total, phase)`, if given,
    sees every call (bench and console progress)."""

    def __init__(self, r: RLHFRound, reporter: JobReporter, listener: Callable | None = None):
        self.r = r
        self.reporter = reporter
        self.listener = listener

    def progress(self, step: str, done: int, total: int, *, phase: str = "", force: bool = False) -> None:
        entry = self.r.steps.setdefault(step, {})
        entry.update(done=int(done), total=int(total))
        if phase:
            entry["phase"] = phase
        if self.listener is not None:
            self.listener(step, done, total, phase)
        self.reporter.progress(int(done), int(total), force=force, steps=self.r.steps)

    def should_stop(self) -> bool:
        return self.reporter.should_stop()

    def check(self) -> None:
        if self.should_stop():
            raise RoundCancelled(f"round {self.r.pk} was cancelled")
