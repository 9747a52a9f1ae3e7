"""Sentences from templates: how a value is shown, a template filled, a sentence finished, and
case text made safe to show (`plain`: the one sanitizer every renderer's text passes through)."""
from __future__ import annotations

import functools
import re
import unicodedata

from ..lang.objects import SLOT

_ATOMLIKE = re.compile(r"[a-z][a-z0-9_]*")
# A case value longer than this is shortened wherever prose shows it; the JSON fields keep it whole.
VALUE_LIMIT = 80
# Characters that would let text leave its line or steer a terminal: C0 and C1 controls (ESC
# starts CSI and OSC sequences, U+009B is CSI itself), DEL, line and paragraph separators, and
# the format characters that reorder or hide text (bidi overrides, zero-width joiners...).
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    return not char.isprintable() if char.isascii() else unicodedata.category(char) in _UNSAFE_CATEGORIES


def plain(text, limit=None) -> str:
    """Text as one visible line: every control, separator and format character (so every CSI
    and OSC escape sequence) shown as a backslash escape instead of acting; past `limit`
    characters, shortened with an ellipsis. Idempotent; text that needs nothing is unchanged."""
    text = str(text)
    # Printable ASCII throughout (the common case) has no character to escape: told in one pass.
    if not (text.isascii() and text.isprintable()) and any(_unsafe(ch) for ch in text):
        text = "".join(_visible(ch) if _unsafe(ch) else ch for ch in text)
    if limit is not None and len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text


def show(value, case_key, names=None) -> str:
    """A value as a sentence shows it: its display name from the rules (or the case's name for
    it, e.g. a service line's) if it has one; case text as one safe line."""
    if value == case_key:
        return "the case"
    if isinstance(value, int):
        return str(value)
    if names and value in names:
        return names[value]
    if _ATOMLIKE.fullmatch(value):
        return value.replace("_", " ")
    # One visible line, not shortened: a slot may hold a rule's own long text (a pack's scope
    # note); case values reach slots bounded by the case file's input limits.
    return plain(value)


def fill(template: str, env: dict, case_key, names=None) -> str:
    """A template with every slot filled from `env`."""
    parts = _split(template)
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        out += (show(env[parts[i]], case_key, names), parts[i + 1])
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _split(template: str) -> list:
    """The template's text between slots, and each slot's variable between them: SLOT.split."""
    return SLOT.split(template)


_ARTICLE_SLOT = re.compile(r"\b(?:[Tt]he|[Aa]n?|[Ss]ome|[Aa]ny) (@\([A-Za-z_][A-Za-z0-9_]*\))")


def unknown(name: str) -> str:
    """How a sentence speaks of a value not yet known: 'some code' for the variable Code."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip("_")).lower() or "value"
    return "some " + words


def fill_known(template: str, env: dict, case_key, names=None) -> str:
    """A template with the slots whose values are known filled and the others spoken of as
    unknown ('some code'), never as the rule's variable names."""
    # An article before an unknown slot goes: "the @(Structure)" reads "some structure".
    template = _ARTICLE_SLOT.sub(lambda m: m.group(1) if SLOT.fullmatch(m.group(1)).group(1) not in env
                                 else m.group(0), template)
    return SLOT.sub(lambda m: show(env[m.group(1)], case_key, names) if m.group(1) in env else unknown(m.group(1)),
                    template)


def sentence(text: str) -> str:
    """Text as a sentence: capitalised, ending in a full stop unless it ends in . ! or ?"""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def inline(text: str) -> str:
    """Text placed inside a sentence (after a label or mid-sentence): a capital that only opens
    a sentence is lowered ('Anterior and posterior' -> 'anterior and posterior'); a word that is
    capitalised throughout or inside (ALIF, MEP, L5, McKenzie) keeps its spelling."""
    match = re.match(r"([A-Z])([a-z]+)\b", text)
    if not match:
        return text
    return match.group(1).lower() + text[1:]
