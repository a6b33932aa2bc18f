"""The evaluation job's body on the kernel (`evaluation_run`): prompts, generation, publishing,
metrics; each phase does only what the rows say is left (see `training.services.evaluations`)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from django.conf import settings
from django.db import transaction

from annotation.models import Comparison, Prompt, Response
from annotation.services.comparisons import assignments_create
from core.errors import ErrorCode, ServiceError
from core.events import Audience, event_send_on_commit, project_group
from core.jobs import JobFailed, JobReporter, job_run
from training.ml.blocklist import blocked_reasons
from training.ml.round_metrics import kl_k3
from training.ml.stats import Z95, wilson_interval
from training.models import Evaluation, EvaluationPair, PolicyCheckpoint, RewardModel
from training.services.policies import policy_root
from training.services.rounds.backends import generation_backend, prompts_per_chunk
from training.services.rounds.config import blocklist_compile, round_settings_get

JOB_SOFT_TIME_LIMIT_S = int(getattr(settings, "EVALUATION_JOB_TIME_LIMIT_S", 6 * 3600))
PUBLISH_CHUNK = 200  # (prompt, sample) pairs written per transaction
CHALLENGER, OPPONENT = "challenger", "opponent"


def evaluation_run(*, evaluation_id: int, listener: Callable | None = None) -> Evaluation | None:
    """Run the evaluation to its end (the Celery task's one service). Safe to call twice: a
    finished one is left alone, and a crashed one resumes where its rows stop."""
    from training.ml.generation import GenerationCancelled, GenerationError

    def body(ev: Evaluation, reporter: JobReporter) -> None:
        _Run(ev, reporter).run()

    ev = job_run(
        Evaluation,
        evaluation_id,
        body,
        cancel_errors=(GenerationCancelled,),
        user_errors=(GenerationError,),
        listener=listener,
    )
    if ev is not None and ev.status == Evaluation.Status.SUCCEEDED:
        from training.services.gates import gate_judge_start

        gate_judge_start(evaluation=ev)
    return ev


def _seed_of(ev: Evaluation, chunk_index: int) -> int:
    return (ev.seed * 1_000_003 + chunk_index * 7919) % (2**31)


def _clean_text(text: str) -> str:
    return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


class _Run:
    """One attempt at an evaluation: each phase does only what the rows say is left."""

    def __init__(self, ev: Evaluation, reporter: JobReporter):
        self.ev = Evaluation.objects.select_related("project", "challenger", "opponent", "round").get(
            pk=ev.pk
        )
        self.reporter = reporter
        self.done = 0
        self.total = 1

    def tick(self, steps: int = 1) -> None:
        self.done += steps
        self.reporter.progress(self.done, self.total)

    def run(self) -> None:
        prompt_ids = self.prompts()
        self.messages = dict(Prompt.objects.filter(pk__in=prompt_ids).values_list("pk", "messages"))
        self.total = 2 * len(prompt_ids) + 2
        self.reporter.progress(0, self.total, force=True)
        self.safety = _Safety(self.ev)
        for side, policy in ((CHALLENGER, self.ev.challenger), (OPPONENT, self.ev.opponent)):
            self.generate(side, policy, prompt_ids)
        created = self.publish(prompt_ids)
        self.tick()
        metrics = {**self.ev.metrics, **self.measure(prompt_ids), "published_now": created}
        metrics["pairs"] = EvaluationPair.objects.filter(evaluation=self.ev).count()
        Evaluation.objects.filter(pk=self.ev.pk).update(metrics=metrics)
        self.ev.metrics = metrics
        self.tick()

    # 1. prompts

    def prompts(self) -> list[int]:
        ids = self.ev.metrics.get("prompt_ids")
        if ids:
            return [int(i) for i in ids]
        pool = list(
            Prompt.objects.filter(project_id=self.ev.project_id, purpose=Prompt.Purpose.EVAL)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not pool:
            raise JobFailed("The project has no held-out evaluation prompts left.")
        ids = random.Random(self.ev.seed).sample(pool, min(self.ev.prompts_count, len(pool)))
        self.ev.metrics = {**self.ev.metrics, "prompt_ids": ids}
        Evaluation.objects.filter(pk=self.ev.pk).update(metrics=self.ev.metrics)
        return ids

    # 2. generate

    def _responses(self, prompt_ids, **keys):
        return Response.objects.filter(
            prompt_id__in=prompt_ids, metadata__contains={"evaluation": self.ev.pk, **keys}
        )

    def generate(self, side: str, policy: PolicyCheckpoint, prompt_ids: list[int]) -> None:
        from training.ml.policy import GenerationParams

        have = set(self._responses(prompt_ids, side=side).values_list("prompt_id", flat=True))
        self.tick(len(have))
        if len(have) == len(prompt_ids):
            return
        backend, backend_name = generation_backend(policy)
        per_chunk = prompts_per_chunk(backend_name, self.ev.samples)
        for index, start in enumerate(range(0, len(prompt_ids), per_chunk)):
            chunk = [pid for pid in prompt_ids[start : start + per_chunk] if pid not in have]
            if not chunk:
                continue
            self.reporter.check()
            params = GenerationParams(
                n=self.ev.samples,
                temperature=self.ev.temperature,
                top_p=1.0,
                max_new_tokens=self.ev.max_new_tokens,
                seed=_seed_of(self.ev, index),
            )
            groups = backend.generate([self.messages[pid] for pid in chunk], params)
            self._write(side, policy, chunk, groups, backend_name)
            self.tick(len(chunk))

    def _write(self, side, policy, chunk, groups, backend_name) -> None:
        texts = [_clean_text(c.text) for group in groups for c in group]
        prompts = [self.messages[pid] for pid, group in zip(chunk, groups, strict=True) for _ in group]
        verdicts = self.safety.verdicts(prompts, texts)
        rows, k = [], 0
        for pid, group in zip(chunk, groups, strict=True):
            for index, c in enumerate(group):
                toxicity, reason = verdicts[k]
                rows.append(
                    Response(
                        prompt_id=pid,
                        text=texts[k],
                        source=Response.Source.POLICY,
                        model_name=f"policy #{policy.pk}",
                        policy_checkpoint_id=policy.pk,
                        generation_params={**c.params, "backend": backend_name},
                        metadata={
                            "evaluation": self.ev.pk,
                            "side": side,
                            "sample_index": index,
                            "finish_reason": c.finish_reason,
                            "num_tokens": c.num_tokens,
                            "toxicity": toxicity,
                            "blocked_reason": reason,
                        },
                    )
                )
                k += 1
        Response.objects.bulk_create(rows)  # one statement: the chunk is written whole or not at all

    # 3. publish

    def publish(self, prompt_ids: list[int]) -> int:
        ev = self.ev
        done = set(EvaluationPair.objects.filter(evaluation=ev).values_list("prompt_id", "sample_index"))
        by_key = {
            (pid, meta["side"], meta["sample_index"]): (pk, meta)
            for pk, pid, meta in self._responses(prompt_ids).values_list("pk", "prompt_id", "metadata")
        }
        todo = []
        for pid in prompt_ids:
            for k in range(ev.samples):
                mine, theirs = by_key.get((pid, CHALLENGER, k)), by_key.get((pid, OPPONENT, k))
                if (pid, k) in done or mine is None or theirs is None:
                    continue
                if mine[1].get("blocked_reason") or theirs[1].get("blocked_reason"):
                    continue  # a blocked text never reaches a rater; counted as unsafe in the metrics
                todo.append((pid, k, mine, theirs))
        for start in range(0, len(todo), PUBLISH_CHUNK):
            self.reporter.check()
            self._pairs_write(todo[start : start + PUBLISH_CHUNK])
        if todo:
            event_send_on_commit(
                group=project_group(ev.project_id, Audience.COUNTERS),
                payload={"kind": "comparisons_added", "count": len(todo)},
            )
        return len(todo)

    def _pairs_write(self, items) -> None:
        ev = self.ev
        with transaction.atomic():
            comparisons, pairs = [], []
            for pid, k, mine, theirs in items:
                a, b = (mine, theirs) if k % 2 == 0 else (theirs, mine)
                ckpt_a, ckpt_b = (
                    (ev.challenger_id, ev.opponent_id) if k % 2 == 0 else (ev.opponent_id, ev.challenger_id)
                )
                comparisons.append(
                    Comparison(
                        project_id=ev.project_id,
                        prompt_id=pid,
                        response_a_id=a[0],
                        response_b_id=b[0],
                        votes_needed=ev.project.overlap,
                        priority=ev.priority,
                        metadata={"evaluation": ev.pk, "sample_index": k},
                    )
                )
                pairs.append(
                    EvaluationPair(
                        evaluation=ev,
                        prompt_id=pid,
                        sample_index=k,
                        checkpoint_a_id=ckpt_a,
                        checkpoint_b_id=ckpt_b,
                        truncated_a=a[1].get("finish_reason") == "length",
                        truncated_b=b[1].get("finish_reason") == "length",
                    )
                )
            Comparison.objects.bulk_create(comparisons)
            assignments_create(comparisons=comparisons)
            for pair, comparison in zip(pairs, comparisons, strict=True):
                pair.comparison = comparison
            EvaluationPair.objects.bulk_create(pairs)

    # 4. metrics

    def measure(self, prompt_ids: list[int]) -> dict:
        rows = list(
            self._responses(prompt_ids, side=CHALLENGER)
            .order_by("pk")
            .values_list("prompt_id", "text", "metadata")
        )
        if not rows:
            return {}
        n = len(rows)
        truncated = sum(meta.get("finish_reason") == "length" for _, _, meta in rows)
        unsafe = sum(bool(meta.get("blocked_reason")) for _, _, meta in rows)
        prompts = [self.messages[pid] for pid, _, _ in rows]
        texts = [text for _, text, _ in rows]
        return {
            "samples_measured": n,
            "truncated": _rate(truncated, n),
            "unsafe": _rate(unsafe, n),
            "kl": self.kl(prompts, texts, [meta.get("finish_reason") == "stop" for _, _, meta in rows]),
            "proxy_reward": _proxy_reward(self.ev.project_id, prompts, texts),
        }

    def kl(self, prompts, texts, eos) -> dict | None:
        """KL(challenger || reference) over the challenger's own samples, in nats (k3, see
        `training.ml.round_metrics.kl_k3`); only meaningful on samples drawn at temperature 1
        (top_p is always 1 here)."""
        ev = self.ev
        if ev.temperature != 1.0:
            return None
        reference = policy_root(ev.challenger)
        if reference.sha256 == ev.challenger.sha256:
            return {**_mean([0.0] * len(texts)), "reference": reference.pk}
        from training.ml.generation import sequence_logprobs

        scores = []
        for policy in (ev.challenger, reference):
            self.reporter.check()
            backend, _ = generation_backend(policy)
            scores.append(sequence_logprobs(backend.model, backend.tokenizer, prompts, texts, add_eos=eos))
        pairs = list(zip(*scores, strict=True))
        # The same estimator as a round's own KL (k3: unbiased and never negative); k1, the plain
        # log-ratio mean, is kept beside it.
        return {
            **_mean([kl_k3(p, q) for p, q in pairs]),
            "estimator": "k3",
            "k1": _mean([p - q for p, q in pairs])["value"],
            "reference": reference.pk,
        }


class _Safety:
    """Toxicity and blocklist verdicts as a round's filtering step gives them, with the round's
    reward model's safety classifier (the active one's for an evaluation without a round) and
    the project's round settings (threshold, blocklist)."""

    def __init__(self, ev: Evaluation):
        from training.ml.safety import load_toxicity
        from training.services.rounds.steps.filtering import _toxicity_scorer

        row = round_settings_get(project=ev.project)
        self.threshold = float(row.toxicity_threshold)
        self.patterns = blocklist_compile(row.blocklist)
        model = (ev.round.reward_model if ev.round_id else None) or RewardModel.objects.filter(
            project_id=ev.project_id, is_active=True
        ).first()
        self.scorer = _toxicity_scorer(model) if model is not None else load_toxicity(None)

    def verdicts(self, prompts, texts) -> list[tuple[float, str]]:
        scores = self.scorer.score(prompts, texts) if texts else []
        out = []
        for text, tox in zip(texts, scores, strict=True):
            reason = blocked_reasons(
                toxicity=float(tox), threshold=self.threshold, text=text, patterns=self.patterns
            )
            out.append((float(tox), reason))
        return out


def _rate(count: int, n: int) -> dict:
    e = wilson_interval(count, n)
    return {"value": e.value, "low": e.low, "high": e.high, "n": n, "count": count}


def _mean(values: list[float]) -> dict:
    """Mean with a normal 95 % interval (the interval collapses to the point when n < 2)."""
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = Z95 * sd / math.sqrt(n)
    return {"value": m, "low": m - half, "high": m + half, "n": n}


def _proxy_reward(project_id: int, prompts, texts) -> dict | None:
    """Mean score under the project's active reward model (None when it has none)."""
    from training.services.scoring import reward_score, scorer_for

    try:
        reward_model_id, _ = scorer_for(project_id=project_id)
    except ServiceError as exc:
        if exc.code == ErrorCode.NO_REWARD_MODEL:
            return None
        raise
    values = reward_score(project=project_id, prompts=prompts, responses=texts)
    return {**_mean([float(v) for v in values]), "reward_model": reward_model_id}
