"""Exports read JSON columns with msgspec (annotation.exporters.kinds.json_loads): the values,
and so the exported bytes, are those the standard library's json.loads gives."""

import json

import pytest

from annotation.exporters.kinds import json_loads

SAMPLES = [
    [{"role": "user", "content": "Plain question?"}],
    [{"role": "system", "content": 'שלום, مرحبا, 你好, emoji \U0001f600, escapes " \\ \n \t \u2028 \u0000'}],
    {"nested": {"list": [1, -2, 3.5, 1e-7, 2.5e300, True, False, None], "empty": {}, "e": []}},
    {"big": 2**70, "negative big": -(2**65), "float": 0.1 + 0.2},
    {"dup": 1, "dup ": 2},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_json_loads_gives_what_the_standard_library_gives(value):
    text = json.dumps(value, ensure_ascii=False).encode()
    assert json_loads(text) == json.loads(text)
    assert json_loads(memoryview(text)) == json.loads(text)  # psycopg may hand over a buffer
    assert repr(json_loads(text)) == repr(json.loads(text))  # same types too (int vs float)


def test_duplicate_keys_keep_the_last_as_the_standard_library_does():
    assert json_loads(b'{"a": 1, "a": 2}') == json.loads(b'{"a": 1, "a": 2}') == {"a": 2}
