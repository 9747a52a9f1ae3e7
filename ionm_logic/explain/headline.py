"""A line's headline: of the determinations its findings conclude, the one the pack ranks first."""
from __future__ import annotations

from ..lang.contract import PRECEDENCE, UNDETERMINED


def precedence(kb, pack: str) -> dict:
    """determination -> rank under `pack` (lower ranks first)."""
    return {det: rank for _p, det, rank in kb.values(PRECEDENCE, pack, None, None)}


def rank_min(determinations, ranks: dict) -> str:
    """The determination ranked first, or undetermined when there is none."""
    dets = list(determinations)
    if not dets:
        return UNDETERMINED
    return min(dets, key=lambda det: (ranks.get(det, len(ranks) + 1), det))


def headline(derivations: list, ranks: dict) -> str:
    return rank_min((d.values[2] for d in derivations), ranks)
