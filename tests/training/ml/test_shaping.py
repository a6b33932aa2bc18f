"""The shaped reward in units: z(RM) − λ·p(unsafe) − missing_eos_penalty·[truncated]."""

import math

import pytest

from training.ml.shaping import IDENTITY, normalisation_from_scores, normalisation_of, shaped_terms


def test_normalisation_makes_the_reference_scores_mean_0_sd_1_whatever_the_models_scale():
    for scale, offset in ((0.09, 3.0), (10.0, -2.0)):
        raw = [offset + scale * x for x in (-1.0, 0.0, 2.0, 3.0)]
        norm = normalisation_from_scores(raw, reference="held-out responses")
        z = [norm.z(s) for s in raw]
        assert math.isclose(sum(z) / len(z), 0.0, abs_tol=1e-9)
        assert math.isclose(math.sqrt(sum(v * v for v in z) / len(z)), 1.0)
        # The same λ means the same trade-off for both scales: one sd of reward per unit p(unsafe).
        t = shaped_terms(
            score=raw[2], p_unsafe=1.0, truncated=False, norm=norm, lam=1.0, missing_eos_penalty=1.0
        )
        assert math.isclose(t.shaped, z[2] - 1.0)


def test_stored_normalisation_round_trips_and_an_older_model_gets_the_identity():
    norm = normalisation_from_scores([1.0, 3.0], reference="held-out responses")
    assert normalisation_of({"normalisation": norm.as_dict()}) == norm
    assert normalisation_of({}) is IDENTITY and normalisation_of(None) is IDENTITY
    assert IDENTITY.z(0.7) == 0.7
    assert normalisation_from_scores([], reference="x") is IDENTITY
    assert normalisation_from_scores([2.0, 2.0], reference="x").z(5.0) == 0.0  # no spread: no signal


@pytest.mark.parametrize("truncated, expected", [(False, 0.5 - 0.4), (True, 0.5 - 0.4 - 2.0)])
def test_terms_are_kept_apart_and_a_truncated_candidate_pays_the_missing_eos_penalty(truncated, expected):
    norm = normalisation_from_scores([0.0, 2.0], reference="x")  # mean 1, sd 1
    t = shaped_terms(
        score=1.5, p_unsafe=0.2, truncated=truncated, norm=norm, lam=2.0, missing_eos_penalty=2.0
    )
    assert t.reward_z == 0.5 and math.isclose(t.harm, 0.4)
    assert math.isclose(t.shaped, expected)
