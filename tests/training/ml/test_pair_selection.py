"""Which pair a round publishes and which pair its policy update learns from (no database)."""

import random
from collections import Counter

from training.ml.pair_selection import Candidate, best_vs_worst, choose_pair, most_uncertain_pair


def cand(id, reward, text=None, index=0, blocked=False, truncated=False, raw=None):
    return Candidate(id=id, text=text if text is not None else f"text {id}", shaped_reward=reward,
                     candidate_index=index, blocked=blocked, truncated=truncated, reward=raw)  # fmt: skip


def test_the_most_uncertain_pair_is_the_one_the_reward_model_is_least_sure_of_higher_first():
    a, b, c = cand(1, 0.0), cand(2, 0.9), cand(3, 1.0)
    assert most_uncertain_pair([a, b, c])[:2] == (c, b)
    same = cand(4, 0.95, text=" text 3 ")  # same text as c once stripped: skipped
    assert most_uncertain_pair([a, b, c, same])[:2] == (same, b)
    assert most_uncertain_pair([cand(5, 1.0, text="x"), cand(6, 2.0, text="x")]) is None
    assert most_uncertain_pair([a]) is None and most_uncertain_pair([]) is None
    # It reads the reward model's raw scores, not the shaped reward: a harm term that separates
    # two answers the reward model cannot tell apart does not make them a "sure" pair.
    x, y, z = cand(7, 0.0, raw=0.50), cand(8, -5.0, raw=0.51), cand(9, 0.2, raw=3.0)
    a_, b_, p = most_uncertain_pair([x, y, z])
    assert {a_.id, b_.id} == {7, 8} and 0.5 <= p < 0.51


def test_exploration_publishes_a_random_pair_at_the_set_rate_and_says_so():
    pool = [cand(i, float(i), raw=float(i)) for i in range(4)]
    rng = random.Random(3)
    picks = Counter(
        choose_pair("uncertain", pool, [], explore=0.3, rng=rng).reason.split(":")[0] for _ in range(2000)
    )
    assert abs(picks["exploration"] / 2000 - 0.3) < 0.04 and picks["most uncertain"] > 1200
    choice = choose_pair("random", pool, [], rng=random.Random(1))
    assert choice.strategy == "random" and choice.reason == "random pair (baseline strategy)"
    # Seeded: the same seed picks the same pair (a rerun of publishing is repeatable).
    again = [choose_pair("uncertain", pool, [], explore=1.0, rng=random.Random("7:1")) for _ in range(2)]
    assert again[0] == again[1]


def test_new_vs_old_puts_the_new_best_against_the_old_best():
    old = [cand(1, 0.2), cand(2, 0.8, index=1)]
    new = [cand(3, 0.5), cand(4, 0.9, index=1), cand(5, 5.0, blocked=True)]
    choice = choose_pair("new_vs_old", old, new)
    assert (choice.a.id, choice.b.id, choice.strategy) == (4, 2, "new_vs_old")
    assert abs(choice.gap - 0.1) < 1e-9


def test_ties_go_to_the_lower_candidate_index():
    new = [cand(1, 1.0, index=1), cand(2, 1.0, index=0)]
    old = [cand(3, 0.0)]
    assert choose_pair("new_vs_old", old, new).a.id == 2


def test_falls_back_to_the_most_uncertain_pair_new_first_then_old():
    old = [cand(1, 0.0), cand(2, 0.5), cand(3, 3.0)]
    new = [cand(4, 1.0, text="same"), cand(5, 2.0, text="same")]
    # new best and old best have different text, but the strategy asks for uncertainty
    choice = choose_pair("uncertain", old, new)
    assert (choice.a.id, choice.b.id, choice.strategy) == (2, 1, "uncertain")  # new has one text
    choice = choose_pair("new_vs_old", [cand(6, 0.0, text="same")], [cand(7, 1.0, text="same")])
    assert choice is None


def test_blocked_and_unscored_candidates_are_never_chosen():
    old = [cand(1, 0.0, blocked=True), cand(2, None), cand(3, 0.4)]
    assert choose_pair("new_vs_old", old, []) is None
    old.append(cand(4, 0.5))
    choice = choose_pair("new_vs_old", old, [cand(5, 9.0, blocked=True)])
    assert {choice.a.id, choice.b.id} == {3, 4} and choice.strategy == "uncertain"


def test_best_vs_worst_never_chooses_a_blocked_text():
    group = [cand(1, 5.0, blocked=True), cand(2, 1.0), cand(3, -1.0, blocked=True), cand(4, None)]
    chosen, rejected = best_vs_worst(group)
    assert (chosen.id, rejected.id) == (2, 3)
    assert best_vs_worst([cand(1, 1.0, blocked=True)]) is None
    assert best_vs_worst([cand(1, 1.0)]) is None  # best is worst
    assert best_vs_worst([cand(1, 1.0, text="a"), cand(2, 0.0, text=" a")]) is None


def test_best_vs_worst_prefers_a_complete_text_and_says_why_a_pair_was_published():
    group = [cand(1, 5.0, truncated=True), cand(2, 1.0), cand(3, -1.0, truncated=True)]
    chosen, rejected = best_vs_worst(group)
    assert (chosen.id, rejected.id) == (2, 3)  # a complete one beats a truncated one to "chosen"
    # No unblocked candidate ended: the best truncated one is chosen (trained open, see
    # test_dpo), rather than no pair at all; a blocked one still never is.
    chosen, rejected = best_vs_worst(
        [
            cand(1, 9.0, truncated=True, blocked=True),
            cand(2, 1.0, truncated=True),
            cand(3, 0.0, truncated=True),
        ]
    )
    assert (chosen.id, rejected.id) == (2, 3) and chosen.truncated
    # The only complete one is the worst: the truncated one that beat it despite its penalty.
    chosen, rejected = best_vs_worst([cand(1, 0.5, truncated=True), cand(2, -1.0)])
    assert (chosen.id, rejected.id) == (1, 2)
    assert best_vs_worst([cand(1, 1.0, truncated=True, blocked=True), cand(2, 0.0, blocked=True)]) is None
    choice = choose_pair("uncertain", [cand(1, 0.0), cand(2, 0.25)], [])
    assert "P(A ≻ B) = 0.562" in choice.reason
