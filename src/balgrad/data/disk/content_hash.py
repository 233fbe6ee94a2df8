"""The content hash a loader computes from its index files and content options; it goes
into the dataset's fingerprint and so into feature-cache keys (keep it stable)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def hash_bytes(*chunks: bytes | str) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c.encode("utf-8") if isinstance(c, str) else c)
        h.update(b"\0")
    return h.hexdigest()


def options_hash(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)
