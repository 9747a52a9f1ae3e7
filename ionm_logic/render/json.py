"""Documents (determination/v1, why-not/v1, diff/v1) as JSON text."""
from __future__ import annotations

import json


def render(document: dict) -> str:
    """Indented JSON, non-ASCII kept, one final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
