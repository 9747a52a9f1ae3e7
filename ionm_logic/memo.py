"""Remember whole rendered decisions, so a case whose facts were decided before is not decided again.

A decision is a function of the case facts asserted (with the pointer each came from, as the
output cites it), the policy version chosen, the date of service, the decision's options and
the knowledge base: `decision_key` holds all of them, so a hit is exact, never a look-alike. The
parts of an output record that are not case facts (in a batch: the case id and the record's
number, file, line or source) are left out of the text an entry keeps (`Template`), and a hit
splices the new record's values in, so a hit gives the bytes a fresh decision would.

Memory is bounded by the size of the texts kept and their keys (least recently used go first).
A miss costs building the key from the facts posing the case computed anyway, one look-up, and
finding the per-record values at the places the renderer puts them (batch.py): the output is
rendered once, and the template keeps views of it, not a copy.
"""
from __future__ import annotations

import json
import marshal
import operator
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def decision_key(kb, posed, options: tuple, locate: Optional[Callable] = None):
    """Everything a decision depends on: the knowledge base's sha256, the pack and version
    chosen, the date of service, `options` (whatever else the caller lets change the output:
    formats, flags), and every asserted case fact with its pointer (through `locate`, for an
    input whose pointers name another document: a FHIR Bundle), in the order asserted.

    One string of bytes: exact (every part typed and framed) and, unlike nested tuples, nothing
    the cyclic garbage collector walks however many entries the memo holds."""
    facts = [(f.pred, f.values, locate(f.pointer)) for f in posed.facts] if locate else \
        list(map(_FACT, posed.facts))
    parts = (kb.sha256, posed.policy.pack, posed.policy.version, posed.case.date_of_service.isoformat(), options, facts)
    # marshal writes str, int, bool, float, None, tuples and lists typed and framed, in half the
    # instructions of JSON (measured); format 2 has no back-references, so the bytes follow from
    # the values alone, not from which objects are shared. Any other value: a JSON key (a str,
    # never equal to a bytes key), each such value with its type.
    try:
        return marshal.dumps(parts, 2)
    except ValueError:
        return _KEY.encode(parts)


def _typed(value):
    return [type(value).__name__, str(value)]


_FACT = operator.attrgetter("pred", "values", "pointer")
# One encoder for every key: json.dumps with options builds an encoder per call. A key is a
# tree of lists and tuples, never a cycle: no circular check.
_KEY = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_typed, check_circular=False)


def key_size(key) -> int:
    """About how many bytes a decision_key holds in memory."""
    return 64 + len(key)


@dataclass(frozen=True)
class Template:
    """A rendered output with its per-record values left out: `parts` (bytes, or views of the
    output rendered for the miss, so a template holds no second copy of it), and between each
    two the number of the slot (`slots`) whose encoded value goes there."""
    parts: tuple
    slots: tuple
    tally: tuple

    def fill(self, values: tuple) -> bytes:
        """The output with values[i], encoded as the output encodes it, in every slot i."""
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:]):
            out += (values[slot], part)
        return b"".join(out)

    def size(self) -> int:
        return sum(len(p) for p in self.parts) + 64 * len(self.parts)


class DecisionMemo:
    """Least-recently-used templates by decision_key, at most about `max_bytes` in all (the
    texts kept and their keys)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key) -> Optional[Template]:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[0]

    def put(self, key, template: Template) -> None:
        size = template.size() + key_size(key)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (template, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _key, (_dropped, dropped_size) = self._entries.popitem(last=False)
            self.bytes -= dropped_size
