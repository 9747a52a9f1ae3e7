"""Input errors that name the field (a JSON pointer) and the problem."""
from __future__ import annotations

import re

# An error message quotes the bad value, never all of it: a 10 MB value would drown the message.
SHOWN_VALUE_CHARS = 80
MESSAGE_CHARS = 2000

_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def shorten(value, limit: int = SHOWN_VALUE_CHARS) -> str:
    """`value` as one printable line of at most `limit` characters: control characters, bidi
    overrides and lone surrogates shown as escapes, the middle of a long value elided with its
    length said."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        keep = max(limit // 2 - 8, 4)
        text = f"{text[:keep]}…[{len(text):,} characters]…{text[-keep:]}"
    return _INVISIBLE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii")
                          if not 0xD800 <= ord(m.group()) <= 0xDFFF else f"\\u{ord(m.group()):04x}", text)


def quoted(value, limit: int = SHOWN_VALUE_CHARS) -> str:
    """A bad value for an error message: quoted, shortened, printable."""
    return f"'{shorten(value, limit)}'" if isinstance(value, str) else shorten(value, limit)


def pointer(*parts) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    text = "/" + "/".join(map(str, parts)) if parts else ""
    # One slash per part means no part holds one: the common case, told without a walk.
    if "~" in text or (text.count("/") != len(parts) and any(isinstance(p, str) and "/" in p for p in parts)):
        return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return text


class InputError(Exception):
    """Bad input: one or more (pointer, message) problems. The CLI exits 2 with them."""

    def __init__(self, problems: list, source: str = ""):
        # The message net: whatever a message quotes, it stays readable.
        self.problems = sorted({(shorten(p, 200), shorten(m, MESSAGE_CHARS)) for p, m in problems})
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        prefix = f"{shorten(self.source, 300)}: " if self.source else ""
        return "\n".join(f"{prefix}{ptr or '(document)'}: {msg}" for ptr, msg in self.problems)

    def relocated(self, locate, source: str = "") -> "InputError":
        """The same problems at the pointers `locate` maps them to (a FHIR Bundle's, a
        QuestionnaireResponse's), each naming the case field it is about where that differs."""
        problems = []
        for ptr, msg in self.problems:
            where = locate(ptr)
            problems.append((where, msg if where == ptr else f"{msg} (case field {ptr or '(document)'})"))
        return InputError(problems, self.source or source)

    def first(self) -> dict:
        ptr, msg = self.problems[0]
        return {"pointer": ptr, "message": msg}
