"""Online-RLHF rounds: start, cancel, retry, and the resumable job (`round_run`) on the job
kernel (`core.jobs`).

A round is an `RLHFRound` job: `status` queued → running → succeeded (or failed / cancelled),
and while running `step` walks

    reward → generating → filtering → scoring → updating → publishing

(`state` on the model folds the two into the one word pages and clients show). Every step
commits its results in small keyed pieces, then the runner commits the next step, so every
step is safe to run again after a crash:

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

Cancellation is checked between steps and inside long steps (generation batches, DPO steps,
every progress write); a cancelled round keeps what it wrote but publishes nothing more.

Modules: `lifecycle` (start, cancel, retry), `runner` (the job body), `backends` (generation
backend), `config` (settings, blocklist), `progress` (per-step reporter), `steps/` (one each).
"""

from training.services.rounds.backends import (
    HTTP_PROMPTS_PER_CHUNK,
    backend_cache_clear,
    generation_backend,
    generation_chunks,
    http_backend_configured,
    prompts_per_chunk,
)
from training.services.rounds.config import CONFIG_FIELDS, blocklist_compile, round_settings_get
from training.services.rounds.lifecycle import round_cancel, round_retry, round_start
from training.services.rounds.progress import RoundCancelled, RoundReporter, RoundStepError
from training.services.rounds.runner import (
    JOB_SOFT_TIME_LIMIT_S,
    NEXT_STATE,
    round_advance,
    round_run,
)
from training.services.rounds.steps import STEP_FUNCTIONS
from training.services.rounds.steps.batches import SCORE_BATCH

__all__ = [
    "CONFIG_FIELDS",
    "HTTP_PROMPTS_PER_CHUNK",
    "JOB_SOFT_TIME_LIMIT_S",
    "NEXT_STATE",
    "SCORE_BATCH",
    "STEP_FUNCTIONS",
    "RoundCancelled",
    "RoundReporter",
    "RoundStepError",
    "backend_cache_clear",
    "blocklist_compile",
    "generation_backend",
    "generation_chunks",
    "http_backend_configured",
    "prompts_per_chunk",
    "round_advance",
    "round_cancel",
    "round_retry",
    "round_run",
    "round_settings_get",
    "round_start",
]
