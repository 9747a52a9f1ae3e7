"""Input errors that name the field (a JSON pointer) and the problem."""
from __future__ import annotations


def pointer(*parts) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    text = "/" + "/".join(map(str, parts)) if parts else ""
    if "~" in text or any(isinstance(p, str) and "/" in p for p in parts):
        return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return text


class InputError(Exception):
    """Bad input: one or more (pointer, message) problems. The CLI exits 2 with them."""

    def __init__(self, problems: list, source: str = ""):
        self.problems = sorted(set(problems))
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
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
