"""Judge backends: the reward-model judge, an LLM judge over a real local HTTP server, and the
seeded simulated voter's agreement, position bias and repeatability."""

import pytest

from tests.http_peer import JsonPeer, serving
from training.ml.judges import (
    ChatJudge,
    JudgeError,
    JudgeItem,
    RewardModelJudge,
    SimulatedJudge,
    strength_from_gap,
)


class LengthScorer:
    """A reward that prefers longer answers (stands in for a reward model's `score`)."""

    def score(self, prompts, responses):
        return [len(r) / 10 for r in responses]


def items(n, *, left_alternates=True):
    return [
        JudgeItem(
            prompt=[{"role": "user", "content": f"q{i}"}],
            response_a="a much longer and better answer" if i % 3 else "short",
            response_b="short" if i % 3 else "a much longer and better answer",
            left="a" if (i % 2 or not left_alternates) else "b",
            key=i,
        )
        for i in range(n)
    ]


def test_strength_from_gap():
    assert strength_from_gap(0.05, (0.1, 0.5, 1.5)) == ("tie", None)
    assert strength_from_gap(-0.7, (0.1, 0.5, 1.5)) == ("b", 2)
    assert strength_from_gap(2.0, (0.1, 0.5, 1.5)) == ("a", 3)


def test_reward_model_judge_prefers_the_higher_score():
    out = RewardModelJudge(LengthScorer()).judge(items(3))
    assert [j.choice for j in out] == ["b", "a", "a"]
    assert out[1].scores[0] > out[1].scores[1] and out[1].strength == 3


def test_simulated_voter_agreement_and_left_bias_and_repeatability():
    truth = RewardModelJudge(LengthScorer())
    sim = SimulatedJudge(truth, agreement=0.75, left_bias=0.55, seed=7)
    batch = items(6000)
    votes = sim.judge(batch)
    truths = truth.judge(batch)
    agree = sum(v.choice == t.choice for v, t in zip(votes, truths, strict=True)) / len(batch)
    left = sum(v.choice == i.left for v, i in zip(votes, batch, strict=True)) / len(batch)
    assert agree == pytest.approx(0.75, abs=0.02)
    assert left == pytest.approx(0.55, abs=0.02)  # sides are balanced, so the lean shows
    again = sim.judge(list(reversed(batch)))[::-1]  # same items in another order: same votes
    assert [v.choice for v in again] == [v.choice for v in votes]
    assert all(v.seconds > 0 for v in votes)


def test_a_spammer_answers_at_random():
    votes = SimulatedJudge(RewardModelJudge(LengthScorer()), spammer=True, seed=1).judge(items(4000))
    truths = RewardModelJudge(LengthScorer()).judge(items(4000))
    agree = sum(v.choice == t.choice for v, t in zip(votes, truths, strict=True)) / 4000
    assert agree == pytest.approx(0.5, abs=0.03)


@pytest.fixture
def chat_server():
    """A real HTTP server on loopback answering /v1/chat/completions like vLLM would."""
    seen = []

    class Handler(JsonPeer):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.read_json()
            text = body["messages"][0]["content"]
            seen.append(text)
            first = text.split("[Response 1]")[1].split("[Response 2]")[0]
            verdict = "[[1]]" if "longer" in first else "[[2]]"
            if "q-tie" in text:
                verdict = "[[tie]]"
            if "q-broken" in text:
                verdict = "no verdict here"
            self.send_json(200, {"choices": [{"message": {"content": f"Reasoning.\n{verdict}"}}]})

    with serving(Handler) as url:
        yield f"{url}/v1", seen


def test_chat_judge_randomises_the_order_and_maps_the_verdict_back(chat_server):
    url, seen = chat_server
    judge = ChatJudge(base_url=url, model="judge", seed=3)
    out = judge.judge(items(12))
    assert [j.choice for j in out] == ["b" if i % 3 == 0 else "a" for i in range(12)]
    firsts = {t.split("[Response 1]")[1].split("[Response 2]")[0].strip() for t in seen}
    assert len(firsts) == 2  # the better answer was shown first for some items, second for others
    assert "[[" in out[0].raw and out[0].rationale.startswith("Reasoning.")
    tie = judge.judge(
        [JudgeItem(prompt=[{"role": "user", "content": "q-tie"}], response_a="x", response_b="y")]
    )
    assert tie[0].choice == "tie" and tie[0].strength is None
    with pytest.raises(JudgeError, match="No \\[\\[1\\]\\]"):
        judge.judge(
            [JudgeItem(prompt=[{"role": "user", "content": "q-broken"}], response_a="x", response_b="y")]
        )


def test_chat_judge_reports_an_unreachable_endpoint():
    judge = ChatJudge(base_url="http://127.0.0.1:9/v1", model="judge", timeout_s=2)
    with pytest.raises(JudgeError, match="did not answer"):
        judge.judge(items(1))
