"""core.safejson: what JSON from clients may hold (issue 15 item 11)."""

import pytest

from core.safejson import MAX_DEPTH, JsonRejected, loads

REFUSED = {
    "deep_10000": ("[" * 10_000 + "]" * 10_000, "nested deeper"),
    "deep_object": ('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "nested deeper"),
    "nan": ('{"x": NaN}', "NaN"),
    "infinity": ("[-Infinity]", "Infinity"),
    "float_overflow": ("[1e400]", "out of range"),
    "huge_int": ("1" * 4_301, "longer than"),
    "nul": ('{"a": "x\\u0000y"}', "NUL"),
    "surrogate": ('["\\ud800"]', "surrogate"),
    "surrogate_key": ('{"\\udfff": 1}', "surrogate"),
    "not_utf8": (b'{"a": "\xff"}', "not UTF-8"),
    "not_json": ("{", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_reason(name):
    text, reason = REFUSED[name]
    with pytest.raises(JsonRejected, match=reason):
        loads(text)


def test_ordinary_json_and_the_deepest_allowed():
    assert loads('{"a": [1, 2.5, "é", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "é", None, True],
        "b": {"c": -3},
    }
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert loads('"\\ud83d\\ude00"') == "😀"  # a surrogate pair is a character, not a lone half
