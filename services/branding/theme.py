"""A council's brand as a theme: canonical content and its hash, free of I/O."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.events import Brand


def canonical(brand: Brand) -> dict[str, Any]:
    data = brand.model_dump(mode="json")
    data["colours"] = {k: v.upper() for k, v in data["colours"].items()}
    return data


def content_hash(brand: Brand) -> str:
    encoded = json.dumps(canonical(brand), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
