"""Sentences from templates: how a value is shown, a template filled, a sentence finished."""
from __future__ import annotations

import re

from ..lang.objects import SLOT

_ATOMLIKE = re.compile(r"[a-z][a-z0-9_]*")


def show(value, case_key, names=None) -> str:
    """A value as a sentence shows it: its display name from the rules if it has one."""
    if value == case_key:
        return "the case"
    if isinstance(value, int):
        return str(value)
    if names and value in names:
        return names[value]
    if _ATOMLIKE.fullmatch(value):
        return value.replace("_", " ")
    return value


def fill(template: str, env: dict, case_key, names=None) -> str:
    """A template with every slot filled from `env`."""
    return SLOT.sub(lambda m: show(env[m.group(1)], case_key, names), template)


def fill_known(template: str, env: dict, case_key, names=None) -> str:
    """A template with the slots whose values are known filled, the others left as their names."""
    return SLOT.sub(lambda m: show(env[m.group(1)], case_key, names) if m.group(1) in env else m.group(1),
                    template)


def sentence(text: str) -> str:
    """Text as a sentence: capitalised, ending in a full stop unless it ends in . ! or ?"""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
