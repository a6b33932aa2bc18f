"""The rater-quality statistics against values computed by hand (no database)."""

import math

import pytest

from annotation.quality import stats
from annotation.quality.compute import Speed, VoteRecord, project_quality
from annotation.quality.trust import PAUSED, REVIEW, Evidence, Thresholds, state_decide, trust_score

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the worked example:
# 4 observers, 12 units, values 1-5, missing values as None. Published: nominal 0.743,
# ordinal 0.815.
_K2011 = [
    [1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, 3, None, None],
]  # fmt: skip


def test_krippendorff_alpha_matches_the_published_example():
    assert stats.krippendorff_alpha(_K2011, metric="nominal") == pytest.approx(0.743, abs=5e-4)
    assert stats.krippendorff_alpha(_K2011, metric="ordinal") == pytest.approx(0.815, abs=5e-4)


def test_krippendorff_alpha_small_case_by_hand():
    # Units (a, a), (a, b), (b, b): coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3,
    # n = 6. D_o = 2/6; D_e = 2·3·3 / (6·5) = 0.6; alpha = 1 − (1/3)/0.6 = 4/9.
    assert stats.krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)
    # Perfect agreement with variation: 1; a single unit or one value only: nothing to compare.
    assert stats.krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert math.isnan(stats.krippendorff_alpha([["a", "a"], ["a"]]))


def test_cohen_kappa_by_hand():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15. p_o = 0.7; rater 1 says yes 25 times,
    # rater 2 30 times: p_e = 0.5·0.6 + 0.5·0.4 = 0.5; kappa = (0.7 − 0.5)/(1 − 0.5) = 0.4.
    first = ["y"] * 25 + ["n"] * 25
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert stats.cohen_kappa(first, second) == pytest.approx(0.4)
    assert stats.cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208)/1.38415 = 0.71676; half-width
    # 1.96·sqrt(0.016 + 0.0009604)/1.38415 = 0.22615 -> (0.4902, 0.9433).
    est = stats.wilson_interval(8, 10)
    assert est.low == pytest.approx(0.4902, abs=1e-4)
    assert est.high == pytest.approx(0.9433, abs=1e-4)


def test_binomial_test_by_hand():
    # 9 of 10 under 1/2: P(X <= 1) + P(X >= 9) = 2·(1 + 10)/1024.
    assert stats.binomial_test(9, 10) == pytest.approx(22 / 1024)
    assert stats.binomial_test(5, 10) == pytest.approx(1.0)
    assert stats.binomial_test(10, 10) == pytest.approx(2 / 1024)
    # Asymmetric p: 0 of 5 under 0.2 is the likeliest outcome besides 1 of 5 (0.32768 vs 0.4096):
    # every outcome with pmf <= 0.32768 counts: 1 − 0.4096.
    assert stats.binomial_test(0, 5, 0.2) == pytest.approx(1 - 0.4096)


def test_binomial_test_on_a_big_project():
    """Thousands of votes: exact in log space, where math.comb would overflow a float (a 500 on
    the quality API found by fuzzing). 2,100 left of 4,000 against the normal approximation
    with continuity correction: z = (2100 - 2000 - 0.5) / sqrt(1000) = 3.146, p = 0.00165."""
    assert stats.binomial_test(2100, 4000) == pytest.approx(0.00165, rel=0.03)
    assert stats.binomial_test(2000, 4000) == pytest.approx(1.0)
    assert stats.binomial_test(50_000, 100_000) == pytest.approx(1.0)


def test_entropy_majority_and_leave_one_out():
    assert stats.vote_entropy(["a", "a", "b"]) == pytest.approx(
        -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    )
    assert stats.vote_entropy(["a", "a"]) == 0.0
    assert stats.majority([2, 1, 0, 0]) == ("a", pytest.approx(2 / 3))
    assert stats.majority([1, 1, 0, 0])[0] is None
    # r3 is alone against (a, a): disagrees; r1's others are (a, b): no majority.
    assert stats.loo_agreement([("r1", "a"), ("r2", "a"), ("r3", "b")]) == {
        "r1": None,
        "r2": None,
        "r3": False,
    }
    assert stats.loo_agreement([("r1", "a"), ("r2", "a"), ("r3", "a")]) == {
        "r1": True,
        "r2": True,
        "r3": True,
    }


def test_ordinal_scale_and_reading_time():
    assert [stats.ordinal_level("a", 3), stats.ordinal_level("a", 1), stats.ordinal_level("tie", None)] == [
        -2,
        -1,
        0,
    ]
    assert [
        stats.ordinal_level("b", 1),
        stats.ordinal_level("b", 2),
        stats.ordinal_level("both_bad", None),
    ] == [1, 2, None]
    assert stats.reading_ms(500, 25.0) == pytest.approx(20_000)
    assert Speed(chars_per_second=25, too_fast_fraction=0.5).too_fast(9_000, 500) is True
    assert Speed(chars_per_second=25, too_fast_fraction=0.5).too_fast(11_000, 500) is False


def test_trust_separates_the_kinds_of_rater():
    careful = trust_score(
        Evidence(gold_right=2, gold_n=2, agree=16, agree_n=20, timed_n=30, left=15, sided_n=30)
    )
    random_ = trust_score(
        Evidence(gold_right=1, gold_n=2, agree=9, agree_n=20, timed_n=30, left=14, sided_n=30)
    )
    left = trust_score(Evidence(agree=10, agree_n=20, timed_n=30, left=30, sided_n=30))
    fast = trust_score(Evidence(agree=12, agree_n=20, fast=25, timed_n=30, left=15, sided_n=30))
    assert careful.value > 0.95
    assert random_.value < 0.3 and random_.likeliest == "random"
    assert left.value < 0.01 and left.likeliest == "left"
    assert fast.value < 0.01 and fast.likeliest == "too_fast"


def test_state_thresholds_and_paused_is_sticky():
    t = Thresholds(review_below=0.5, pause_below=0.05, min_votes=10)
    assert state_decide(trust=0.01, votes=9, current="active", thresholds=t) == "active"
    assert state_decide(trust=0.01, votes=10, current="active", thresholds=t) == PAUSED
    assert state_decide(trust=0.3, votes=10, current="active", thresholds=t) == REVIEW
    assert state_decide(trust=0.9, votes=10, current=REVIEW, thresholds=t) == "active"
    assert state_decide(trust=0.99, votes=50, current=PAUSED, thresholds=t) == PAUSED


def test_project_quality_counts_humans_for_position_and_agreement():
    votes = [
        VoteRecord("r1", 1, "a", 1, shown_left="a", server_ms=30_000, chars=100),
        VoteRecord("r2", 1, "a", 2, shown_left="b", server_ms=30_000, chars=100),
        VoteRecord("r3", 1, "b", 1, shown_left="b", server_ms=100, chars=100),
        VoteRecord("imp", 1, "a", 1, shown_left=None, human=False),
    ]
    q = project_quality(votes)
    assert set(q.raters) == {"r1", "r2", "r3"}
    # r3 against (a, a, a): disagrees; r1 against (a, b, a): agrees.
    assert q.raters["r3"].evidence.agree == 0 and q.raters["r3"].evidence.agree_n == 1
    assert q.raters["r1"].evidence.agree == 1
    assert q.raters["r3"].evidence.fast == 1 and q.raters["r1"].evidence.fast == 0
    # Left picks among human A/B votes with a screen side: r1 (a on the left) and r3 (b left).
    assert (q.human_left, q.human_sided) == (2, 3)
