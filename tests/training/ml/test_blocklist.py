"""The round blocklist: parsing and matching (no database)."""

import pytest

from training.ml.blocklist import BlocklistError, blocked_reasons, blocklist_match, blocklist_parse


def test_words_match_as_stems_case_insensitively_and_regexes_as_written():
    patterns = blocklist_parse("# a comment\n\n  darn \n/[0-9]{3}/\nbad word\n")
    assert [label for label, _ in patterns] == ["darn", "/[0-9]{3}/", "bad word"]
    assert blocklist_match(patterns, "Oh DARN it") == "darn"
    assert blocklist_match(patterns, "darned") == "darn"  # a word that starts with the entry
    assert blocklist_match(patterns, "undarned") is None  # not in the middle of a word
    assert blocklist_match(patterns, "call 555 now") == "/[0-9]{3}/"
    assert blocklist_match(patterns, "a Bad Word!") == "bad word"
    assert blocklist_match(patterns, "fine") is None
    assert blocklist_parse("") == [] and blocklist_parse(None) == []


def test_a_word_blocks_the_words_it_starts_kill_blocks_killing_not_skill():
    patterns = blocklist_parse("kill")
    for text in ("kill", "Killing time", "he KILLED it", "killers!"):
        assert blocklist_match(patterns, text) == "kill", text
    for text in ("skill", "overkill", "kil"):
        assert blocklist_match(patterns, text) is None, text
    # A phrase: its last word is a stem as well.
    phrase = blocklist_parse("bad word")
    assert blocklist_match(phrase, "bad wording") == "bad word" and blocklist_match(phrase, "badword") is None
    # A whole word only: a regex with word boundaries.
    exact = blocklist_parse(r"/\bkill\b/")
    assert blocklist_match(exact, "kill") and blocklist_match(exact, "killing") is None


def test_special_characters_in_a_word_are_literal():
    patterns = blocklist_parse("a.b")
    assert blocklist_match(patterns, "x a.b y") == "a.b" and blocklist_match(patterns, "axb") is None


def test_a_bad_regex_names_its_line():
    with pytest.raises(BlocklistError, match="line 2: bad regex"):
        blocklist_parse("ok\n/([/\n")


def test_reasons_name_the_threshold_and_the_first_match():
    patterns = blocklist_parse("/[0-9]/\nhello")
    assert blocked_reasons(toxicity=0.2, threshold=0.5, text="fine", patterns=patterns) == ""
    assert blocked_reasons(toxicity=0.5, threshold=0.5, text="fine", patterns=patterns) == ""
    assert (
        blocked_reasons(toxicity=0.75, threshold=0.5, text="hello 1", patterns=patterns)
        == "toxicity 0.75 > 0.5; blocklist: /[0-9]/"
    )
    assert blocked_reasons(toxicity=0.0, threshold=0.5, text="hello", patterns=patterns) == "blocklist: hello"
    long = blocklist_parse("x" * 400)
    assert len(blocked_reasons(toxicity=1.0, threshold=0.5, text="x" * 400, patterns=long)) == 300


def test_a_regex_that_backtracks_catastrophically_in_python_matches_in_linear_time():
    """Issue 15 item 5c: /(a+)+$/ on 50,000 "a"s and a "!" takes Python's `re` longer than the
    age of the universe; RE2 answers at once (no timing asserted: the test would hang)."""
    patterns = blocklist_parse("/(a+)+$/\n/(x|x)*y/")
    assert blocklist_match(patterns, "a" * 50_000 + "!") is None
    assert blocklist_match(patterns, "x" * 50_000) is None
    assert blocklist_match(patterns, "AAA") == "/(a+)+$/"  # still case-insensitive


@pytest.mark.parametrize(
    "line,reason",
    [
        ("/(?<!s)kill/", "lookarounds"),
        (r"/(a)\1/", "backreferences"),
        ("/" + "a" * 1001 + "/", "at most 1000"),
    ],
)
def test_regexes_re2_cannot_run_in_linear_time_are_refused_with_the_reason(line, reason):
    with pytest.raises(BlocklistError, match=reason):
        blocklist_parse(line)


def test_beside_a_learned_harm_model_lexical_profanity_is_only_a_floor_of_the_hard_filter():
    from training.ml.blocklist import PROFANITY_FLOOR

    none = blocklist_parse("")
    # A low calibrated p(unsafe) but a text the lexical prior is sure is profane: still blocked.
    assert blocked_reasons(toxicity=0.1, threshold=0.5, text="x", patterns=none, profanity=0.95) == (
        f"profanity 0.95 ≥ {PROFANITY_FLOOR:g}"
    )
    # Below the floor the lexical score decides nothing (p(unsafe) is the harm model's).
    assert blocked_reasons(toxicity=0.1, threshold=0.5, text="x", patterns=none, profanity=0.8) == ""
    assert blocked_reasons(toxicity=0.6, threshold=0.5, text="x", patterns=none, profanity=0.8) == (
        "toxicity 0.60 > 0.5"
    )
