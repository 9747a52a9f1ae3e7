"""Pick the policy pack version in force on a date, from the packs' dated versions in rules/."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Optional

from .errors import InputError, quoted
from .lang import contract as c


@dataclass(frozen=True)
class PolicyVersion:
    pack: str
    version: str
    starts: datetime.date
    ends: Optional[datetime.date]  # inclusive; None = open

    def in_force(self, day: datetime.date) -> bool:
        return self.starts <= day and (self.ends is None or day <= self.ends)

    def window(self) -> list:
        return [self.starts.isoformat(), self.ends.isoformat() if self.ends else None]


def _date(text: str, where: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {quoted(text)} is not an ISO date") from None


def pack_titles(kb) -> dict:
    return {pack: title for pack, title in kb.values(c.POLICY_PACK, None, None)}


def pack_scope(kb, pack: str) -> dict:
    """What the pack declares it encodes in full (domain.md §8.1), read from its scope facts: the
    procedure classes and modalities, the classes it leaves unencoded with the reason, and the
    note for any other procedure."""
    notes = [reason for _p, reason in kb.values(c.SCOPE_NOTE, pack, None)]
    return {
        "encoded_classes": [cls for _p, cls in kb.values(c.ENCODES_CLASS, pack, None)],
        "encoded_modalities": [m for _p, m in kb.values(c.ENCODES_MODALITY, pack, None)],
        "not_encoded": [{"class": cls, "reason": r} for _p, cls, r in kb.values(c.LEAVES_CLASS_UNENCODED, pack, None, None)],
        "elsewhere": notes[0] if notes else None,
    }


def versions(kb, pack: str) -> list:
    """The pack's versions in start order. A version ends on its explicit end date, or else the
    day before the next version of the same pack starts, or never."""
    starts = sorted(((_date(s, f"policy_version({pack}, {v})"), v) for _p, v, s in kb.values(c.POLICY_VERSION, pack, None, None)))
    explicit = {v: _date(e, f"policy_version_ends({pack}, {v})") for _p, v, e in kb.values(c.POLICY_VERSION_ENDS, pack, None, None)}
    out = []
    for i, (start, version) in enumerate(starts):
        end = explicit.get(version)
        if end is None and i + 1 < len(starts):
            end = starts[i + 1][0] - datetime.timedelta(days=1)
        out.append(PolicyVersion(pack, version, start, end))
    return out


def version_rows(kb) -> list:
    """Every pack's versions as rows: pack, title, version, in_force window, sources, encoded scope."""
    rows = []
    for pack, title in sorted(pack_titles(kb).items()):
        sources = ", ".join(cite for _p, cite in kb.values(c.POLICY_PACK_SOURCE, pack, None))
        for v in versions(kb, pack):
            rows.append({"pack": pack, "title": title, "version": v.version, "in_force": v.window(),
                         "sources": sources, "scope": pack_scope(kb, pack)})
    return rows


def select(kb, pack: Optional[str], day: datetime.date, pack_pointer: str = "/payer",
           date_pointer: str = "/date_of_service") -> PolicyVersion:
    titles = pack_titles(kb)
    if not pack:
        raise InputError([(pack_pointer, "no payer: give the case a payer or pass --payer")])
    if pack not in titles:
        raise InputError([(pack_pointer, f"unknown policy pack {quoted(pack)}; known packs: {', '.join(sorted(titles))}")])
    found = versions(kb, pack)
    for version in found:
        if version.in_force(day):
            return version
    windows = "; ".join(f"{v.version}: {v.starts} to {v.ends or 'open'}" for v in found) or "none"
    raise InputError([(date_pointer, f"no version of {pack} is in force on {day.isoformat()}; versions: {windows}")])
