"""Conversation formats shared by imports and exports. Plain Python, no Django.

A conversation is a list of {"role": "system"|"user"|"assistant", "content": str}.
Anthropic HH-RLHF transcripts are "\\n\\nHuman: ...\\n\\nAssistant: ..." strings.
"""

from __future__ import annotations

import re

ROLES = ("system", "user", "assistant")
HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


class FormatError(ValueError):
    """A line that does not have the shape the format asks for; the message says why."""


def normalise_messages(value) -> list[dict]:
    """A prompt given as a string or a list of messages, checked and made canonical."""
    if isinstance(value, str):
        if not value.strip():
            raise FormatError("prompt is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise FormatError("messages must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise FormatError(f"message {i} is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise FormatError(f"message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise FormatError(f"message {i} has no text content")
        out.append({"role": role, "content": content})
    if out[-1]["role"] == "assistant":
        raise FormatError("the prompt ends with an assistant turn; the response to judge goes elsewhere")
    return out


def parse_hh_transcript(text: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{user: a}, {assistant: b}] (content stripped)."""
    if not text.startswith(HUMAN):
        raise FormatError("an HH-RLHF transcript starts with '\\n\\nHuman:'")
    parts = _TURN.split(text)
    # parts = ["", "Human", " a", "Assistant", " b", ...]
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return messages


def split_hh_pair(chosen: str, rejected: str) -> tuple[list[dict], str, str]:
    """Prompt messages and the two final responses of an HH-RLHF pair.

    The prompt is the shared prefix of both transcripts cut at its last "\\n\\nAssistant:".
    Cutting each transcript at its own last "\\n\\nAssistant:" is wrong where a response itself
    contains that marker (5 of the 2,312 pairs in the harmless test split).
    """
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise FormatError("'chosen' and 'rejected' must be strings")
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n + 1)
    if cut < 0 or not chosen[:n].rstrip().startswith(HUMAN.strip()) and not chosen.startswith(HUMAN):
        raise FormatError("no shared '\\n\\nHuman: ... \\n\\nAssistant:' prefix in chosen and rejected")
    prefix = chosen[:cut]
    prompt = parse_hh_transcript(prefix)
    if not prompt or prompt[-1]["role"] != "user":
        raise FormatError("the shared prefix does not end with a human turn")
    start = cut + len(ASSISTANT)
    return prompt, chosen[start:].strip(), rejected[start:].strip()


def render_hh(messages: list[dict], response: str) -> str:
    """Messages plus a final assistant response as an HH-RLHF transcript."""
    out = []
    for m in messages:
        if m["role"] == "system":
            continue  # HH-RLHF has no system turn
        out.append((HUMAN if m["role"] == "user" else ASSISTANT) + " " + m["content"])
    out.append(ASSISTANT + " " + response)
    return "".join(out)
